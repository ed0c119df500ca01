"""Each field of an SP's policy changes what the SP (python3-saml, independent of our pysaml2) reads in the
response, end to end: gunicorn IdP, Samba AD, SPs registered with `idp sp add` and given their policy."""

from __future__ import annotations

import base64

import pytest
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C

from idp.demo.samba_dc import DEMO_USERS
from idp.sps.policy import RoleMapping, SpPolicy
from idp.sps.vocabulary import ROLE_ATTRIBUTE, ROLE_SESSION_NAME_ATTRIBUTE
from tests.e2e.browser import Browser
from tests.e2e.saml_sp import IndependentSp, LoginResult, register_sp

pytestmark = pytest.mark.ad

USERS = {u.username: u for u in DEMO_USERS}
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
ACCOUNT = "1234567890123456"
SALES_ROLE = RoleMapping(
    group="Sales", role_arn=f"acs:ram::{ACCOUNT}:role/sales", provider_arn=f"acs:ram::{ACCOUNT}:saml-provider/corp-ad"
)
MAIL_ROLE = RoleMapping(
    group="Mail Users",  # alice and bob are in it through Sales and Engineering: nested membership
    role_arn=f"acs:ram::{ACCOUNT}:role/mail-reader",
    provider_arn=f"acs:ram::{ACCOUNT}:saml-provider/corp-ad",
)
ADMIN_ROLE = RoleMapping(
    group="SSO Admins",
    role_arn=f"acs:ram::{ACCOUNT}:role/admin",
    provider_arn=f"acs:ram::{ACCOUNT}:saml-provider/corp-ad",
)


def sign_in(sp: IndependentSp, username: str = "alice", *, browser: Browser | None = None) -> LoginResult:
    """SP-initiated sign-in that leaves the NameID format to the IdP (the SP's policy decides)."""
    browser = browser or Browser()
    page = browser.get(sp.redirect_login_url(nameid_format=C.NAMEID_UNSPECIFIED))
    if page.is_login:
        page = browser.login(page, username, USERS[username].password)
    return sp.consume(*browser.saml_post(page))


def attributes_as_sent(result: LoginResult) -> dict[str, tuple[str | None, str | None]]:
    """Name -> (NameFormat, FriendlyName), read from the XML the SP validated."""
    root = etree.fromstring(result.response_xml.encode(), etree.XMLParser(resolve_entities=False, no_network=True))
    return {a.get("Name"): (a.get("NameFormat"), a.get("FriendlyName")) for a in root.iter(f"{{{SAML}}}Attribute")}


def test_alibaba_cloud_ram_user_logon_name_from_nameid_attribute_and_domain(idp_server):
    sp = register_sp(
        idp_server,
        "ramuser",
        SpPolicy(nameid_format="emailAddress", nameid_attribute="samAccountName", nameid_domain="corp.onaliyun.com"),
    )
    result = sign_in(sp)
    assert (result.nameid_format, result.nameid) == (C.NAMEID_EMAIL_ADDRESS, "alice@corp.onaliyun.com")
    assert sign_in(sp, "bob").nameid == "bob@corp.onaliyun.com"


def test_nameid_attribute_for_unspecified_format(idp_server):
    sp = register_sp(idp_server, "upnid", SpPolicy(nameid_format="unspecified", nameid_attribute="upn"))
    result = sign_in(sp)
    assert result.nameid_format == C.NAMEID_UNSPECIFIED
    assert result.nameid == USERS["alice"].upn


def test_basic_attribute_names(idp_server):
    sp = register_sp(idp_server, "basic", SpPolicy(attributes=["mail", "givenName"], attribute_name_format="basic"))
    result = sign_in(sp)
    assert result.attributes == {"mail": [USERS["alice"].mail], "givenName": [USERS["alice"].given_name]}
    basic = (C.ATTRNAME_FORMAT_BASIC, None)  # the Name is the friendly name: no FriendlyName beside it
    assert attributes_as_sent(result) == {"mail": basic, "givenName": basic}


def test_uri_names_with_custom_overrides(idp_server):
    claim = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
    sp = register_sp(
        idp_server,
        "custom",
        SpPolicy(attributes=["mail", "displayName", "sn"], attribute_names={"mail": claim, "displayName": "name"}),
    )
    result = sign_in(sp)
    assert result.attributes[claim] == [USERS["alice"].mail]
    assert result.attributes["name"] == ["Alice Wang"]
    assert result.attributes["urn:oid:2.5.4.4"] == [USERS["alice"].surname]
    assert attributes_as_sent(result) == {
        claim: (C.ATTRNAME_FORMAT_URI, "mail"),
        "name": (C.ATTRNAME_FORMAT_BASIC, "displayName"),
        "urn:oid:2.5.4.4": (C.ATTRNAME_FORMAT_URI, "sn"),
    }


def test_alibaba_cloud_roles_follow_nested_group_membership(idp_server):
    sp = register_sp(
        idp_server,
        "ramrole",
        SpPolicy(attributes=[], roles=[SALES_ROLE, MAIL_ROLE, ADMIN_ROLE], role_session_name_attribute="mail"),
    )
    alice = sign_in(sp)
    assert alice.attributes[ROLE_ATTRIBUTE] == [SALES_ROLE.value, MAIL_ROLE.value]
    assert alice.attributes[ROLE_SESSION_NAME_ATTRIBUTE] == [USERS["alice"].mail]
    bob = sign_in(sp, "bob")
    assert bob.attributes[ROLE_ATTRIBUTE] == [MAIL_ROLE.value]
    assert attributes_as_sent(alice)[ROLE_ATTRIBUTE] == (C.ATTRNAME_FORMAT_URI, None)


def test_person_without_a_role_is_refused_with_a_message_and_an_audit_row(idp_server):
    sp = register_sp(idp_server, "adminrole", SpPolicy(attributes=[], roles=[ADMIN_ROLE]))
    browser = Browser()
    page = browser.get(sp.redirect_login_url())
    page = browser.login(page, "alice", USERS["alice"].password)
    assert page.status == 403
    assert page.doc().get_element_by_id("error").get("data-reason") == "no_role_for_user"
    assert "no role" in page.text_of("error")
    zh = Browser(accept_language="zh-CN")
    page = zh.login(zh.get(sp.redirect_login_url()), "alice", USERS["alice"].password)
    assert "角色" in page.text_of("error")
    rows = idp_server.audit_rows(event="signin", sp_entity_id=sp.entity_id, username="alice")
    assert rows[0]["result"] == "failure" and rows[0]["reason"] == "no_role_for_user"
    assert "SSO Admins" in rows[0]["detail"]
    assert sign_in(sp, "anna").attributes[ROLE_ATTRIBUTE] == [ADMIN_ROLE.value]


def test_unsigned_assertion_when_the_policy_says_so(idp_server):
    sp = register_sp(idp_server, "nosig", SpPolicy(attributes=["mail"], sign_assertion=False))
    sp_settings = sp.settings_dict()
    assert sp_settings["security"]["wantAssertionsSigned"]  # python3-saml must refuse it, proving the field counts
    browser = Browser()
    page = browser.login(browser.get(sp.redirect_login_url()), "alice", USERS["alice"].password)
    action, fields = browser.saml_post(page)
    xml = base64.b64decode(fields["SAMLResponse"])
    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    assertion = root.find(f"{{{SAML}}}Assertion")
    assert assertion.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is None
    with pytest.raises(AssertionError, match="Assertion of the Response is not signed"):
        sp.consume(action, fields)
