"""The SAML facade the web layer calls: parse what SPs send, build what we send back.

One SamlIdp per process. It keeps a pysaml2 Server built from the SP registry's metadata files and
rebuilds it when the registry's version string changes (a cheap compare on every call), so an SP added
with `idp sp add` is served by every worker without a restart.
"""

from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, VERSION, class_name, saml, samlp
from saml2.assertion import Policy
from saml2.cert import CertificateError
from saml2.s_utils import UnsupportedBinding, sid, success_status_factory
from saml2.server import Server
from saml2.sigver import SigverError, pre_signature_part
from saml2.time_util import instant
from saml2.validate import NotValid, valid_instance

from idp.directory.person import Person
from idp.saml import bindings
from idp.saml.algorithms import DIGEST_ALGORITHM, SIGNATURE_ALGORITHM
from idp.saml.attributes import attribute_statement
from idp.saml.encrypt import NoEncryptionCertificate, encrypt_assertion
from idp.saml.errors import SamlRequestError
from idp.saml.keyring import Keyring
from idp.saml.keys import load_signing_key, read_persistent_secret
from idp.saml.metadata import idp_metadata_xml
from idp.saml.nameid import FORMAT_URIS, NoNameIdValue, UnsupportedNameIdFormat, choose_format, name_id_value
from idp.saml.server import build_server, slo_url, sso_url
from idp.settings import Settings
from idp.sps.policy import SpPolicy
from idp.sps.source import SpSource

__all__ = [
    "AuthnRequestInfo",
    "LogoutRequestInfo",
    "NameIdPolicyError",
    "NoEncryptionCertificate",
    "PostForm",
    "RedirectTo",
    "SamlIdp",
    "SamlRequestError",
]

log = logging.getLogger(__name__)

PASSWORD_PROTECTED_TRANSPORT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"  # noqa: S105
_BINDING_URIS = {"redirect": BINDING_HTTP_REDIRECT, "post": BINDING_HTTP_POST}
# Our own output only; entities and the network stay off all the same.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=False)
_STATUS_CODES = {
    "NoPassive": samlp.STATUS_NO_PASSIVE,
    "AuthnFailed": samlp.STATUS_AUTHN_FAILED,
    "RequestDenied": samlp.STATUS_REQUEST_DENIED,
    "InvalidNameIDPolicy": samlp.STATUS_INVALID_NAMEID_POLICY,
}


@dataclass(frozen=True)
class PostForm:
    """An auto-POST form the browser submits."""

    action: str
    fields: dict[str, str]


@dataclass(frozen=True)
class RedirectTo:
    url: str


@dataclass(frozen=True)
class AuthnRequestInfo:
    request_id: str | None
    """None for an IdP-initiated sign-in: the response is unsolicited (no InResponseTo)."""
    sp_entity_id: str
    sp_name: str
    """mdui:DisplayName, else OrganizationDisplayName, else the entityID."""
    acs_url: str
    acs_binding: str
    force_authn: bool
    is_passive: bool
    nameid_format: str | None
    """The format the request's NameIDPolicy asked for (None = unspecified/absent)."""
    relay_state: str | None
    policy: SpPolicy


@dataclass(frozen=True)
class LogoutRequestInfo:
    request_id: str
    sp_entity_id: str
    name_id: str
    session_indexes: tuple[str, ...]
    relay_state: str | None
    binding: str
    """The binding the response goes back with (a SAML binding URI)."""
    response_location: str


class NameIdPolicyError(Exception):
    """No NameID can be issued for this request and person; answer with InvalidNameIDPolicy."""


@dataclass(frozen=True)
class _Loaded:
    version: str
    server: Server
    metadata: bytes
    redirect_key: rsa.RSAPrivateKey
    """The active signing key, for query signatures (Redirect binding) that pysaml2 does not make for us."""


