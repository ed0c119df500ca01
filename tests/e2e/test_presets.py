"""A response made with each preset has the shape its provider documents.

The SP is python3-saml configured as the provider publishes itself (entityID and ACS URL from the provider's
documentation, see idp/sps/presets.py), registered through presets.provider_metadata (the manual path), its
policy set by an admin through the console's preset form. python3-saml then validates our response for that
https ACS (signature, Audience = the published entityID, Destination/Recipient = the published ACS) and the
test checks what the provider reads from it: the RAM logon name, the Role and RoleSessionName attributes.

These SPs' entityIDs are the providers' real ones, so they get an IdP of their own rather than the shared one.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C

from idp.demo.samba_dc import DEMO_USERS
from idp.sps import presets
from tests.e2e.browser import Browser, admin_browser
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp

pytestmark = pytest.mark.ad

USERS = {u.username: u for u in DEMO_USERS}
UID = "1234567890123456"
PROVIDER = f"acs:ram::{UID}:saml-provider/corp-ad"
SALES_ROLE = f"acs:ram::{UID}:role/sales-readonly"
MAIL_ROLE = f"acs:ram::{UID}:role/mail-admin"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
ROLE = "https://www.aliyun.com/SAML-Role/Attributes/Role"
ROLE_SESSION_NAME = "https://www.aliyun.com/SAML-Role/Attributes/RoleSessionName"


@pytest.fixture(scope="module")
def preset_idp(samba_dc, tmp_path_factory) -> Iterator[IdpServer]:
    root = tmp_path_factory.mktemp("preset-idp")
    port = free_port()
    config = prepare_idp(root, base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings()))
    server = serve_idp(config, port, workers=1)
    try:
        yield server
    finally:
        server.stop()


class DocumentedSp(IndependentSp):
    """python3-saml wants an AttributeStatement by default; user-based SSO's documented response has none."""

    def settings_dict(self) -> dict:
        settings = super().settings_dict()
        settings["security"]["wantAttributeStatement"] = False
        return settings


def published_sp(server: IdpServer, tmp_path, key: str, params: dict[str, str]) -> IndependentSp:
    """The provider's SP as its documentation publishes it, registered by hand from those values."""
    side = presets.provider_side(key, params)
    sp = DocumentedSp(side.entity_id, side.acs_url, sign_requests=False, idp_metadata_xml=server.metadata())
    path = tmp_path / f"{key}.xml"
    path.write_bytes(presets.provider_metadata(key, params, sp.cert_pem, name=key))
    server.idp("sp", "add", str(path), "--replace")
    return sp


def generic_sp(server: IdpServer, tmp_path, name: str) -> IndependentSp:
    """An SP whose endpoints its provider does not publish (each IDaaS instance, each mailbox has its own)."""
    sp = IndependentSp(
        f"https://{name}.example.cn/saml/sp", f"https://{name}.example.cn/saml/acs", False, server.metadata()
    )
    path = tmp_path / f"{name}.xml"
    path.write_bytes(sp.metadata_xml())
    server.idp("sp", "add", str(path), "--replace")
    return sp


def apply_preset(server: IdpServer, sp: IndependentSp, key: str, params: dict[str, str]) -> None:
    """What an admin does: choose the preset, fill its parameters, review, save."""
    admin = admin_browser(server.base_url)
    url = f"{server.base_url}/admin/sps/policy?entity_id={quote(sp.entity_id, safe='')}&preset={key}"
    page = admin.get(url)
    filled = admin.submit(page, "preset-form", {f"param_{k}": v for k, v in params.items()})
    assert filled.status == 200, filled.text_of("presets")
    saved = admin.submit(filled, "policy-form")
    assert saved.status == 200 and "saved" in saved.html, saved.text_of("policy-errors")


def sign_in(sp: IndependentSp, username: str):
    browser = Browser()
    page = browser.login(browser.get(sp.redirect_login_url(relay_state=None)), username, USERS[username].password)
    if not page.is_auto_post:
        return page, None
    action, fields = browser.saml_post(page)
    return page, sp.consume(action, fields)


