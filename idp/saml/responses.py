"""What we send SPs: the signed Response with the person's assertion, SAML error responses, LogoutResponses,
and the LogoutRequests of a single logout.

The Response with an assertion is on every sign-in's path: it is built as an lxml tree (response_tree.py) and
signed where it stands (signing.py). The rarer messages are built from pysaml2's public element classes and
signed with the in-process backend (backend.py); no private pysaml2 call, so an upgrade cannot change our
output behind our back.

Signatures are RSA-SHA256 with SHA-256 digests, always (pysaml2 would default to SHA-1: DESIGN.md §6).
An encrypted assertion is signed first, then encrypted to the SP, then the response around it is signed.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, VERSION, class_name, saml, samlp
from saml2.s_utils import UnsupportedBinding, error_status_factory, sid, success_status_factory
from saml2.sigver import pre_signature_part, signed_instance_factory
from saml2.time_util import instant

from idp.person import Person
from idp.saml import bindings
from idp.saml.algorithms import DIGEST_ALGORITHM, SIGNATURE_ALGORITHM
from idp.saml.encrypt import NoEncryptionCertificate, encrypt_assertion
from idp.saml.messages import (
    AuthnRequestInfo,
    LogoutRequestInfo,
    NameId,
    NameIdPolicyError,
    PostForm,
    RedirectTo,
    SentLogoutRequest,
)
from idp.saml.nameid import NoNameIdValue, UnsupportedNameIdFormat, choose_format, name_id_value
from idp.saml.response_tree import Assertion, ResponseTree, response_tree
from idp.saml.server import Loaded, SamlServer
from idp.saml.signing import Signer
from idp.settings import Settings
from idp.sps.policy import SpPolicy
from idp.sps.release import ReleasedAttribute
from idp.sps.vocabulary import FORMAT_URIS

log = logging.getLogger(__name__)

PASSWORD_PROTECTED_TRANSPORT = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"  # noqa: S105
KERBEROS = "urn:oasis:names:tc:SAML:2.0:ac:classes:Kerberos"
ErrorStatus = Literal["NoPassive", "AuthnFailed", "RequestDenied", "InvalidNameIDPolicy"]
_STATUS_CODES: dict[ErrorStatus, str] = {
    "NoPassive": samlp.STATUS_NO_PASSIVE,
    "AuthnFailed": samlp.STATUS_AUTHN_FAILED,
    "RequestDenied": samlp.STATUS_REQUEST_DENIED,
    "InvalidNameIDPolicy": samlp.STATUS_INVALID_NAMEID_POLICY,
}
LogoutStatus = Literal["Success", "PartialLogout", "Requester"]
LOGOUT_USER = "urn:oasis:names:tc:SAML:2.0:logout:user"


class SamlResponses:
    def __init__(self, settings: Settings, server: SamlServer, persistent_id_secret: bytes) -> None:
        self._settings = settings
        self._server = server
        self._secret = persistent_id_secret

    def name_id(self, req: AuthnRequestInfo, policy: SpPolicy, person: Person) -> NameId:
        """The NameID for this SP and person; raise NameIdPolicyError when none can be issued, or NoMailAddress
        (idp.mail_address) when the person has no mail address: that is for the person to read, not the SP.

        The request's NameIDPolicy wins when we support its format, else the policy's format applies. A
        transient NameID is new on every call, so the sign-in computes it once and keeps it."""
        try:
            fmt = choose_format(req.nameid_format, policy.nameid_format)
            value = name_id_value(
                fmt,
                person,
                req.sp_entity_id,
                self._secret,
                attribute=policy.nameid_attribute,
                domain=policy.nameid_domain,
                provisioning=self._settings.provisioning,
            )
        except (UnsupportedNameIdFormat, NoNameIdValue) as exc:
            raise NameIdPolicyError(str(exc)) from None
        uri = FORMAT_URIS[fmt]
        if uri in (saml.NAMEID_FORMAT_PERSISTENT, saml.NAMEID_FORMAT_TRANSIENT):
            return NameId(uri, value, self._settings.entity_id, req.sp_entity_id)
        return NameId(uri, value)

    def authn_response(
        self,
        req: AuthnRequestInfo,
        policy: SpPolicy,
        name_id: NameId,
        released: Sequence[ReleasedAttribute],
        *,
        session_index: str,
        authn_instant: datetime,
        authn_context: str = PASSWORD_PROTECTED_TRANSPORT,
    ) -> PostForm:
        """The Response carrying the person's assertion, as a form to the SP's ACS. ``authn_context``: the
        AuthnContextClassRef saying how the person proved who they are (password, or a second factor too).

        Follows the SP's policy: signatures, lifetime, encryption. An unsolicited response (IdP-initiated)
        carries no InResponseTo. Raises NoEncryptionCertificate when the policy asks for encryption and the
        SP has none (the access decision refuses that case before anything is built)."""
        loaded = self._server.current()
        now = datetime.now(UTC)
        lifetime = policy.assertion_lifetime or self._settings.idp.assertion_lifetime
        content = Assertion(
            audience=req.sp_entity_id,
            recipient=req.acs_url,
            in_response_to=req.request_id,
            name_id=name_id,
            # NotBefore a little in the past: an SP whose clock runs behind ours would otherwise reject it.
            not_before=now - timedelta(seconds=self._settings.idp.clock_skew),
            not_on_or_after=now + timedelta(seconds=lifetime),
            authn_instant=authn_instant,
            session_index=session_index,
            authn_context=authn_context,
            released=released,
        )
        tree = response_tree(self._settings.entity_id, now, content)
        certificate = None
        if policy.encrypt_assertion:
            certificates = self._server.encryption_certificates(req.sp_entity_id)
            if not certificates:
                raise NoEncryptionCertificate(
                    f"{req.sp_entity_id} must receive encrypted assertions but its metadata has no encryption "
                    "certificate"
                )
            certificate = certificates[0]  # any certificate the SP lists is one whose key it holds
        xml = _signed(loaded.signer, policy, tree, certificate)
        return _post_form(req.acs_url, "SAMLResponse", xml, req.relay_state)

    def error_response(self, req: AuthnRequestInfo, status: ErrorStatus, message: str | None = None) -> PostForm:
        """A signed Response with a Responder status and the given second-level code; no assertion."""
        loaded = self._server.current()
        response = _status_message(
            samlp.Response,
            loaded,
            req.request_id,
            req.acs_url,
            status=error_status_factory((_STATUS_CODES[status], message)),
        )
        return _post_form(req.acs_url, "SAMLResponse", _sign_whole(loaded, response), req.relay_state)

    def logout_response(
        self, req: LogoutRequestInfo, status: LogoutStatus = "Success", message: str | None = None
    ) -> PostForm | RedirectTo:
        """A LogoutResponse: enveloped-signed for POST, query-signed for Redirect (both RSA-SHA256).

        PartialLogout is a second-level code under Success: this SP's session and ours ended, some other SP's
        may not have. Requester refuses the request (it named a session that is not this browser's)."""
        loaded = self._server.current()
        said = samlp.StatusMessage(text=message) if message else None
        if status == "PartialLogout":
            partial = samlp.StatusCode(value=samlp.STATUS_PARTIAL_LOGOUT)
            code = samlp.Status(
                status_code=samlp.StatusCode(value=samlp.STATUS_SUCCESS, status_code=partial), status_message=said
            )
        elif status == "Requester":
            code = samlp.Status(status_code=samlp.StatusCode(value=samlp.STATUS_REQUESTER), status_message=said)
        else:
            code = success_status_factory()
        response = _status_message(samlp.LogoutResponse, loaded, req.request_id, req.response_location, status=code)
        return _send(loaded, req.binding, req.response_location, "SAMLResponse", response, req.relay_state)

    def logout_request(self, sp_entity_id: str, name_id: NameId, session_index: str) -> SentLogoutRequest | None:
        """Our signed LogoutRequest telling an SP that the person's session ``session_index`` ended, naming
        them by the NameID that SP was issued; None when the SP's metadata has no single-logout address.

        Redirect when the SP offers it (one GET per SP keeps the chain simple for the browser), else POST."""
        loaded = self._server.current()
        endpoint = _slo_endpoint(loaded, sp_entity_id)
        if endpoint is None:
            return None
        binding, location = endpoint
        lifetime = timedelta(seconds=self._settings.idp.request_lifetime)
        request = samlp.LogoutRequest(
            id=sid(),
            version=VERSION,
            issue_instant=instant(),
            issuer=loaded.issuer(),
            destination=location,
            reason=LOGOUT_USER,
            not_on_or_after=_instant(datetime.now(UTC) + lifetime),
            name_id=_name_id_element(name_id),
            session_index=[samlp.SessionIndex(text=session_index)],
        )
        out = _send(loaded, binding, location, "SAMLRequest", request, None)
        return SentLogoutRequest(request.id, sp_entity_id, out)


def _signed(signer: Signer, policy: SpPolicy, tree: ResponseTree, encrypt_to: str | None) -> bytes:
    """Both signatures as the policy asks, on the tree as built: the assertion's first, then (after it is
    encrypted to ``encrypt_to``, when given) the response's around it. Serialised once, at the end."""
    response_signature = None
    if policy.sign_response:
        response_signature = signer.add_signature(tree.response, after=tree.response_issuer)
    if policy.sign_assertion:
        signer.sign(signer.add_signature(tree.assertion, after=tree.assertion_issuer))
    if encrypt_to is not None:
        encrypt_assertion(tree.assertion, encrypt_to)
    if response_signature is not None:
        signer.sign(response_signature)
    return etree.tostring(tree.response, xml_declaration=True, encoding="UTF-8")


def _status_message(
    kind: type[samlp.StatusResponseType],
    loaded: Loaded,
    in_response_to: str | None,
    destination: str,
    *,
    status: samlp.Status | None = None,
    **content: object,
) -> Any:
    """A Response or LogoutResponse from us, Success unless ``status`` says otherwise."""
    return kind(
        id=sid(),
        version=VERSION,
        issue_instant=instant(),
        issuer=loaded.issuer(),
        in_response_to=in_response_to,
        destination=destination,
        status=status or success_status_factory(),
        **content,
    )


def _signature_template(loaded: Loaded, node_id: str, identifier: int = 1) -> object:
    """An empty <ds:Signature> (RSA-SHA256, SHA-256) for the backend to fill in; ``identifier`` numbers its Id
    so an assertion's signature and its response's differ."""
    return pre_signature_part(
        node_id, loaded.server.sec.my_cert, identifier, sign_alg=SIGNATURE_ALGORITHM, digest_alg=DIGEST_ALGORITHM
    )


def _name_id_element(name_id: NameId) -> saml.NameID:
    return saml.NameID(
        format=name_id.format,
        text=name_id.value,
        name_qualifier=name_id.name_qualifier,
        sp_name_qualifier=name_id.sp_name_qualifier,
    )


def _slo_endpoint(loaded: Loaded, sp_entity_id: str) -> tuple[str, str] | None:
    """(binding, Location) of the SP's single-logout service for our requests: Redirect first, then POST."""
    for binding in (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST):
        try:
            found = loaded.server.metadata.single_logout_service(sp_entity_id, binding, "spsso")
        except (UnsupportedBinding, KeyError):  # pysaml2 raises, rather than answering "none", for a missing one
            continue
        endpoints = found.get(binding) if isinstance(found, dict) else found
        if endpoints and endpoints[0].get("location"):
            return binding, str(endpoints[0]["location"])
    return None


def _send(
    loaded: Loaded, binding: str, location: str, param: str, message: Any, relay_state: str | None
) -> PostForm | RedirectTo:
    if binding == BINDING_HTTP_POST:
        return _post_form(location, param, _sign_whole(loaded, message), relay_state)
    xml = str(message).encode("utf-8")
    return RedirectTo(bindings.redirect_url(location, param, xml, relay_state, loaded.redirect_key))


def _sign_whole(loaded: Loaded, message: Any) -> str:
    message.signature = _signature_template(loaded, message.id)
    return str(signed_instance_factory(message, loaded.server.sec, [(class_name(message), message.id)]))


def _instant(moment: datetime) -> str:
    return str(instant(time_stamp=int(moment.timestamp())))


def _post_form(action: str, param: str, xml: str | bytes, relay_state: str | None) -> PostForm:
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    fields = {param: base64.b64encode(data).decode("ascii")}
    if relay_state is not None:
        fields["RelayState"] = relay_state
    return PostForm(action, fields)
