"""Check an SP's metadata before we trust it, and say exactly what is wrong when we do not.

Metadata comes from outside (an upload, a URL), so it is parsed as hostile: any DOCTYPE is refused before
lxml sees the document, which rules out entity expansion (billion laughs) and external entities (XXE).
``inspect_sp_metadata`` checks structure only and is what the registry uses to read stored files (a
certificate that expired after registration must still show up in ``idp sp list``);
``validate_sp_metadata`` adds the checks that depend on the clock and is what guards registration.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree
from cryptography import x509
from defusedxml import DefusedXmlException
from lxml import etree

from idp.sps.certs import unreadable
from idp.sps.errors import MetadataError
from idp.sps.urls import url_problem

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
MDUI = "urn:oasis:names:tc:SAML:metadata:ui"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
SAML2_PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
BINDING_NAMES = {
    HTTP_POST: "HTTP-POST",
    "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect": "HTTP-Redirect",
    "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact": "HTTP-Artifact",
    "urn:oasis:names:tc:SAML:2.0:bindings:PAOS": "PAOS (ECP)",
    "urn:oasis:names:tc:SAML:2.0:bindings:SOAP": "SOAP",
}
"""Short names admins recognise from SP consoles; the ACS bindings other than HTTP-POST are never used."""
NS = {"md": MD, "ds": DS, "mdui": MDUI}

MAX_METADATA_BYTES = 2_000_000
MAX_ENTITY_ID_LENGTH = 1024
"""SAML core limits entityID to 1024 characters; the policy table's key column has the same width."""
EXPIRY_WARNING = timedelta(days=30)
EXPECTED = "SAML 2.0 metadata XML, an EntityDescriptor or EntitiesDescriptor"
"""What an admin should have given, named in every refusal of a document that is not that at all."""


@dataclass(frozen=True)
class Endpoint:
    binding: str
    location: str
    response_location: str | None = None
    index: int | None = None
    is_default: bool = False

    @property
    def binding_name(self) -> str:
        return BINDING_NAMES.get(self.binding, self.binding.rsplit(":", 1)[-1])


@dataclass(frozen=True)
class CertificateInfo:
    use: str
    """"signing", "encryption", or "signing+encryption" when the KeyDescriptor has no use attribute."""
    subject: str
    not_after: datetime
    element: str
    """Where the certificate sits in the document, for messages."""

    @property
    def signs(self) -> bool:
        return self.use != "encryption"


@dataclass(frozen=True)
class SpMetadataInfo:
    entity_id: str
    display_name: str
    assertion_consumer_services: tuple[Endpoint, ...]
    single_logout_services: tuple[Endpoint, ...]
    nameid_formats: tuple[str, ...]
    authn_requests_signed: bool
    want_assertions_signed: bool
    certificates: tuple[CertificateInfo, ...]
    valid_until: datetime | None
    """The earliest validUntil of the EntityDescriptor and any EntitiesDescriptor around it."""
    warnings: tuple[str, ...]
    entity_xml: bytes = field(repr=False)
    """The SP's EntityDescriptor as a UTF-8 document of its own, ready to store."""
    cache_duration: timedelta | None = None
    """The shortest cacheDuration of the EntityDescriptor and any EntitiesDescriptor around it: how long a
    copy may be used before it should be downloaded again (metadata 2.0 section 4.3; unlike validUntil,
    a stale copy is still valid)."""

    @property
    def acs_urls(self) -> tuple[str, ...]:
        return tuple(e.location for e in self.assertion_consumer_services)

    @property
    def unsupported_acs(self) -> tuple[Endpoint, ...]:
        """ACS endpoints this IdP never sends to: it answers only by HTTP-POST (no Artifact resolution service,
        no ECP), so these are listed for the admin and otherwise ignored."""
        return tuple(e for e in self.assertion_consumer_services if e.binding != HTTP_POST)

    @property
    def cert_expiry(self) -> datetime | None:
        """When the first of the SP's certificates expires (None when it publishes none)."""
        return min((c.not_after for c in self.certificates), default=None)


