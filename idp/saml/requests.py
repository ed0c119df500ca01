"""What SPs send us: decode, screen, verify and parse AuthnRequests and LogoutRequests, and choose where to
answer; and the LogoutResponses SPs send back to our LogoutRequests. Everything here either returns a message
we accept or raises SamlRequestError.

The SP must be registered and its metadata current: without metadata there is no certificate to check a
signature with and no ACS to answer at. A request is answered once, and only while it is fresh: its
IssueInstant within [idp] request_lifetime (and clock_skew), its ID not seen before. Whether the person may
use the SP is not decided here but by the access decision (idp.access), when the person is known.

Logout messages (LogoutRequest, LogoutResponse) from an SP whose metadata lists a signing certificate must be
signed, whatever AuthnRequestsSigned says: an unsigned one could end anyone's session, or fake an SP's
confirmation that the person is signed out.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives.asymmetric import rsa
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, VERSION, SamlBase, create_class_from_element_tree, samlp
from saml2.cert import CertificateError
from saml2.s_utils import UnsupportedBinding
from saml2.server import Server
from saml2.sigver import SigverError
from saml2.validate import NotValid, OutsideCardinality, valid_instance

from idp.saml import bindings
from idp.saml.errors import SamlRequestError
from idp.saml.messages import AuthnRequestInfo, LogoutRequestInfo, LogoutResponseInfo
from idp.saml.server import SamlServer, slo_url, sso_url
from idp.settings import Settings
from idp.sps.source import SpSource
from idp.store.seen import MAX_ID_LENGTH, SeenRequests

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

log = logging.getLogger(__name__)

_BINDING_URIS = {"redirect": BINDING_HTTP_REDIRECT, "post": BINDING_HTTP_POST}


class SamlRequests:
    def __init__(self, settings: Settings, server: SamlServer, sps: SpSource, seen: SeenRequests) -> None:
        self._settings = settings
        self._server = server
        self._sps = sps
        self._seen = seen
        # The SPs' signing keys, parsed from their certificates once per loaded metadata rather than per request.
        self._keys: tuple[Server | None, dict[str, tuple[list[str], list[rsa.RSAPublicKey]]]] = (None, {})

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
        server, message, sp = self._read(
            binding,
            saml_request,
            relay_state,
            query_string,
            samlp.AuthnRequest,
            "AuthnRequest",
            sso_url(self._settings),
        )
        acs_url = _pick_acs(server, sp, message)
        requested = message.name_id_policy.format if message.name_id_policy is not None else None
        return AuthnRequestInfo(
            request_id=message.id,
            sp_entity_id=sp,
            sp_name=_display_name(server, sp),
            acs_url=acs_url,
            acs_binding=BINDING_HTTP_POST,
            force_authn=_true(message.force_authn),
            is_passive=_true(message.is_passive),
            nameid_format=requested or None,
            relay_state=relay_state,
            requested_contexts=_requested_contexts(message),
        )

    def unsolicited_request(self, sp_entity_id: str, relay_state: str | None) -> AuthnRequestInfo:
        """What an IdP-initiated sign-in answers as if the SP had asked. Refuses (SamlRequestError) an SP that
        is unknown, or whose policy does not allow IdP-initiated sign-in, or a RelayState its policy does not
        name: whoever builds the link must not choose where the SP takes the person."""
        self._check_registered(self._server.current().server, sp_entity_id)
        policy = self._sps.policy_for(sp_entity_id)
        if not policy.idp_initiated:
            raise SamlRequestError(
                "idp_initiated_not_allowed",
                "This service does not accept sign-ins started from the sign-in service.",
                sp_entity_id,
            )
        if relay_state is None:
            return self.plain_request(sp_entity_id, policy.default_relay_state)
        chosen = next((v for v in (policy.default_relay_state, *policy.relay_state_allowed) if v == relay_state), None)
        if chosen is None:
            raise SamlRequestError(
                "relay_state_not_allowed",
                "The RelayState asked for is neither this service's default nor one its policy allows.",
                sp_entity_id,
            )
        return self.plain_request(sp_entity_id, chosen)

    def plain_request(self, sp_entity_id: str, relay_state: str | None = None) -> AuthnRequestInfo:
        """The request an SP sends without asking for anything: no request ID, the SP's default HTTP-POST
        ACS, no NameIDPolicy (its policy's NameID format applies). For IdP-initiated sign-in and the
        console's preview of what the SP receives."""
        server = self._server.current().server
        self._check_registered(server, sp_entity_id)
        bindings.check_relay_state(relay_state, self._settings.idp.max_relay_state)
        return AuthnRequestInfo(
            request_id=None,
            sp_entity_id=sp_entity_id,
            sp_name=_display_name(server, sp_entity_id),
            acs_url=_default_post_acs(server, sp_entity_id),
            acs_binding=BINDING_HTTP_POST,
            force_authn=False,
            is_passive=False,
            nameid_format=None,
            relay_state=relay_state,
        )

    def parse_logout_request(
        self,
        binding: Literal["redirect", "post"],
        saml_request: str,
        relay_state: str | None,
        *,
        query_string: str | None = None,
    ) -> LogoutRequestInfo:
        """Decode, screen and authenticate an SP's LogoutRequest; raise SamlRequestError to refuse it."""
        server, message, sp = self._read(
            binding,
            saml_request,
            relay_state,
            query_string,
            samlp.LogoutRequest,
            "LogoutRequest",
            slo_url(self._settings),
        )
        if message.name_id is None or not message.name_id.text:
            raise SamlRequestError("malformed", "The LogoutRequest names no user (NameID).", sp)
        response_binding, location = _pick_slo(server, sp, _BINDING_URIS[binding])
        name_id = message.name_id
        return LogoutRequestInfo(
            request_id=message.id,
            sp_entity_id=sp,
            name_id=name_id.text.strip(),
            session_indexes=tuple(s.text.strip() for s in message.session_index if s.text),
            relay_state=relay_state,
            binding=response_binding,
            response_location=location,
            name_id_format=name_id.format or None,
            name_qualifier=name_id.name_qualifier or None,
            sp_name_qualifier=name_id.sp_name_qualifier or None,
        )

    def parse_logout_response(
        self,
        binding: Literal["redirect", "post"],
        saml_response: str,
        relay_state: str | None,
        *,
        query_string: str | None = None,
    ) -> LogoutResponseInfo:
        """Decode, screen and authenticate an SP's LogoutResponse; raise SamlRequestError to refuse it.

        Which of our LogoutRequests it must answer is the caller's to check (InResponseTo and Issuer against
        what it sent): that is kept in the browser's session, which a cross-site POST does not bring. A
        non-Success status is returned, not raised: the SP answered, and said it could not log the person out."""
        _, message, sp = self._read(
            binding,
            saml_response,
            relay_state,
            query_string,
            samlp.LogoutResponse,
            "LogoutResponse",
            slo_url(self._settings),
        )
        if not message.in_response_to:
            raise SamlRequestError("unexpected_response", "The LogoutResponse answers no request (InResponseTo).", sp)
        status = message.status.status_code.value if message.status and message.status.status_code else None
        return LogoutResponseInfo(sp, str(message.in_response_to), status == samlp.STATUS_SUCCESS, str(status or ""))

    # ---- internals ------------------------------------------------------------------------------

    def _read(
        self,
        binding: str,
        saml_request: str,
        relay_state: str | None,
        query_string: str | None,
        kind: type[SamlBase],
        what: str,
        our_endpoint: str,
    ) -> tuple[Server, Any, str]:
        """(pysaml2 server, parsed message, sender's entityID) of a request that passed every check: decoded
        within the limits, safe XML, the right kind of message, from a registered SP, signed as that SP
        must sign, meant for ``our_endpoint``, fresh, and never answered before."""
        server = self._server.current().server
        param = "SAMLRequest" if what.endswith("Request") else "SAMLResponse"
        xml, signed_query = self._decode(binding, saml_request, relay_state, query_string, param)
        message = _parse(kind, bindings.read_safe_xml(xml), what)
        sp = _issuer_of(message)
        self._check_registered(server, sp)
        signed = self._check_signature(server, binding, message, xml, signed_query, sp)
        now = datetime.now(UTC)
        self._check_envelope(message, our_endpoint, sp, signed=signed, now=now)
        # Last, so that only a request that passed every check (its signature above all) uses up its ID.
        limits = self._settings.idp
        keep = timedelta(seconds=limits.request_lifetime + 2 * limits.clock_skew)
        if not self._seen.first_use(sp, message.id, now=now, keep_until=now + keep):
            raise SamlRequestError(
                "replayed_request",
                f"The request {message.id} was already answered; a request is answered once.",
                sp,
                request_id=str(message.id),
            )
        return server, message, sp

    def _decode(
        self, binding: str, saml_request: str, relay_state: str | None, query_string: str | None, param: str
    ) -> tuple[bytes, bindings.SignedQuery | None]:
        limits = self._settings.idp
        bindings.check_relay_state(relay_state, limits.max_relay_state)
        signed = None
        if binding == "redirect":
            if query_string is not None:
                signed = bindings.signed_query(query_string, param)
                if signed is not None and (signed.message != saml_request or signed.relay_state != relay_state):
                    raise SamlRequestError(
                        "malformed", "The signed query string does not match the request parameters."
                    )
            xml = bindings.decode_redirect(saml_request, limits.max_request_bytes)
        elif binding == "post":
            xml = bindings.decode_post(saml_request, limits.max_request_bytes)
        else:
            raise SamlRequestError("unsupported_binding", f"The {binding} binding is not supported here.")
        return xml, signed

    def _check_registered(self, server: Server, sp: str) -> None:
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

    def _signature_required(self, server: Server, sp: str) -> bool:
        metadata_says = any(
            str(d.get("authn_requests_signed", "")).lower() in ("true", "1")
            for d in server.metadata[sp]["spsso_descriptor"]
        )
        return self._sps.policy_for(sp).require_signed_requests or metadata_says

    def _check_signature(
        self,
        server: Server,
        binding: str,
        message: Any,
        xml: bytes,
        signed: bindings.SignedQuery | None,
        sp: str,
    ) -> bool:
        """Verify the signature when present (True); refuse when one is required and absent."""
        certs, keys = self._signing_keys(server, sp)
        logout = not isinstance(message, samlp.AuthnRequest)
        required = self._signature_required(server, sp) or (logout and bool(certs))
        if binding == "redirect":
            # An XML signature inside a Redirect-binding message is not part of that binding; only the query counts.
            if signed is None:
                if required:
                    raise SamlRequestError(
                        "unsigned_request", "This service must sign its requests, and this one is not signed.", sp
                    )
                return False
            bindings.verify_query_signature(signed, keys, required=required, sp_entity_id=sp)
            return True
        if not bindings.has_enveloped_signature(xml, sp):
            if required:
                raise SamlRequestError(
                    "unsigned_request", "This service must sign its requests, and this one is not signed.", sp
                )
            return False
        if message.signature is None or message.signature.signed_info is None:
            raise SamlRequestError("bad_signature", "The request's signature has no SignedInfo.", sp)
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
        return True

    def _signing_keys(self, server: Server, sp: str) -> tuple[list[str], list[rsa.RSAPublicKey]]:
        """(base64 certificates, their RSA keys) of the SP's signing KeyDescriptors in ``server``'s metadata."""
        if self._keys[0] is not server:
            self._keys = (server, {})
        known = self._keys[1]
        if sp not in known:
            certs = [cert for _, cert in server.metadata.certs(sp, "spsso", "signing")]
            known[sp] = (certs, bindings.rsa_keys(certs))
        return known[sp]

    def _check_envelope(self, message: Any, our_endpoint: str, sp: str, *, signed: bool, now: datetime) -> None:
        try:
            valid_instance(message)
        # A required attribute that is empty raises MustValueError, a ValueError; too many or too few children
        # OutsideCardinality: the same verdict as NotValid.
        except (NotValid, OutsideCardinality, ValueError) as exc:
            raise SamlRequestError("malformed", f"The SAML message is not valid: {exc}", sp) from None
        if message.version != VERSION:
            raise SamlRequestError("malformed", f"SAML version {message.version} is not supported.", sp)
        if not message.id:
            raise SamlRequestError("malformed", "The request has no ID.", sp)
        if len(message.id) > MAX_ID_LENGTH:
            raise SamlRequestError("malformed", f"The request's ID is longer than {MAX_ID_LENGTH} characters.", sp)
        # A signed request without Destination could be taken from another IdP the SP signs for and replayed here.
        if signed and not message.destination:
            raise SamlRequestError("wrong_destination", "The request is signed but does not name its Destination.", sp)
        if message.destination and message.destination != our_endpoint:
            raise SamlRequestError(
                "wrong_destination", f"The request was meant for {message.destination}, not for us.", sp
            )
        issued = _instant(message.issue_instant, sp)
        skew = timedelta(seconds=self._settings.idp.clock_skew)
        if issued > now + skew:
            raise SamlRequestError(
                "request_not_yet_valid", f"The request was issued at {issued:%Y-%m-%d %H:%M:%S} UTC, in the future.", sp
            )
        if issued < now - skew - timedelta(seconds=self._settings.idp.request_lifetime):
            raise SamlRequestError(
                "request_expired", f"The request was issued at {issued:%Y-%m-%d %H:%M:%S} UTC and is too old.", sp
            )


def _instant(value: Any, sp: str) -> datetime:
    """A SAML dateTime; one without a zone is UTC, as SAML core §1.3.3 requires every time to be."""
    try:
        at = datetime.fromisoformat(str(value).strip())
        return at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved across a zone offset
        raise SamlRequestError("malformed", f"The request's IssueInstant {value!r} is not a time.", sp) from None


def _parse(kind: type[SamlBase], tree: Element, what: str) -> Any:
    try:
        message = create_class_from_element_tree(kind, tree)
    except Exception as exc:  # pysaml2 raises a zoo of types for bad input; all mean the same thing here
        log.info("unparseable %s: %s", what, exc)
        message = None
    if message is None:
        raise SamlRequestError("malformed", f"The SAML message is not a {what}.")
    return message


def _issuer_of(message: Any) -> str:
    if message.issuer is None or not (message.issuer.text or "").strip():
        raise SamlRequestError("malformed", "The SAML message does not say which service sent it (no Issuer).")
    return str(message.issuer.text).strip()


def _msgtype(message: Any) -> str:
    if isinstance(message, samlp.AuthnRequest):
        return "authn_request"
    return "logout_response" if isinstance(message, samlp.LogoutResponse) else "logout_request"


def _requested_contexts(message: Any) -> tuple[str, ...]:
    """The class refs of RequestedAuthnContext. Its Comparison is read as "exact" or "minimum" alike: we
    know two classes, and the second-factor one is above the password one."""
    requested = message.requested_authn_context
    if requested is None:
        return ()
    return tuple(ref.text.strip() for ref in requested.authn_context_class_ref or () if ref.text and ref.text.strip())


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
                return str(item["text"])
    return sp


def _pick_acs(server: Server, sp: str, message: Any) -> str:
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
        return str(matches[0]["location"])
    if message.assertion_consumer_service_index is not None:
        matches = [e for e in endpoints if str(e.get("index")) == str(message.assertion_consumer_service_index)]
        if not matches:
            raise SamlRequestError(
                "acs_not_in_metadata", "The return address index in the request is not in this service's metadata.", sp
            )
        if matches[0].get("binding") != BINDING_HTTP_POST:
            raise SamlRequestError("unsupported_binding", "That return address does not accept HTTP-POST.", sp)
        return str(matches[0]["location"])
    return _default_post_acs(server, sp)


def _default_post_acs(server: Server, sp: str) -> str:
    """The SP's default HTTP-POST ACS: the one marked isDefault, else the lowest index."""
    posts = [e for e in server.metadata.assertion_consumer_service(sp) if e.get("binding") == BINDING_HTTP_POST]
    if not posts:
        raise SamlRequestError(
            "unsupported_binding", "This service has no HTTP-POST return address in its metadata.", sp
        )
    defaults = [e for e in posts if _true(e.get("is_default"))]
    chosen = defaults[0] if defaults else min(posts, key=lambda e: int(e.get("index") or 0))
    return str(chosen["location"])


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
            return binding, str(e.get("response_location") or e["location"])
    raise SamlRequestError("unsupported_binding", "This service has no single-logout address in its metadata.", sp)
