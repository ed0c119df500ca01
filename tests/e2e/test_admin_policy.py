"""The policy page as an admin uses it, and what an employee then gets: the independent SP (python3-saml)
receives exactly the attributes the admin chose, and only members of the chosen group get in."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from idp.demo.samba_dc import DEMO_USERS
from idp.sps.registry import POLICY_CACHE_SECONDS
from tests.e2e.browser import Browser, Page, admin_browser
from tests.e2e.harness import eventually, free_port
from tests.e2e.saml_sp import IndependentSp, LoginResult, write_metadata

pytestmark = pytest.mark.ad

USERS = {u.username: u for u in DEMO_USERS}
OID = {
    "mail": "urn:oid:0.9.2342.19200300.100.1.3",
    "displayName": "urn:oid:2.16.840.1.113730.3.1.241",
    "upn": "urn:oid:1.2.840.113556.1.4.656",
}


@pytest.fixture
def fresh_sp(idp_server, tmp_path) -> IndependentSp:
    """An SP of this test alone (the shared server's SPs keep their policies)."""
    name = f"policy-{uuid.uuid4().hex[:8]}"
    sp = IndependentSp(
        entity_id=f"https://{name}.sp.test/saml",
        acs_url=f"http://127.0.0.1:{free_port()}/{name}/acs",
        sign_requests=False,
        idp_metadata_xml=idp_server.metadata(),
    )
    idp_server.idp("sp", "add", str(write_metadata(sp, tmp_path)))
    return sp


def policy_url(idp_server, sp: IndependentSp) -> str:
    return f"{idp_server.base_url}/admin/sps/policy?entity_id={quote(sp.entity_id, safe='')}"


def sign_in(sp: IndependentSp, username: str):
    browser = Browser()
    page = browser.login(browser.get(sp.redirect_login_url()), username, USERS[username].password)
    return page, (sp.consume(*browser.saml_post(page)) if page.is_auto_post else None)


def sign_in_once_saved(sp: IndependentSp, username: str, arrived: Callable[[Page, LoginResult | None], bool]):
    """Sign in until ``arrived`` says the answer follows the saved policy, and return that (page, result).

    Each worker keeps an SP's policy for POLICY_CACHE_SECONDS, and the page read it in one of them: a
    sign-in may meet the old policy until then, never after."""

    def attempt():
        outcome = sign_in(sp, username)
        return outcome if arrived(*outcome) else None

    return eventually(attempt, within=POLICY_CACHE_SECONDS + 10, what=f"{username}'s sign-in followed the saved policy")


def releases(attribute: str) -> Callable[[Page, LoginResult | None], bool]:
    return lambda _, result: result is not None and attribute in result.attributes


def refused(page: Page, result: LoginResult | None) -> bool:
    return result is None and page.status == 403


def test_admin_restricts_to_a_group_and_changes_attributes_and_the_sp_gets_exactly_that(idp_server, fresh_sp):
    admin = admin_browser(idp_server.base_url)
    page = admin.get(policy_url(idp_server, fresh_sp))
    assert page.status == 200, page.html[:500]
    assert page.text_of("sp-entity-id") == fresh_sp.entity_id

    page = admin.submit(page, "policy-form", {"allowed_groups": "Sales", "attributes": ["mail", "displayName", "upn"]})
    assert page.status == 200 and "saved" in page.html
    assert parse_qs(urlsplit(page.url).query)["entity_id"] == [fresh_sp.entity_id]
    assert "upn" in (page.text_of("receives-attributes") or "")

    _, result = sign_in_once_saved(fresh_sp, "alice", releases(OID["upn"]))  # Sales
    alice = USERS["alice"]
    assert result.attributes == {
        OID["mail"]: [alice.mail],
        OID["displayName"]: [result.attributes[OID["displayName"]][0]],
        OID["upn"]: [f"alice@{alice.mail.split('@')[1]}"],
    }
    assert result.attributes[OID["displayName"]][0]

    page, _ = sign_in_once_saved(fresh_sp, "bob", refused)  # Engineering: not in Sales
    assert "not allowed to use" in (page.text_of("error") or "")

    rows = idp_server.audit_rows(event="sp_policy_changed", sp_entity_id=fresh_sp.entity_id)
    assert rows[0]["result"] == "success" and rows[0]["username"] == "anna"
    detail = json.loads(rows[0]["detail"])
    assert detail["before"]["allowed_groups"] == []
    [sales] = detail["after"]["allowed_groups"]  # the group's identity: its DN, and the SID that is compared
    assert sales.startswith("CN=Sales,CN=Users,") and " <S-1-5-21-" in sales
    assert "upn" not in detail["before"]["attributes"] and detail["after"]["attributes"] == [
        "mail",
        "displayName",
        "upn",
    ]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"attributes": ["mail", "shoeSize"]}, "attributes", "not an attribute in the catalogue"),
        (
            {"role_group": ["Sales", ""], "role_arn": ["arn:aws:iam::1:role/x", ""], "role_provider": ["", ""]},
            "roles",
            "acs:ram::",
        ),
        ({"assertion_lifetime": "5"}, "assertion_lifetime", "30"),
        ({"assertion_lifetime": "7200"}, "assertion_lifetime", "3600"),
        ({"sign_response": [], "sign_assertion": []}, "sign_response", "cannot both be off"),
    ],
    ids=["unknown-attribute", "bad-arn", "lifetime-too-short", "lifetime-too-long", "unsigned"],
)
def test_bad_input_is_shown_next_to_its_field_and_nothing_changes(idp_server, fresh_sp, changes, field, words):
    admin = admin_browser(idp_server.base_url)
    page = admin.get(policy_url(idp_server, fresh_sp))
    _, before = page.form_values("policy-form")
    refused = admin.submit(page, "policy-form", changes)
    assert refused.status == 400
    assert words in (refused.text_of(f"error-{field}") or ""), refused.text_of(f"error-{field}")
    assert refused.text_of("policy-errors")
    _, after = admin.get(policy_url(idp_server, fresh_sp)).form_values("policy-form")
    assert [p for p in after if p[0] != "csrf_token"] == [p for p in before if p[0] != "csrf_token"]
    rows = idp_server.audit_rows(event="sp_policy_changed", sp_entity_id=fresh_sp.entity_id)
    assert rows[0]["result"] == "refused" and rows[0]["reason"] == "invalid_policy"


