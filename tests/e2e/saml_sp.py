"""An independent SAML SP for the end-to-end tests, built on python3-saml (OneLogin), not on pysaml2.

It makes AuthnRequests and LogoutRequests the way a real SP would (Redirect or POST, signed or not) and
validates our responses strictly: signatures over response and assertion, SHA-256, audience, destination,
InResponseTo, timing. It does not listen on a port: the test's "browser" carries the auto-POST form to it.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from idp.keys.material import new_key_and_certificate
from idp.settings import load_settings
from idp.sps.policy import SpPolicy
from idp.sps.registry import SpRegistry
from idp.store.db import Database

if TYPE_CHECKING:  # harness imports this module
    from tests.e2e.harness import IdpServer


@dataclass
class LoginResult:
    nameid: str
    nameid_format: str
    attributes: dict[str, list[str]]
    friendly: dict[str, list[str]]
    session_index: str
    relay_state: str | None
    response_xml: str


@dataclass
class IndependentSp:
    entity_id: str
    acs_url: str
    sign_requests: bool
    idp_metadata_xml: str
    key_pem: str = ""
    cert_pem: str = ""
    want_assertions_encrypted: bool = False
    """Refuse assertions in clear and decrypt ours with key_pem; the metadata then lists cert_pem for encryption."""
    _last_request_id: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.key_pem:
            self.key_pem, self.cert_pem = new_key_and_certificate(urlsplit(self.entity_id).hostname or "sp")

    # --- configuration ------------------------------------------------------------------------------------

    def settings_dict(self) -> dict:
        idp = OneLogin_Saml2_IdPMetadataParser.parse(self.idp_metadata_xml)["idp"]
        base = self.acs_url.rsplit("/", 1)[0]
        return {
            "strict": True,
            "debug": False,
            "sp": {
                "entityId": self.entity_id,
                "assertionConsumerService": {"url": self.acs_url, "binding": C.BINDING_HTTP_POST},
                "singleLogoutService": {"url": base + "/sls", "binding": C.BINDING_HTTP_REDIRECT},
                "NameIDFormat": C.NAMEID_UNSPECIFIED,
                "x509cert": self.cert_pem,
                "privateKey": self.key_pem,
            },
            "idp": idp,
            "security": {
                "authnRequestsSigned": self.sign_requests,
                "logoutRequestSigned": True,
                "logoutResponseSigned": True,
                "wantMessagesSigned": True,
                "wantAssertionsSigned": True,
                "wantNameId": True,
                "wantAssertionsEncrypted": self.want_assertions_encrypted,
                "requestedAuthnContext": False,
                "signatureAlgorithm": C.RSA_SHA256,
                "digestAlgorithm": C.SHA256,
                "rejectDeprecatedAlgorithm": True,
            },
        }

    def settings(self) -> OneLogin_Saml2_Settings:
        return OneLogin_Saml2_Settings(self.settings_dict(), sp_validation_only=False)

    def metadata_xml(self) -> bytes:
        s = self.settings()
        xml = s.get_sp_metadata()
        errors = s.validate_metadata(xml)
        assert not errors, errors
        return xml if isinstance(xml, bytes) else xml.encode()

    # --- requests -----------------------------------------------------------------------------------------

    def _request_data(self, url: str, *, get: dict | None = None, post: dict | None = None) -> dict:
        parts = urlsplit(url)
        return {
            "https": "on" if parts.scheme == "https" else "off",
            "http_host": parts.netloc,
            "script_name": parts.path,
            "get_data": get or {},
            "post_data": post or {},
        }

    def redirect_login_url(
        self,
        *,
        relay_state: str | None = "/inbox",
        force_authn: bool = False,
        is_passive: bool = False,
        nameid_format: str | None = None,
    ) -> str:
        """The URL the SP sends the browser to (HTTP-Redirect binding, signed when configured)."""
        settings = self.settings_dict()
        if nameid_format:
            settings["sp"]["NameIDFormat"] = nameid_format
        auth = OneLogin_Saml2_Auth(self._request_data(self.acs_url), settings)
        url = auth.login(
            return_to=relay_state,
            force_authn=force_authn,
            is_passive=is_passive,
            set_nameid_policy=nameid_format is not None,
        )
        self._last_request_id = auth.get_last_request_id()
        return url

    def post_login_fields(self, *, relay_state: str | None = "/inbox", sign: bool | None = None) -> dict[str, str]:
        """The form fields of an HTTP-POST binding AuthnRequest (enveloped signature when signing)."""
        req = OneLogin_Saml2_Authn_Request(self.settings(), set_nameid_policy=False)
        self._last_request_id = req.get_id()
        xml = req.get_xml()
        if self.sign_requests if sign is None else sign:
            xml = OneLogin_Saml2_Utils.add_sign(
                xml, self.key_pem, self.cert_pem, sign_algorithm=C.RSA_SHA256, digest_algorithm=C.SHA256
            )
        xml_bytes = xml if isinstance(xml, bytes) else xml.encode()
        fields = {"SAMLRequest": base64.b64encode(xml_bytes).decode()}
        if relay_state is not None:
            fields["RelayState"] = relay_state
        return fields

    def logout_url(self, *, name_id: str, session_index: str, nameid_format: str | None = None) -> str:
        auth = OneLogin_Saml2_Auth(self._request_data(self.acs_url), self.settings_dict())
        url = auth.logout(return_to="/bye", name_id=name_id, session_index=session_index, name_id_format=nameid_format)
        self._last_request_id = auth.get_last_request_id()
        return url

    def post_logout_fields(self, *, name_id: str, session_index: str, nameid_format: str) -> dict[str, str]:
        """An HTTP-POST binding LogoutRequest with an enveloped signature."""
        req = OneLogin_Saml2_Logout_Request(
            self.settings(), name_id=name_id, session_index=session_index, name_id_format=nameid_format
        )
        self._last_request_id = req.id
        xml = OneLogin_Saml2_Utils.add_sign(
            req.get_xml(), self.key_pem, self.cert_pem, sign_algorithm=C.RSA_SHA256, digest_algorithm=C.SHA256
        )
        return {"SAMLRequest": base64.b64encode(xml if isinstance(xml, bytes) else xml.encode()).decode()}

    # --- responses ----------------------------------------------------------------------------------------

    def consume(self, action: str, fields: dict[str, str], *, unsolicited: bool = False) -> LoginResult:
        """Validate a response posted to our ACS the way the SP's ACS endpoint would; raise on any error.

        ``unsolicited``: an IdP-initiated response, which answers no request of ours. python3-saml then checks
        no InResponseTo at all: the caller asserts there is none."""
        assert action == self.acs_url, f"response posted to {action}, expected {self.acs_url}"
        auth = OneLogin_Saml2_Auth(self._request_data(self.acs_url, post=fields), self.settings_dict())
        auth.process_response(request_id=None if unsolicited else self._last_request_id)
        errors = auth.get_errors()
        if errors:
            raise AssertionError(f"SP rejected the response: {errors}: {auth.get_last_error_reason()}")
        assert auth.is_authenticated()
        return LoginResult(
            nameid=auth.get_nameid(),
            nameid_format=auth.get_nameid_format(),
            attributes=auth.get_attributes(),
            friendly=auth.get_friendlyname_attributes(),
            session_index=auth.get_session_index(),
            relay_state=fields.get("RelayState"),
            response_xml=auth.get_last_response_xml().decode()
            if isinstance(auth.get_last_response_xml(), bytes)
            else auth.get_last_response_xml(),
        )

    def status_of(self, fields: dict[str, str]) -> str:
        """The top-level status code of an error response (python3-saml refuses to 'process' those)."""
        xml = base64.b64decode(fields["SAMLResponse"])
        root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
        codes = root.findall(".//{urn:oasis:names:tc:SAML:2.0:protocol}StatusCode")
        return "/".join(c.get("Value").rsplit(":", 1)[-1] for c in codes)

    def validate_logout_response(self, url_or_fields: str | dict[str, str]) -> None:
        """Process our LogoutResponse (Redirect binding) with signature checks; raise on any error."""
        assert isinstance(url_or_fields, str)
        parts = urlsplit(url_or_fields)
        get = {k: v[0] for k, v in parse_qs(parts.query).items()}
        sls = self.acs_url.rsplit("/", 1)[0] + "/sls"
        data = self._request_data(sls, get=get)
        data["query_string"] = parts.query
        auth = OneLogin_Saml2_Auth(data, self.settings_dict())
        auth.process_slo(request_id=self._last_request_id, delete_session_cb=lambda: None)
        errors = auth.get_errors()
        if errors:
            raise AssertionError(f"SP rejected the LogoutResponse: {errors}: {auth.get_last_error_reason()}")

    def answer_logout_request(self, url: str) -> tuple[str, str, list[str]]:
        """The SP's single-logout address receiving the IdP's LogoutRequest (Redirect binding): validated the way
        python3-saml does (signature, Destination, Issuer, NotOnOrAfter), the local session ended, and a signed
        LogoutResponse sent back. (The URL back to the IdP, the NameID and the SessionIndexes it named.)"""
        sls = self.acs_url.rsplit("/", 1)[0] + "/sls"
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == sls, f"LogoutRequest sent to {url}, expected {sls}"
        data = self._request_data(sls, get={k: v[0] for k, v in parse_qs(parts.query).items()})
        data["query_string"] = parts.query
        auth = OneLogin_Saml2_Auth(data, self.settings_dict())
        back = auth.process_slo(delete_session_cb=lambda: None)
        errors = auth.get_errors()
        if errors:
            raise AssertionError(f"SP rejected the LogoutRequest: {errors}: {auth.get_last_error_reason()}")
        xml = auth.get_last_request_xml()
        return (
            back,
            OneLogin_Saml2_Logout_Request.get_nameid(xml),
            OneLogin_Saml2_Logout_Request.get_session_indexes(xml),
        )


def register_sp(
    server: IdpServer, name: str, policy: SpPolicy, *, want_assertions_encrypted: bool = False
) -> IndependentSp:
    """A new SP under a unique entityID, added with `idp sp add` as an admin would, then given ``policy`` in the
    IdP's database (the shared IdP's own SPs stay as they are)."""
    sp = IndependentSp(
        entity_id=f"https://{name}-{uuid.uuid4().hex[:8]}.sp.test/saml",
        acs_url=f"http://127.0.0.1:9800/{name}/acs",
        sign_requests=False,
        idp_metadata_xml=server.metadata(),
        want_assertions_encrypted=want_assertions_encrypted,
    )
    folder = server.root / "sp-metadata"
    folder.mkdir(exist_ok=True)
    path = folder / f"{urlsplit(sp.entity_id).hostname}.xml"
    path.write_bytes(sp.metadata_xml())
    server.idp("sp", "add", str(path))
    settings = load_settings(server.config)
    db = Database(settings.database_url)
    try:
        SpRegistry(settings.metadata.dir, db, settings.sp_defaults).set_policy(sp.entity_id, policy)
    finally:
        db.dispose()
    return sp


def write_metadata(sp: IndependentSp, folder: Path) -> Path:
    path = folder / (sp.entity_id.rstrip("/").rsplit("/", 1)[-1] + ".xml")
    path.write_bytes(sp.metadata_xml())
    return path