class SamlIdp:
    def __init__(self, settings: Settings, sps: SpSource) -> None:
        self._settings = settings
        self._sps = sps
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._keyring = Keyring.for_settings(settings)
        # The secret is read once; the signing key on every keyring step (see _current), and for the first
        # time right here: a missing key or secret stops the process, not a sign-in.
        self._secret = read_persistent_secret(settings.idp.persistent_id_secret_file)
        self._current()

    # ---- metadata -------------------------------------------------------------------------------

    def metadata_xml(self) -> bytes:
        """Our signed IdP metadata."""
        return self._current().metadata

    # ---- single sign-on -------------------------------------------------------------------------

    def parse_authn_request(
        self,
        binding: Literal["redirect", "post"],
        saml_request: str,
        relay_state: str | None,
        *,
        query_string: str | None = None,
    ) -> AuthnRequestInfo:
        """Decode, screen, authenticate and resolve an AuthnRequest; raise SamlRequestError to refuse it.

        For the Redirect binding pass the raw query string exactly as received (Flask:
        ``request.query_string.decode("ascii")``): the signature covers its original encoding.
        """
        server = self._current().server
        xml, signed = self._decode(binding, saml_request, relay_state, query_string)
        message = _parse(samlp.authn_request_from_string, xml, "AuthnRequest")
        sp = _issuer(message)
        policy = self._sp_policy(server, sp)
        self._check_signature(server, binding, message, xml, signed, sp, self._signature_required(server, sp, policy))
        self._check_envelope(message, sso_url(self._settings), sp)
        acs_url, acs_binding = _pick_acs(server, sp, message)
        requested = message.name_id_policy.format if message.name_id_policy is not None else None
        return AuthnRequestInfo(
            request_id=message.id,
            sp_entity_id=sp,
            sp_name=_display_name(server, sp),
            acs_url=acs_url,
            acs_binding=acs_binding,
            force_authn=_true(message.force_authn),
            is_passive=_true(message.is_passive),
            nameid_format=requested or None,
            relay_state=relay_state,
            policy=policy,
        )

    def name_id_for(self, req: AuthnRequestInfo, person: Person) -> tuple[str, str]:
        """(format URI, value) for this SP and person; raise NameIdPolicyError when none can be issued.

        A transient NameID is new on every call.
        """
        policy = req.policy
        try:
            fmt = choose_format(req.nameid_format, policy.nameid_format)
            value = name_id_value(
                fmt,
                person,
                req.sp_entity_id,
                self._secret,
                attribute=policy.nameid_attribute,
                domain=policy.nameid_domain,
            )
        except (UnsupportedNameIdFormat, NoNameIdValue) as exc:
            raise NameIdPolicyError(str(exc)) from None
        return FORMAT_URIS[fmt], value

    def unsolicited_request(self, sp_entity_id: str, relay_state: str | None) -> AuthnRequestInfo:
        """What an IdP-initiated sign-in answers as if the SP had asked: no request ID, the SP's default
        HTTP-POST ACS, its policy's NameID format. Refuses (SamlRequestError) an SP that is unknown, switched
        off, or whose policy does not allow IdP-initiated sign-in."""
        server = self._current().server
        policy = self._sp_policy(server, sp_entity_id)
        if not policy.idp_initiated:
            raise SamlRequestError(
                "idp_initiated_not_allowed",
                "This service does not accept sign-ins started from the sign-in service.",
                sp_entity_id,
            )
        if relay_state is None:
            relay_state = policy.default_relay_state
        bindings.check_relay_state(relay_state, self._settings.idp.max_relay_state)
        acs_url = _default_post_acs(server, sp_entity_id)
        return AuthnRequestInfo(
            request_id=None,
            sp_entity_id=sp_entity_id,
            sp_name=_display_name(server, sp_entity_id),
            acs_url=acs_url,
            acs_binding=BINDING_HTTP_POST,
            force_authn=False,
            is_passive=False,
            nameid_format=None,
            relay_state=relay_state,
            policy=policy,
        )

    @staticmethod
    def attribute_statement_for(policy: SpPolicy, person: Person) -> saml.AttributeStatement | None:
        """What the policy releases about the person, under the names it asks for (None: nothing); the
        response and the console's preview both take it from here."""
        return attribute_statement(
            person,
            policy.attributes,
            name_format=policy.attribute_name_format,
            names=policy.attribute_names,
            roles=policy.roles,
            role_session_name_key=policy.role_session_name_attribute,
        )

    def sp_can_encrypt(self, sp_entity_id: str) -> bool:
        """Whether the SP's metadata holds a certificate we can encrypt assertions to (for the policy page,
        and checked before every sign-in to an SP whose policy asks for encryption)."""
        try:
            return bool(_encryption_certificates(self._current().server, sp_entity_id))
        except KeyError:
            return False

    def authn_response(
        self, req: AuthnRequestInfo, person: Person, *, session_index: str, authn_instant: datetime
    ) -> PostForm:
        """The signed Response carrying the person's assertion, as a form to the SP's ACS.

        Follows the SP's policy: NameID (format, source attribute, domain), the attributes under the names
        and NameFormat it asks for, Alibaba Cloud roles, signatures, lifetime, and encryption (sign the
        assertion, encrypt it, then sign the response). An unsolicited response (IdP-initiated) carries no
        InResponseTo.

        When no NameID can be issued (see name_id_for) this is an InvalidNameIDPolicy error response;
        call name_id_for first to audit that case. Raises NoEncryptionCertificate when the policy asks for
        encryption and the SP has no certificate (check sp_can_encrypt first to refuse it politely).
        """
        try:
            fmt_uri, value = self.name_id_for(req, person)
        except NameIdPolicyError as exc:
            log.warning("no NameID for %s at %s: %s", person.username, req.sp_entity_id, exc)
            return self.error_response(
                req, "InvalidNameIDPolicy", "No identifier of the requested format is available."
            )
        server = self._current().server
        policy = req.policy
        qualifiers: dict[str, str] = {}
        if fmt_uri in (saml.NAMEID_FORMAT_PERSISTENT, saml.NAMEID_FORMAT_TRANSIENT):
            qualifiers = {"name_qualifier": self._settings.entity_id, "sp_name_qualifier": req.sp_entity_id}
        statement = saml.AuthnStatement(
            authn_instant=instant(time_stamp=int(authn_instant.timestamp())),
            session_index=session_index,
            authn_context=saml.AuthnContext(
                authn_context_class_ref=saml.AuthnContextClassRef(text=PASSWORD_PROTECTED_TRANSPORT)
            ),
        )
        lifetime = policy.assertion_lifetime or self._settings.idp.assertion_lifetime
        now = datetime.now(UTC)
        release = _ReleasePolicy(
            not_before=now - timedelta(seconds=self._settings.idp.clock_skew),
            not_on_or_after=now + timedelta(seconds=lifetime),
        )
        # setup_assertion is the one pysaml2 entry point that takes a complete AuthnStatement: the public
        # create_authn_response always invents its own SessionIndex, and ours must match the SSO session.
        # It gets no attributes: pysaml2 writes every attribute with one NameFormat, and policies mix them.
        assertion = server.setup_assertion(
            None,
            req.sp_entity_id,
            req.request_id,
            req.acs_url,
            saml.NameID(format=fmt_uri, text=value, **qualifiers),
            release,
            server._issuer(),
            statement,
            {},
            True,
            policy.sign_response,
        )
        attributes = self.attribute_statement_for(policy, person)
        assertion.attribute_statement = [attributes] if attributes is not None else []
        if policy.encrypt_assertion:
            response = self._encrypted_response(server, req, assertion)
        else:
            response = self._plain_response(server, req, assertion)
        return _post_form(req.acs_url, "SAMLResponse", response, req.relay_state)

    @staticmethod
    def _plain_response(server: Server, req: AuthnRequestInfo, assertion: saml.Assertion) -> str:
        to_sign = []
        if req.policy.sign_assertion:
            assertion.signature = pre_signature_part(
                assertion.id, server.sec.my_cert, 2, sign_alg=SIGNATURE_ALGORITHM, digest_alg=DIGEST_ALGORITHM
            )
            to_sign.append((class_name(assertion), assertion.id))
        response = server._response(
            req.request_id,
            req.acs_url,
            sign=req.policy.sign_response,
            to_sign=to_sign,
            sp_entity_id=req.sp_entity_id,
            sign_alg=SIGNATURE_ALGORITHM,
            digest_alg=DIGEST_ALGORITHM,
            assertion=assertion,
        )
        return response if isinstance(response, str) else str(response)

    @staticmethod
    def _encrypted_response(server: Server, req: AuthnRequestInfo, assertion: saml.Assertion) -> str:
        """Sign the assertion inside the response, encrypt it there to the SP, then sign the response."""
        certificates = _encryption_certificates(server, req.sp_entity_id)
        if not certificates:
            raise NoEncryptionCertificate(
                f"{req.sp_entity_id} must receive encrypted assertions but its metadata has no encryption certificate"
            )
        response = samlp.Response(
            id=sid(),
            version=VERSION,
            issue_instant=instant(),
            issuer=server._issuer(),
            in_response_to=req.request_id,
            destination=req.acs_url,
            status=success_status_factory(),
            assertion=assertion,
        )
        if req.policy.sign_response:
            response.signature = pre_signature_part(
                response.id, server.sec.my_cert, 1, sign_alg=SIGNATURE_ALGORITHM, digest_alg=DIGEST_ALGORITHM
            )
        xml = str(response)
        if req.policy.sign_assertion:
            assertion.signature = pre_signature_part(
                assertion.id, server.sec.my_cert, 2, sign_alg=SIGNATURE_ALGORITHM, digest_alg=DIGEST_ALGORITHM
            )
            xml = server.sec.sign_statement(str(response), class_name(assertion), node_id=assertion.id)
        tree = etree.fromstring(xml.encode("utf-8"), _PARSER)
        # Any certificate the SP lists is one whose key it holds; take the first.
        encrypt_assertion(tree.find(f"{{{saml.NAMESPACE}}}Assertion"), certificates[0])
        xml = etree.tostring(tree, xml_declaration=True, encoding="UTF-8").decode("utf-8")
        if req.policy.sign_response:
            xml = server.sec.sign_statement(xml, class_name(response), node_id=response.id)
        return xml

    def error_response(
        self,
        req: AuthnRequestInfo,
        status: Literal["NoPassive", "AuthnFailed", "RequestDenied", "InvalidNameIDPolicy"],
        message: str | None = None,
    ) -> PostForm:
        """A signed Response with a Responder status and the given second-level code; no assertion."""
        server = self._current().server
        response = server.create_error_response(
            req.request_id,
            req.acs_url,
            (_STATUS_CODES[status], message),
            sign=True,
            sign_alg=SIGNATURE_ALGORITHM,
            digest_alg=DIGEST_ALGORITHM,
        )
        return _post_form(req.acs_url, "SAMLResponse", response, req.relay_state)

    # ---- single logout --------------------------------------------------------------------------

    def parse_logout_request(
        self,
        binding: Literal["redirect", "post"],
        saml_request: str,
        relay_state: str | None,
        *,
        query_string: str | None = None,
    ) -> LogoutRequestInfo:
        """Decode, screen and authenticate an SP's LogoutRequest; raise SamlRequestError to refuse it."""
        server = self._current().server
        xml, signed = self._decode(binding, saml_request, relay_state, query_string)
        message = _parse(samlp.logout_request_from_string, xml, "LogoutRequest")
        sp = _issuer(message)
        policy = self._sp_policy(server, sp)
        self._check_signature(server, binding, message, xml, signed, sp, self._signature_required(server, sp, policy))
        self._check_envelope(message, slo_url(self._settings), sp)
        if message.name_id is None or not message.name_id.text:
            raise SamlRequestError("malformed", "The LogoutRequest names no user (NameID).", sp)
        response_binding, location = _pick_slo(server, sp, _BINDING_URIS[binding])
        return LogoutRequestInfo(
            request_id=message.id,
            sp_entity_id=sp,
            name_id=message.name_id.text.strip(),
            session_indexes=tuple(s.text.strip() for s in message.session_index if s.text),
            relay_state=relay_state,
            binding=response_binding,
            response_location=location,
        )

    def logout_response(self, req: LogoutRequestInfo) -> PostForm | RedirectTo:
        """A Success LogoutResponse: enveloped-signed for POST, query-signed for Redirect (both RSA-SHA256)."""
        loaded = self._current()
        server = loaded.server
        post = req.binding == BINDING_HTTP_POST
        response = server._status_response(
            samlp.LogoutResponse,
            server._issuer(),
            None,
            sign=post,
            sign_alg=SIGNATURE_ALGORITHM,
            digest_alg=DIGEST_ALGORITHM,
            in_response_to=req.request_id,
            destination=req.response_location,
        )
        if post:
            return _post_form(req.response_location, "SAMLResponse", response, req.relay_state)
        xml = str(response).encode("utf-8")
        return RedirectTo(
            bindings.redirect_url(req.response_location, "SAMLResponse", xml, req.relay_state, loaded.redirect_key)
        )

    # ---- internals ------------------------------------------------------------------------------

    def _current(self) -> _Loaded:
        # A key rollover step in any process (console or CLI) changes the keyring's version just as
        # `idp sp add` changes the registry's: every worker rebuilds on its next request.
        version = f"{self._sps.version()}/{self._keyring.version()}"
        loaded = self._loaded
        if loaded is not None and loaded.version == version:
            return loaded
        with self._lock:
            loaded = self._loaded
            if loaded is None or loaded.version != version:
                keys = self._keyring.state()
                server = build_server(self._settings, self._sps.metadata_files(), keys)
                metadata = idp_metadata_xml(server.config, sign_with=server.sec)
                loaded = _Loaded(version, server, metadata, load_signing_key(keys.active.key_file))
                self._loaded = loaded
                log.info("SAML server loaded (SP registry and keyring version %s)", version)
        return loaded

    def _decode(
        self, binding: str, saml_request: str, relay_state: str | None, query_string: str | None
    ) -> tuple[bytes, bindings.SignedQuery | None]:
        limits = self._settings.idp
        bindings.check_relay_state(relay_state, limits.max_relay_state)
        signed = None
        if binding == "redirect":
            if query_string is not None:
                signed = bindings.signed_query(query_string)
                if signed is not None and (signed.message != saml_request or signed.relay_state != relay_state):
                    raise SamlRequestError(
                        "malformed", "The signed query string does not match the request parameters."
                    )
            xml = bindings.decode_redirect(saml_request, limits.max_request_bytes)
        elif binding == "post":
            xml = bindings.decode_post(saml_request, limits.max_request_bytes)
        else:
            raise SamlRequestError("unsupported_binding", f"The {binding} binding is not supported here.")
        bindings.check_xml_is_safe(xml)
        return xml, signed

    def _sp_policy(self, server: Server, sp: str) -> SpPolicy:
        # Before the lookup: pysaml2 drops an expired entity when it loads, which would read as "not registered".
        if (expired := self._sps.metadata_expired(sp)) is not None:
            raise SamlRequestError(
                "sp_metadata_expired",
                f"The registration of this service expired on {expired:%Y-%m-%d %H:%M} UTC (the validUntil of its "
                "metadata); an administrator must renew its metadata.",
                sp,
            )
        try:
            descriptors = server.metadata[sp].get("spsso_descriptor")
        except KeyError:
            descriptors = None
        if not descriptors:
            raise SamlRequestError("unknown_sp", "This service is not registered with the sign-in service.", sp)
        policy = self._sps.policy_for(sp)
        if not policy.enabled:
            raise SamlRequestError(
                "sp_disabled", "Sign-in to this service has been switched off by an administrator.", sp
            )
        return policy

    @staticmethod
    def _signature_required(server: Server, sp: str, policy: SpPolicy) -> bool:
        metadata_says = any(
            str(d.get("authn_requests_signed", "")).lower() in ("true", "1")
            for d in server.metadata[sp]["spsso_descriptor"]
        )
        return policy.require_signed_requests or metadata_says

    @staticmethod
    def _check_signature(
        server: Server,
        binding: str,
        message: Any,
        xml: bytes,
        signed: bindings.SignedQuery | None,
        sp: str,
        required: bool,
    ) -> None:
        """Verify the signature when present; refuse when one is required and absent."""
        certs = [cert for _, cert in server.metadata.certs(sp, "spsso", "signing")]
        if binding == "redirect":
            # An XML signature inside a Redirect-binding message is not part of that binding; only the query counts.
            if signed is None:
                if required:
                    raise SamlRequestError(
                        "unsigned_request", "This service must sign its requests, and this one is not signed.", sp
                    )
                return
            bindings.verify_query_signature(signed, certs, required=required, sp_entity_id=sp)
            return
        if message.signature is None:
            if required:
                raise SamlRequestError(
                    "unsigned_request", "This service must sign its requests, and this one is not signed.", sp
                )
            return
        info = message.signature.signed_info
        bindings.check_enveloped_algorithms(
            info.signature_method.algorithm if info.signature_method is not None else "",
            [r.digest_method.algorithm for r in info.reference if r.digest_method is not None],
            required=required,
            sp_entity_id=sp,
        )
        check = getattr(server.sec, f"correctly_signed_{_msgtype(message)}")
        try:
            check(xml.decode("utf-8"), must=True)
        except (SigverError, CertificateError, TypeError) as exc:
            log.info("signature check failed for %s: %s", sp, exc)
            raise SamlRequestError(
                "bad_signature", "The request's signature does not match the SP's certificate.", sp
            ) from None

    @staticmethod
    def _check_envelope(message: Any, our_endpoint: str, sp: str) -> None:
        try:
            valid_instance(message)
        except NotValid as exc:
            raise SamlRequestError("malformed", f"The SAML message is not valid: {exc}", sp) from None
        if message.version != VERSION:
            raise SamlRequestError("malformed", f"SAML version {message.version} is not supported.", sp)
        if message.destination and message.destination != our_endpoint:
            raise SamlRequestError("malformed", f"The request was meant for {message.destination}, not for us.", sp)
        if not message.id:
            raise SamlRequestError("malformed", "The request has no ID.", sp)