def validate_sp_metadata(
    xml: bytes, *, allow_http_loopback: bool = True, now: datetime | None = None
) -> SpMetadataInfo:
    """What ``inspect_sp_metadata`` checks, plus: not past validUntil, no expired signing certificate."""
    info = inspect_sp_metadata(xml, allow_http_loopback=allow_http_loopback)
    now = _aware(now or datetime.now(UTC))
    warnings = list(info.warnings)
    if info.valid_until is not None:
        if info.valid_until <= now:
            raise MetadataError(
                f"validUntil {info.valid_until.isoformat()} is in the past: ask the SP for current metadata",
                "EntityDescriptor/@validUntil",
            )
        if info.valid_until - now < EXPIRY_WARNING:
            warnings.append(
                f"the metadata is valid only until {info.valid_until:%Y-%m-%d %H:%M} UTC; after that this SP "
                "stops working until its metadata is added again with --replace"
            )
    for cert in info.certificates:
        if cert.not_after <= now:
            if cert.signs:
                raise MetadataError(
                    f"the signing certificate {cert.subject!r} expired on {cert.not_after:%Y-%m-%d}: "
                    "ask the SP for metadata with its current certificate",
                    cert.element,
                )
            warnings.append(f"the encryption certificate {cert.subject!r} expired on {cert.not_after:%Y-%m-%d}")
        elif cert.not_after - now < EXPIRY_WARNING:
            warnings.append(f"the {cert.use} certificate {cert.subject!r} expires on {cert.not_after:%Y-%m-%d}")
    return replace(info, warnings=tuple(warnings))


def inspect_sp_metadata(xml: bytes, *, allow_http_loopback: bool = True) -> SpMetadataInfo:
    """Parse and check the structure of SP metadata; raise MetadataError naming the element at fault."""
    root = parse_untrusted(xml)
    entity = _sp_entity(root)
    entity_id = (entity.get("entityID") or "").strip()
    if not entity_id:
        raise MetadataError("the entityID attribute is missing or empty", _where(entity))
    if len(entity_id) > MAX_ENTITY_ID_LENGTH:
        raise MetadataError(f"entityID is longer than {MAX_ENTITY_ID_LENGTH} characters", _where(entity))
    spsso = _sp_role(entity)

    acs = tuple(
        _endpoint(el, allow_http_loopback, indexed=True) for el in spsso.findall("md:AssertionConsumerService", NS)
    )
    if not acs:
        raise MetadataError("no AssertionConsumerService: the IdP would have nowhere to send users", _where(spsso))
    if not any(e.binding == HTTP_POST for e in acs):
        offered = ", ".join(dict.fromkeys(e.binding_name for e in acs))
        raise MetadataError(
            f"no AssertionConsumerService uses the HTTP-POST binding, only {offered}, which this IdP does not "
            "support: it sends sign-in responses by HTTP-POST only, so ask the application's administrator for "
            f"metadata with an HTTP-POST AssertionConsumerService ({HTTP_POST})",
            _where(spsso),
        )
    slo = tuple(_endpoint(el, allow_http_loopback, indexed=False) for el in spsso.findall("md:SingleLogoutService", NS))
    certificates = tuple(_certificates(spsso))
    authn_requests_signed = _boolean(spsso, "AuthnRequestsSigned")
    if authn_requests_signed and not any(c.signs for c in certificates):
        raise MetadataError(
            "AuthnRequestsSigned is true but no KeyDescriptor holds a signing certificate to check them with",
            _where(spsso),
        )
    entity_xml, valid_until = _standalone(entity)
    cache_duration = _cache_duration(entity)
    return SpMetadataInfo(
        entity_id=entity_id,
        display_name=_display_name(entity, spsso) or entity_id,
        assertion_consumer_services=acs,
        single_logout_services=slo,
        nameid_formats=tuple(t for el in spsso.findall("md:NameIDFormat", NS) if (t := (el.text or "").strip())),
        authn_requests_signed=authn_requests_signed,
        want_assertions_signed=_boolean(spsso, "WantAssertionsSigned"),
        certificates=certificates,
        valid_until=valid_until,
        warnings=(),
        entity_xml=entity_xml,
        cache_duration=cache_duration,
    )


