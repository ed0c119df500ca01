"""Single logout and our metadata, both checked by python3-saml."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from idp.saml.errors import SamlRequestError
from idp.saml.messages import RedirectTo
from tests.unit.saml_world import IDP_BASE, SP_ENTITY, SP_SLO, World, sp_metadata

SLO_REQUEST_DATA = {"https": "on", "http_host": "mail.example.test", "script_name": "/saml/slo", "post_data": {}}


def _sp_logout(world: World, *, signed: bool) -> tuple[dict[str, str], str, str]:
    sp = world.sp(sign_requests=signed)
    auth = OneLogin_Saml2_Auth(dict(SLO_REQUEST_DATA, get_data={}), sp)
    url = auth.logout(return_to="/bye", name_id="alice@example.test", session_index="sso-42")
    query = urlsplit(url).query
    return {k: v[0] for k, v in parse_qs(query).items()}, query, auth.get_last_request_id()


@pytest.mark.parametrize("signed", [False, True])
def test_logout_request_round_trip_validates_with_python3_saml(world: World, signed: bool) -> None:
    # An SP whose metadata lists a signing certificate must sign its logout messages: unsigned, it lists none.
    world.registry.add("mail", sp_metadata(world.sp_pem if signed else ("", ""), sign_requests=signed))
    params, query, request_id = _sp_logout(world, signed=signed)
    info = world.idp.parse_logout_request("redirect", params["SAMLRequest"], params["RelayState"], query_string=query)
    assert (info.sp_entity_id, info.name_id, info.session_indexes) == (SP_ENTITY, "alice@example.test", ("sso-42",))

    answer = world.idp.logout_response(info)

    assert isinstance(answer, RedirectTo) and answer.url.startswith(SP_SLO + "?")
    back = {k: v[0] for k, v in parse_qs(urlsplit(answer.url).query).items()}
    assert back["SigAlg"] == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" and back["RelayState"] == "/bye"
    sp_auth = OneLogin_Saml2_Auth(dict(SLO_REQUEST_DATA, get_data=back), world.sp())  # wantMessagesSigned
    sp_auth.process_slo(keep_local_session=True, request_id=request_id)
    assert sp_auth.get_errors() == [], sp_auth.get_last_error_reason()


def test_unsigned_logout_request_refused_when_sp_signs_its_requests(world: World) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    params, query, _ = _sp_logout(world, signed=False)
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_logout_request("redirect", params["SAMLRequest"], params["RelayState"], query_string=query)
    assert err.value.reason == "unsigned_request"


def test_metadata_parses_and_advertises_only_sha256_or_stronger(world: World) -> None:
    xml = world.idp.metadata_xml().decode()
    parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml)["idp"]
    assert parsed["entityId"] == f"{IDP_BASE}/saml/metadata"
    assert parsed["singleSignOnService"]["url"] == f"{IDP_BASE}/saml/sso"
    assert parsed["singleLogoutService"]["url"] == f"{IDP_BASE}/saml/slo"
    tree = etree.fromstring(xml.encode())
    # Algorithm URIs only: the base64 of a random certificate can spell "md5" or "sha1" by chance.
    algorithms = " ".join(tree.xpath("//@Algorithm")).lower()
    assert "sha256" in algorithms
    for weak in ("sha1", "md5", "ripemd", "sha224"):
        assert weak not in algorithms
    formats = tree.xpath("//*[local-name()='NameIDFormat']/text()")
    assert {f.rsplit(":", 1)[1] for f in formats} == {"emailAddress", "persistent", "transient", "unspecified"}
    assert tree.xpath("//*[local-name()='IDPSSODescriptor']/@WantAuthnRequestsSigned") == ["false"]


def test_metadata_signature_verifies_with_our_certificate(world: World) -> None:
    cert = world.idp.settings.idp.cert_file.read_text()
    assert OneLogin_Saml2_Utils.validate_metadata_sign(world.idp.metadata_xml(), cert, raise_exceptions=True)