class _ReleasePolicy(Policy):
    """pysaml2's Policy with our decisions: release exactly what our filter passed, with our validity window.

    pysaml2's own Policy would drop attributes the SP's metadata does not request, fail on "required"
    ones we do not release, and set NotBefore to now, which an SP whose clock runs behind rejects.
    """

    def __init__(self, not_before: datetime, not_on_or_after: datetime) -> None:
        super().__init__()
        self._not_before = instant(time_stamp=int(not_before.timestamp()))
        self._not_on_or_after = instant(time_stamp=int(not_on_or_after.timestamp()))

    def restrict(self, ava: dict[str, Any], sp_entity_id: str, metadata: Any = None) -> dict[str, Any]:
        return dict(ava)

    def get_name_form(self, sp_entity_id: str) -> str:
        return saml.NAME_FORMAT_URI

    def not_on_or_after(self, sp_entity_id: str) -> str:
        return self._not_on_or_after

    def conditions(self, sp_entity_id: str) -> saml.Conditions:
        return saml.Conditions(
            not_before=self._not_before,
            not_on_or_after=self._not_on_or_after,
            audience_restriction=[saml.AudienceRestriction(audience=[saml.Audience(text=sp_entity_id)])],
        )


def _parse(factory: Any, xml: bytes, what: str) -> Any:
    try:
        message = factory(xml)
    except Exception as exc:  # pysaml2 raises a zoo of types for bad input; all mean the same thing here
        log.info("unparseable %s: %s", what, exc)
        message = None
    if message is None:
        raise SamlRequestError("malformed", f"The SAML message is not a {what}.")
    return message


