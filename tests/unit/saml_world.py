"""Our SAML layer, and python3-saml (an independent library) playing the SP: the pieces the SAML unit tests
share. Fixtures that build them live in conftest.py."""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from idp.keys.material import read_persistent_secret
from idp.person import Person
from idp.saml.messages import AuthnRequestInfo, NameIdPolicyError, PostForm
from idp.saml.requests import SamlRequests
from idp.saml.responses import SamlResponses
from idp.saml.server import SamlServer
from idp.settings import Settings
from idp.sps.policy import SpPolicy
from idp.sps.release import release
from idp.sps.source import SpSource
from idp.store.db import Database
from idp.store.seen import SeenRequests

IDP_BASE = "https://idp.example.test"
SP_ENTITY = "https://mail.example.test/saml/metadata"
SP_ACS = "https://mail.example.test/saml/acs"
SP_SLO = "https://mail.example.test/saml/slo"
# A second SP in the same browser, for single logout: its own entityID, ACS and SLO address.
SP2_ENTITY = "https://calendar.example.test/saml/metadata"
SP2_ACS = "https://calendar.example.test/saml/acs"
SP2_SLO = "https://calendar.example.test/saml/sls"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
ACS_REQUEST_DATA = {"https": "on", "http_host": "mail.example.test", "script_name": "/saml/acs", "get_data": {}}


@dataclass
class Registry:
    """A tiny SpSource: metadata files in a directory, policies in a dict, a version that changes on every edit."""

    directory: Path
    policies: dict[str, SpPolicy] = field(default_factory=dict)
    _version: int = 0

    def add(
        self, name: str, metadata_xml: str | bytes, policy: SpPolicy | None = None, entity_id: str = SP_ENTITY
    ) -> None:
        data = metadata_xml.encode() if isinstance(metadata_xml, str) else metadata_xml
        (self.directory / f"{name}.xml").write_bytes(data)
        if policy is not None:
            self.policies[entity_id] = policy
        self._version += 1

    def metadata_files(self) -> list[Path]:
        return sorted(self.directory.glob("*.xml"))

    def policy_for(self, entity_id: str) -> SpPolicy:
        return self.policies.get(entity_id, SpPolicy())

    def metadata_expired(self, entity_id: str) -> None:
        return None

    def version(self) -> str:
        return str(self._version)


def sp_settings(
    sp_pem: tuple[str, str],
    *,
    sign_requests: bool = False,
    idp: dict[str, Any] | None = None,
    sig_alg: str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    entity_id: str = SP_ENTITY,
    acs_url: str = SP_ACS,
    slo_url: str = SP_SLO,
    slo_binding: str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
) -> dict[str, Any]:
    key, cert = sp_pem
    return {
        "strict": True,
        "sp": {
            "entityId": entity_id,
            "assertionConsumerService": {"url": acs_url, "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"},
            "singleLogoutService": {"url": slo_url, "binding": slo_binding},
            "NameIDFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
            "x509cert": cert,
            "privateKey": key,
        },
        "idp": idp or {"entityId": "placeholder", "singleSignOnService": {"url": IDP_BASE + "/saml/sso"}},
        "security": {
            "authnRequestsSigned": sign_requests,
            "logoutRequestSigned": sign_requests,
            "logoutResponseSigned": sign_requests,
            "wantAssertionsSigned": True,
            "wantMessagesSigned": True,
            "signatureAlgorithm": sig_alg,
            "digestAlgorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
            "rejectDeprecatedAlgorithm": True,
            "wantNameId": True,
        },
    }


def sp_metadata(sp_pem: tuple[str, str], *, sign_requests: bool = False, **where: Any) -> str:
    """``where``: entity_id, acs_url, slo_url, slo_binding of sp_settings; an empty certificate in ``sp_pem``
    leaves the signing certificate out of the metadata."""
    s = OneLogin_Saml2_Settings(sp_settings(sp_pem, sign_requests=sign_requests, **where), sp_validation_only=True)
    metadata = s.get_sp_metadata()
    return metadata.decode() if isinstance(metadata, bytes) else metadata


class SamlLayer:
    """Our SAML layer as a front end wires it (idp.app.build_services), without the web and the directory:
    the server, the request reader and the response writer. ``authn_response`` takes the release steps'
    public functions (NameID, released attributes) the way the sign-in pipeline does."""

    def __init__(self, settings: Settings, sps: SpSource) -> None:
        self.settings = settings
        self.server = SamlServer(settings, sps)
        self.requests = SamlRequests(settings, self.server, sps, SeenRequests(Database(settings.database_url)))
        self.responses = SamlResponses(
            settings, self.server, read_persistent_secret(settings.idp.persistent_id_secret_file)
        )
        self._sps = sps
        self.parse_authn_request = self.requests.parse_authn_request
        self.parse_logout_request = self.requests.parse_logout_request
        self.unsolicited_request = self.requests.unsolicited_request
        self.error_response = self.responses.error_response
        self.logout_response = self.responses.logout_response
        self.logout_request = self.responses.logout_request
        self.parse_logout_response = self.requests.parse_logout_response
        self.metadata_xml = self.server.metadata_xml
        self.sp_can_encrypt = self.server.can_encrypt

    def name_id_for(self, req: AuthnRequestInfo, person: Person) -> tuple[str, str]:
        name_id = self.responses.name_id(req, self._sps.policy_for(req.sp_entity_id), person)
        return name_id.format, name_id.value

    def authn_response(
        self, req: AuthnRequestInfo, person: Person, *, session_index: str, authn_instant: datetime
    ) -> PostForm:
        policy = self._sps.policy_for(req.sp_entity_id)
        try:
            name_id = self.responses.name_id(req, policy, person)
        except NameIdPolicyError:
            return self.responses.error_response(req, "InvalidNameIDPolicy")
        return self.responses.authn_response(
            req, policy, name_id, release(policy, person), session_index=session_index, authn_instant=authn_instant
        )