def parse_untrusted(xml: bytes) -> etree._Element:
    """The document element of metadata from outside; MetadataError for hostile or broken XML."""
    if not xml.strip():
        raise MetadataError(f"the file is empty; expected {EXPECTED}")
    if len(xml) > MAX_METADATA_BYTES:
        raise MetadataError(f"the document is {len(xml)} bytes; the limit is {MAX_METADATA_BYTES}")
    # First pass with expat through defusedxml: it stops at the DOCTYPE itself, before any entity is
    # declared, let alone expanded or fetched. Only then may lxml (entities and network off anyway) parse.
    try:
        defusedxml.ElementTree.fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise MetadataError(
            "hostile XML: the document declares a DTD or entities, which SAML metadata never needs"
        ) from None
    except ParseError as exc:
        if not xml.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
            raise MetadataError(f"this file is not XML; expected {EXPECTED}") from None
        raise MetadataError(f"the XML is not well-formed ({_syntax_problem(exc)}); expected {EXPECTED}") from None
    # LookupError: an encoding declaration naming a codec Python does not have; ValueError: bytes that
    # codec cannot decode. Both say the document is unreadable, as a syntax error does.
    except (LookupError, ValueError):
        raise MetadataError(f"the file's character encoding cannot be read; expected {EXPECTED} in UTF-8") from None
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_pis=True,
        collect_ids=False,
    )
    try:
        return etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        where = f"line {exc.lineno}" if exc.lineno else "somewhere"
        raise MetadataError(f"the XML is not well-formed ({where}); expected {EXPECTED}") from None


def _syntax_problem(exc: ParseError) -> str:
    """expat's words without its own "line, column" tail, then the place: "mismatched tag at line 3, column 8"."""
    words = str(exc).split(":", 1)[0].strip() or "syntax error"
    line, column = getattr(exc, "position", (0, 0))
    return f"{words} at line {line}, column {column + 1}" if line else words


def _sp_entity(root: etree._Element) -> etree._Element:
    if root.tag == f"{{{MD}}}EntityDescriptor":
        return root
    if root.tag != f"{{{MD}}}EntitiesDescriptor":
        name = etree.QName(root)
        where = f"in namespace {name.namespace}" if name.namespace else "without a namespace"
        found = f"<{name.localname}> {where}"
        raise MetadataError(f"the document is {found}; expected {EXPECTED} in namespace {MD}")
    entities = root.findall(".//md:EntityDescriptor", NS)
    sps = [e for e in entities if e.find("md:SPSSODescriptor", NS) is not None]
    if not sps:
        raise MetadataError(
            f"none of its {len(entities)} EntityDescriptor elements has an SPSSODescriptor",
            "EntitiesDescriptor",
        )
    if len(sps) > 1:
        names = ", ".join(repr(e.get("entityID")) for e in sps[:3]) + (", ..." if len(sps) > 3 else "")
        raise MetadataError(
            f"it holds {len(sps)} service providers ({names}); register one SP at a time, each from its own file",
            "EntitiesDescriptor",
        )
    return sps[0]


def _sp_role(entity: etree._Element) -> etree._Element:
    roles = entity.findall("md:SPSSODescriptor", NS)
    if not roles:
        hint = (
            " (this is an identity provider's metadata)" if entity.find("md:IDPSSODescriptor", NS) is not None else ""
        )
        raise MetadataError(f"no SPSSODescriptor: this is not a service provider's metadata{hint}", _where(entity))
    saml2 = [r for r in roles if SAML2_PROTOCOL in (r.get("protocolSupportEnumeration") or "").split()]
    if not saml2:
        raise MetadataError(f"protocolSupportEnumeration does not include {SAML2_PROTOCOL}", _where(roles[0]))
    if len(saml2) > 1:
        raise MetadataError("more than one SPSSODescriptor supports SAML 2.0; expected exactly one", _where(saml2[1]))
    return saml2[0]


def _endpoint(el: etree._Element, allow_http_loopback: bool, *, indexed: bool) -> Endpoint:
    binding = (el.get("Binding") or "").strip()
    location = (el.get("Location") or "").strip()
    if not binding:
        raise MetadataError("the Binding attribute is missing", _where(el))
    if not location:
        raise MetadataError("the Location attribute is missing", _where(el))
    response_location = (el.get("ResponseLocation") or "").strip() or None
    for url in filter(None, (location, response_location)):
        if problem := url_problem(url, allow_http_loopback=allow_http_loopback):
            raise MetadataError(problem, _where(el))
    index: int | None = None
    if indexed and el.get("index") is not None:
        try:
            index = int(el.get("index", ""))
        except ValueError:
            raise MetadataError(f"index {el.get('index')!r} is not a number", _where(el)) from None
    is_default = _boolean(el, "isDefault") if indexed else False
    return Endpoint(binding, location, response_location, index, is_default)