def _issuer(message: Any) -> str:
    if message.issuer is None or not (message.issuer.text or "").strip():
        raise SamlRequestError("malformed", "The SAML message does not say which service sent it (no Issuer).")
    return message.issuer.text.strip()


def _msgtype(message: Any) -> str:
    return "authn_request" if isinstance(message, samlp.AuthnRequest) else "logout_request"


def _true(value: Any) -> bool:
    return str(value).lower() in ("true", "1")


def _display_name(server: Server, sp: str) -> str:
    """mdui:DisplayName, else the Organization's display name or name, in any language: pysaml2's own
    lookup only matches xml:lang "en" exactly, and SPs write "en-US", "zh-CN" or nothing."""
    try:
        names = server.metadata.mdui_uiinfo_display_name(sp)
    except (KeyError, AttributeError, IndexError, TypeError):
        names = None
    for name in [names] if isinstance(names, str) else names or ():
        text = name.get("text") if isinstance(name, dict) else getattr(name, "text", name)
        if isinstance(text, str) and text:
            return text
    try:
        organization = server.metadata[sp].get("organization") or {}
    except KeyError:
        return sp
    for key in ("organization_display_name", "organization_name"):
        for item in organization.get(key) or ():
            if item.get("text"):
                return item["text"]
    return sp