@dataclass
class World:
    idp: SamlLayer
    registry: Registry
    sp_pem: tuple[str, str]

    def encrypting_sp(self) -> tuple[OneLogin_Saml2_Settings, str]:
        """python3-saml wanting encrypted assertions, and its metadata, which then carries a use="encryption"
        key."""
        settings = self.sp()
        data = {
            "strict": True,
            "sp": copy.deepcopy(settings.get_sp_data()),
            "idp": copy.deepcopy(settings.get_idp_data()),
            "security": {**settings.get_security_data(), "wantAssertionsEncrypted": True},
        }
        encrypting = OneLogin_Saml2_Settings(data)
        metadata = encrypting.get_sp_metadata()
        return encrypting, metadata.decode() if isinstance(metadata, bytes) else metadata

    def sp(
        self,
        *,
        sign_requests: bool = False,
        sig_alg: str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        acs_url: str = SP_ACS,
        nameid_format: str | None = None,
        **where: Any,
    ) -> OneLogin_Saml2_Settings:
        """python3-saml configured from our metadata, as a real SP would be; ``where`` as for sp_metadata
        (the second SP: entity_id=SP2_ENTITY, slo_url=SP2_SLO)."""
        idp_data = OneLogin_Saml2_IdPMetadataParser.parse(self.idp.metadata_xml().decode())
        merged = OneLogin_Saml2_IdPMetadataParser.merge_settings(
            sp_settings(self.sp_pem, sign_requests=sign_requests, sig_alg=sig_alg, **where), idp_data
        )
        merged = copy.deepcopy(merged)
        # Our metadata says WantAuthnRequestsSigned="false" and the parser copies that over the SP's choice.
        merged["security"].update(
            authnRequestsSigned=sign_requests, logoutRequestSigned=sign_requests, logoutResponseSigned=sign_requests
        )
        merged["sp"]["assertionConsumerService"]["url"] = acs_url
        if nameid_format is not None:
            merged["sp"]["NameIDFormat"] = nameid_format
        return OneLogin_Saml2_Settings(merged)


# ---- the SP's side, done by python3-saml -----------------------------------------------------------


def redirect_request(settings: OneLogin_Saml2_Settings, relay_state: str = "/inbox") -> tuple[str, str, str]:
    """(SAMLRequest, RelayState, raw query string) as a browser brings them to /saml/sso."""
    url = OneLogin_Saml2_Auth(dict(ACS_REQUEST_DATA, post_data={}), settings).login(return_to=relay_state)
    query = urlsplit(url).query
    params = {k: v[0] for k, v in parse_qs(query).items()}
    return params["SAMLRequest"], params["RelayState"], query


def post_request(
    settings: OneLogin_Saml2_Settings, *, sign: bool, sign_algorithm: str = RSA_SHA256, digest_algorithm: str = SHA256
) -> tuple[str, str]:
    """(SAMLRequest, request ID) for the HTTP-POST binding, enveloped-signed by python3-saml when asked."""
    request = OneLogin_Saml2_Authn_Request(settings)
    xml = request.get_xml()
    if sign:
        sp = settings.get_sp_data()
        xml = OneLogin_Saml2_Utils.add_sign(
            xml, sp["privateKey"], sp["x509cert"], sign_algorithm=sign_algorithm, digest_algorithm=digest_algorithm
        )
    data = xml if isinstance(xml, bytes) else xml.encode()
    return base64.b64encode(data).decode(), request.get_id()


def validated_response(settings: OneLogin_Saml2_Settings, form: PostForm, request_id: str) -> OneLogin_Saml2_Response:
    """python3-saml's strict validation (signed assertion and message, SHA-256 only) must pass."""
    response = OneLogin_Saml2_Response(settings, form.fields["SAMLResponse"])
    request_data = dict(ACS_REQUEST_DATA, post_data=form.fields)
    assert response.is_valid(request_data, request_id=request_id), response.get_error()
    return response


def response_tree(form: PostForm) -> etree._Element:
    return etree.fromstring(base64.b64decode(form.fields["SAMLResponse"]))


def algorithms_used(tree: etree._Element) -> set[str]:
    return set(tree.xpath("//ds:SignatureMethod/@Algorithm | //ds:DigestMethod/@Algorithm", namespaces={"ds": DSIG}))