def _certificates(spsso: etree._Element) -> list[CertificateInfo]:
    out = []
    for kd in spsso.findall("md:KeyDescriptor", NS):
        use = kd.get("use") or "signing+encryption"
        if use not in ("signing", "encryption", "signing+encryption"):
            raise MetadataError(f"use={use!r} must be 'signing' or 'encryption' (or absent)", _where(kd))
        elements = kd.findall(".//ds:X509Certificate", NS)
        if not elements:
            raise MetadataError("no ds:KeyInfo/ds:X509Data/ds:X509Certificate inside", _where(kd))
        for el in elements:
            where = _where(el)
            try:
                der = base64.b64decode("".join((el.text or "").split()), validate=True)
                cert = x509.load_der_x509_certificate(der)
            except (binascii.Error, ValueError) as exc:
                raise MetadataError(f"not a valid base64 DER X.509 certificate: {unreadable(exc)}", where) from None
            out.append(CertificateInfo(use, cert.subject.rfc4514_string(), cert.not_valid_after_utc, where))
    return out


def _boolean(el: etree._Element, name: str) -> bool:
    raw = (el.get(name) or "false").strip()
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise MetadataError(f"{name}={raw!r} is not an xs:boolean (true, false, 1 or 0)", _where(el))


def _display_name(entity: etree._Element, spsso: etree._Element) -> str | None:
    for path, owner in (
        ("md:Extensions/mdui:UIInfo/mdui:DisplayName", spsso),
        ("md:Organization/md:OrganizationDisplayName", entity),
    ):
        names = [(el.get(XML_LANG), t) for el in owner.findall(path, NS) if (t := (el.text or "").strip())]
        if names:
            return next((t for lang, t in names if lang == "en"), names[0][1])
    return None


def _standalone(entity: etree._Element) -> tuple[bytes, datetime | None]:
    """The EntityDescriptor as a document of its own, with the tightest validUntil around it."""
    stamps = []
    for el in [entity, *entity.iterancestors()]:
        if (raw := el.get("validUntil")) is not None:
            try:
                stamps.append(_aware(datetime.fromisoformat(raw.strip())))
            except ValueError:
                raise MetadataError(f"validUntil {raw!r} is not an xs:dateTime", _where(el)) from None
    valid_until = min(stamps, default=None)
    alone = copy.deepcopy(entity)
    if valid_until is not None:
        # Taken out of its EntitiesDescriptor, the entity must not outlive what the aggregate promised.
        alone.set("validUntil", valid_until.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return etree.tostring(alone, xml_declaration=True, encoding="UTF-8"), valid_until


_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<days>\d+)D)?"
    r"(?:T(?!$)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_xs_duration(raw: str) -> timedelta:
    """xs:duration such as PT6H or P1DT12H; a year counts 365 days and a month 30 (a refresh schedule needs
    no calendar). Negative durations make no sense for a cache and are refused."""
    match = _DURATION.match(raw.strip())
    if match is None:
        raise ValueError(f"{raw!r} is not an xs:duration (e.g. PT6H, P1D)")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    try:
        return timedelta(
            days=parts["years"] * 365 + parts["months"] * 30 + parts["days"],
            hours=parts["hours"],
            minutes=parts["minutes"],
            seconds=parts["seconds"],
        )
    except OverflowError:  # more than timedelta holds (a billion days), or digits enough to read as infinity
        raise ValueError(f"{raw!r} is longer than any cache could be kept") from None


def _cache_duration(entity: etree._Element) -> timedelta | None:
    """The shortest cacheDuration on the entity and its ancestors (the tighter one wins, as for validUntil)."""
    durations = []
    for el in [entity, *entity.iterancestors()]:
        if (raw := el.get("cacheDuration")) is not None:
            try:
                durations.append(parse_xs_duration(raw))
            except ValueError as exc:
                raise MetadataError(f"cacheDuration {exc}", _where(el)) from None
    return min(durations, default=None)


def _aware(moment: datetime) -> datetime:
    """xs:dateTime without a zone is UTC in SAML (core 1.3.3)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _where(el: etree._Element) -> str:
    """EntityDescriptor/SPSSODescriptor/AssertionConsumerService[2] (line 14)."""
    parts = []
    node: etree._Element | None = el
    while node is not None:
        name = etree.QName(node).localname
        same = [s for s in node.itersiblings(preceding=True) if s.tag == node.tag]
        later = [s for s in node.itersiblings() if s.tag == node.tag]
        parts.append(f"{name}[{len(same) + 1}]" if same or later else name)
        node = node.getparent()
    return "/".join(reversed(parts)) + (f" (line {el.sourceline})" if el.sourceline else "")