def _pick_acs(server: Server, sp: str, message: Any) -> tuple[str, str]:
    """The ACS to answer at, always one from the SP's metadata; we answer with HTTP-POST only."""
    endpoints = server.metadata.assertion_consumer_service(sp)
    wanted_binding = message.protocol_binding
    if wanted_binding and wanted_binding != BINDING_HTTP_POST:
        raise SamlRequestError(
            "unsupported_binding", "This service asked for a response binding other than HTTP-POST.", sp
        )
    if message.assertion_consumer_service_url:
        matches = [e for e in endpoints if e.get("location") == message.assertion_consumer_service_url]
        if not matches:
            raise SamlRequestError(
                "acs_not_in_metadata", "The return address in the request is not in this service's metadata.", sp
            )
        matches = [e for e in matches if e.get("binding") == BINDING_HTTP_POST]
        if not matches:
            raise SamlRequestError("unsupported_binding", "That return address does not accept HTTP-POST.", sp)
        return matches[0]["location"], BINDING_HTTP_POST
    if message.assertion_consumer_service_index is not None:
        matches = [e for e in endpoints if str(e.get("index")) == str(message.assertion_consumer_service_index)]
        if not matches:
            raise SamlRequestError(
                "acs_not_in_metadata", "The return address index in the request is not in this service's metadata.", sp
            )
        if matches[0].get("binding") != BINDING_HTTP_POST:
            raise SamlRequestError("unsupported_binding", "That return address does not accept HTTP-POST.", sp)
        return matches[0]["location"], BINDING_HTTP_POST
    return _default_post_acs(server, sp), BINDING_HTTP_POST