def test_ram_user_sso_gets_the_ram_logon_name_in_a_signed_assertion(preset_idp, tmp_path):
    params = {"account_id": UID, "nameid_domain": "corp.onaliyun.com", "nameid_attribute": "samAccountName"}
    sp = published_sp(preset_idp, tmp_path, "aliyun_ram_user", params)
    assert (sp.entity_id, sp.acs_url) == (
        f"https://signin.aliyun.com/{UID}/saml/SSO",
        "https://signin.aliyun.com/saml/SSO",
    )
    apply_preset(preset_idp, sp, "aliyun_ram_user", params)

    _, result = sign_in(sp, "alice")
    assert result.nameid == "alice@corp.onaliyun.com"
    assert result.nameid_format == C.NAMEID_EMAIL_ADDRESS
    assertion = etree.fromstring(result.response_xml.encode()).find(f"{{{SAML}}}Assertion")
    assert assertion.find(f"{{{DS}}}Signature") is not None  # the whole Assertion is signed
    assert assertion.findtext(f".//{{{SAML}}}Audience") == sp.entity_id
    assert assertion.find(f".//{{{SAML}}}SubjectConfirmationData").get("Recipient") == sp.acs_url
    assert assertion.find(f"{{{SAML}}}AttributeStatement") is None


def test_ram_role_sso_sends_role_and_provider_arns_for_each_mapped_group(preset_idp, tmp_path):
    params = {
        "roles": f"Sales, {SALES_ROLE}, {PROVIDER}\nMail Users, {MAIL_ROLE}, {PROVIDER}",
        "role_session_name_attribute": "samAccountName",
    }
    sp = published_sp(preset_idp, tmp_path, "aliyun_ram_role", params)
    assert (sp.entity_id, sp.acs_url) == ("urn:alibaba:cloudcomputing", "https://signin.aliyun.com/saml-role/sso")
    apply_preset(preset_idp, sp, "aliyun_ram_role", params)

    _, alice = sign_in(sp, "alice")  # Sales, and Mail Users through Sales
    assert sorted(alice.attributes[ROLE]) == sorted([f"{SALES_ROLE},{PROVIDER}", f"{MAIL_ROLE},{PROVIDER}"])
    assert alice.attributes[ROLE_SESSION_NAME] == ["alice"]
    assert set(alice.attributes) == {ROLE, ROLE_SESSION_NAME}

    _, bob = sign_in(sp, "bob")  # Engineering: Mail Users only
    assert bob.attributes[ROLE] == [f"{MAIL_ROLE},{PROVIDER}"]

    page, refused = sign_in(sp, "carol")  # in no mapped group: refused here, not by Alibaba Cloud
    assert refused is None and page.status == 403


def test_idaas_binds_on_the_mail_address_with_plainly_named_attributes(preset_idp, tmp_path):
    sp = generic_sp(preset_idp, tmp_path, "idaas-instance")
    apply_preset(preset_idp, sp, "aliyun_idaas", {"match_on": "mail"})
    _, result = sign_in(sp, "alice")
    assert (result.nameid, result.nameid_format) == (USERS["alice"].mail, C.NAMEID_EMAIL_ADDRESS)
    assert result.attributes["mail"] == [USERS["alice"].mail]
    assert result.attributes["sAMAccountName"] == ["alice"]
    assert set(result.attributes) <= {"mail", "displayName", "sAMAccountName", "mobile", "department"}


def test_mailbox_gets_the_address_and_the_name(preset_idp, tmp_path):
    sp = generic_sp(preset_idp, tmp_path, "mail")
    apply_preset(preset_idp, sp, "mailbox", {})
    _, result = sign_in(sp, "bob")
    bob = USERS["bob"]
    assert (result.nameid, result.nameid_format) == (bob.mail, C.NAMEID_EMAIL_ADDRESS)
    assert result.attributes["mail"] == [bob.mail]
    assert result.attributes["givenName"] == [bob.given_name]
    assert result.attributes["sn"] == [bob.surname]
    assert set(result.attributes) <= {"mail", "displayName", "givenName", "sn", "department"}