def test_a_group_ad_does_not_have_is_refused_and_shown_as_typed(idp_server, fresh_sp):
    admin = admin_browser(idp_server.base_url)
    page = admin.get(policy_url(idp_server, fresh_sp))
    page = admin.submit(page, "policy-form", {"allowed_groups": "Sales\nSlaes"})
    assert page.status == 400
    error = page.text_of("error-allowed_groups") or ""
    assert "Slaes" in error and "'Sales'" not in error
    assert page.doc().get_element_by_id("f-allowed_groups").text_content().split() == ["Sales", "Slaes"]
    assert idp_server.audit_rows(event="sp_policy_changed", sp_entity_id=fresh_sp.entity_id) == []


def test_a_preset_fills_the_form_and_only_save_stores_it(idp_server, fresh_sp):
    admin = admin_browser(idp_server.base_url)
    page = admin.get(policy_url(idp_server, fresh_sp) + "&preset=mailbox")
    assert page.doc().get_element_by_id("preset-form") is not None
    shown = admin.submit(page, "preset-form", {"param_allowed_groups": "Mail Users"})
    assert shown.status == 200
    assert "department" in (shown.text_of("receives-attributes") or "")
    assert idp_server.audit_rows(event="sp_policy_changed", sp_entity_id=fresh_sp.entity_id) == []

    saved = admin.submit(shown, "policy-form")
    assert saved.status == 200 and "saved" in saved.html
    rows = idp_server.audit_rows(event="sp_policy_changed", sp_entity_id=fresh_sp.entity_id)
    after = json.loads(rows[0]["detail"])["after"]
    assert after["preset"] == "mailbox" and after["allowed_groups"][0].startswith("CN=Mail Users,CN=Users,")
    assert after["attribute_name_format"] == "basic" and after["idp_initiated"] is True

    # Engineering is inside Mail Users; the preset names attributes in the basic format: "mail", not its OID.
    _, result = sign_in_once_saved(fresh_sp, "bob", releases("mail"))
    assert result.nameid == USERS["bob"].mail
    assert result.attributes["mail"] == [USERS["bob"].mail]
    assert set(result.attributes) <= {"mail", "displayName", "givenName", "sn", "department"}


def test_bad_preset_parameters_are_named_and_nothing_is_filled(idp_server, fresh_sp):
    admin = admin_browser(idp_server.base_url)
    page = admin.get(policy_url(idp_server, fresh_sp) + "&preset=aliyun_ram_role")
    shown = admin.submit(page, "preset-form", {"param_roles": "Sales, acs:ram::123:role/x, nonsense"})
    assert shown.status == 400
    assert "line 1" in (shown.text_of("preset-error-roles") or "")
    assert shown.doc().get_element_by_id("role-table").xpath(".//input[@name='role_arn'][@value!='']") == []


def test_the_page_reads_in_chinese_and_refuses_an_unknown_sp(idp_server, fresh_sp):
    admin = admin_browser(idp_server.base_url)
    admin.http.headers["Accept-Language"] = "zh-CN"
    assert "发送的属性" in admin.get(policy_url(idp_server, fresh_sp)).html
    assert admin.get(f"{idp_server.base_url}/admin/sps/policy?entity_id=https%3A%2F%2Fnobody.test").status == 404


def test_non_admins_cannot_open_the_page(idp_server, fresh_sp):
    browser = Browser()
    page = browser.login(browser.get(policy_url(idp_server, fresh_sp)), "alice", USERS["alice"].password)
    assert page.status == 403


def test_encryption_without_an_encryption_certificate_is_saved_with_a_warning(idp_server, fresh_sp):
    # python3-saml publishes only a signing certificate unless it wants encrypted assertions.
    admin = admin_browser(idp_server.base_url)
    page = admin.submit(admin.get(policy_url(idp_server, fresh_sp)), "policy-form", {"encrypt_assertion": "on"})
    assert page.status == 200 and "saved" in page.html
    assert "no encryption certificate" in (page.text_of("encryption-warning") or "")
    assert page.doc().get_element_by_id("f-encrypt_assertion").checked