def _default_post_acs(server: Server, sp: str) -> str:
    """The SP's default HTTP-POST ACS: the one marked isDefault, else the lowest index."""
    posts = [e for e in server.metadata.assertion_consumer_service(sp) if e.get("binding") == BINDING_HTTP_POST]
    if not posts:
        raise SamlRequestError(
            "unsupported_binding", "This service has no HTTP-POST return address in its metadata.", sp
        )
    defaults = [e for e in posts if _true(e.get("is_default"))]
    chosen = defaults[0] if defaults else min(posts, key=lambda e: int(e.get("index") or 0))
    return chosen["location"]


def _encryption_certificates(server: Server, sp: str) -> list[str]:
    """Base64 certificates from the SP's KeyDescriptors with use="encryption" or no use at all."""
    return [cert for _, cert in server.metadata.certs(sp, "spsso", "encryption")]


def _pick_slo(server: Server, sp: str, request_binding: str) -> tuple[str, str]:
    """(binding, location): the request's own binding when the SP has it, else any it has."""
    for binding in (request_binding, BINDING_HTTP_REDIRECT, BINDING_HTTP_POST):
        try:
            found = server.metadata.single_logout_service(sp, binding, "spsso")
        except UnsupportedBinding:  # pysaml2 raises, rather than answering "none", for a binding the SP lacks
            continue
        endpoints = found.get(binding) if isinstance(found, dict) else found
        if endpoints:
            e = endpoints[0]
            return binding, e.get("response_location") or e["location"]
    raise SamlRequestError("unsupported_binding", "This service has no single-logout address in its metadata.", sp)


def _post_form(action: str, param: str, message: Any, relay_state: str | None) -> PostForm:
    xml = message if isinstance(message, str) else str(message)
    fields = {param: base64.b64encode(xml.encode("utf-8")).decode("ascii")}
    if relay_state is not None:
        fields["RelayState"] = relay_state
    return PostForm(action, fields)
