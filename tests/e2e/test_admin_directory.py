"""/admin/directory against the real IdP and Samba AD: settings without secrets, the `idp ldap test` checks per
DC (one of them dead), and a person lookup whose preview matches what a real sign-in then delivers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from idp.demo.samba_dc import DEMO_USERS
from idp.sps.policy import SpPolicy
from tests.e2e.browser import Browser, Page, admin_browser
from tests.e2e.harness import ARTIFACTS, IdpServer, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, register_sp, write_metadata

pytestmark = pytest.mark.ad

ALICE = next(u for u in DEMO_USERS if u.username == "alice")
DEAD_DC = "ldaps://127.0.0.1:1"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


def _register_sp(server: IdpServer, folder: Path, name: str, *options: str) -> IndependentSp:
    sp = IndependentSp(
        entity_id=f"https://{name}-{uuid.uuid4().hex[:8]}.sp.test/saml",
        acs_url=f"http://127.0.0.1:{free_port()}/{name}/acs",
        sign_requests=False,
        idp_metadata_xml=server.metadata(),
    )
    folder.mkdir(parents=True, exist_ok=True)
    server.idp("sp", "add", str(write_metadata(sp, folder)), *options)
    return sp


def _no_secret(page: Page, password: str) -> None:
    assert password not in page.html


def _cells(page: Page, url: str) -> dict[str, tuple[str, float | None, str]]:
    """Step name -> (ok "yes"/"no", latency in ms, visible text) of one DC's row in the results table."""
    rows = page.doc().xpath(f"//table[@id='dc-results']//tr[@data-url='{url}']")
    assert len(rows) == 1, page.html[:2000]
    return {
        td.get("data-step"): (td.get("data-ok"), float(td.get("data-ms")), td.text_content().strip())
        for td in rows[0].xpath("./td[@data-step]")
    }


def test_settings_are_shown_and_the_password_never(idp_server, samba_dc):
    password = samba_dc.ldap_settings()["bind_password"]
    browser = admin_browser(idp_server.base_url)
    page = browser.get(idp_server.base_url + "/admin/directory")
    assert page.status == 200
    settings = page.text_of("ldap-settings")
    assert samba_dc.ldaps_url in settings
    assert "DC=corp,DC=example,DC=com" in settings
    assert samba_dc.ldap_settings()["bind_dn"] in settings
    assert "not shown" in page.text_of("bind-password")
    assert "LDAPS" in settings
    _no_secret(page, password)
    nav = [a.get("href") for a in page.doc().xpath("//nav[@id='admin-nav']/a")]
    assert "/admin/directory" in nav


def test_connection_test_shows_each_step_with_latency_and_is_audited(idp_server, samba_dc):
    password = samba_dc.ldap_settings()["bind_password"]
    browser = admin_browser(idp_server.base_url)
    page = browser.submit(browser.get(idp_server.base_url + "/admin/directory"), "test-form")
    assert page.status == 200
    assert page.doc().get_element_by_id("overall").get("data-ok") == "yes"
    cells = _cells(page, samba_dc.ldaps_url)
    assert list(cells) == ["reachable", "tls", "service bind", "base DN"]
    for ok, ms, text in cells.values():
        assert ok == "yes" and ms is not None and ms >= 0 and "ms" in text
    assert cells["service bind"][1] > 0  # a bind over TLS takes real time
    _no_secret(page, password)
    row = idp_server.audit_rows(event="admin_directory_test", username="anna")[0]
    assert row["result"] == "success" and row["reason"] == "usable"
    assert json.loads(row["detail"])["after"]["controllers"] == {samba_dc.ldaps_url: "ok"}
    assert password not in row["detail"]


def test_a_test_without_csrf_token_is_refused(idp_server):
    browser = admin_browser(idp_server.base_url)
    r = browser.http.post(idp_server.base_url + "/admin/directory/test", data={}, timeout=30)
    assert r.status_code == 400


@pytest.fixture(scope="module")
def idp_with_dead_dc(samba_dc, tmp_path_factory) -> Iterator[IdpServer]:
    """An IdP whose first DC is dead; the real one second, so sign-in (and the admin guard) still work."""
    root = tmp_path_factory.mktemp("idp-dead-dc")
    port = free_port()
    ldap = samba_dc.ldap_settings()
    ldap["urls"] = [DEAD_DC, samba_dc.ldaps_url]
    server = serve_idp(prepare_idp(root, base_config(root, f"http://127.0.0.1:{port}", ldap)), port, workers=1)
    try:
        yield server
    finally:
        server.stop()


def test_a_dead_dc_fails_its_first_step_with_a_message_and_the_other_dc_carries_on(idp_with_dead_dc, samba_dc):
    server = idp_with_dead_dc
    browser = admin_browser(server.base_url)
    page = browser.submit(browser.get(server.base_url + "/admin/directory"), "test-form")
    assert page.status == 200
    dead = _cells(page, DEAD_DC)
    assert list(dead) == ["reachable"] and dead["reachable"][0] == "no"
    row = page.doc().xpath(f"//table[@id='dc-results']//tr[@data-url='{DEAD_DC}']")[0]
    assert row.get("data-ok") == "no" and row.text_content().count("not run") == 3
    failures = page.doc().xpath(f"//ul[@id='dc-failures']/li[@data-url='{DEAD_DC}']")
    assert len(failures) == 1 and "refused" in failures[0].text_content().lower()
    assert all(ok == "yes" for ok, _, _ in _cells(page, samba_dc.ldaps_url).values())
    assert page.doc().get_element_by_id("overall").get("data-ok") == "yes"
    audit = server.audit_rows(event="admin_directory_test")[0]
    controllers = json.loads(audit["detail"])["after"]["controllers"]
    assert controllers[samba_dc.ldaps_url] == "ok" and controllers[DEAD_DC].startswith("reachable: ")
    # The lookup goes through the IdP's directory client, which fails over past the dead DC.
    page = browser.submit(page, "lookup-form", {"username": "alice"})
    assert page.status == 200 and "CN=Alice" in page.text_of("person-dn")


def test_lookup_shows_dn_attributes_and_nested_groups(idp_server, samba_dc):
    browser = admin_browser(idp_server.base_url)
    page = browser.submit(browser.get(idp_server.base_url + "/admin/directory"), "lookup-form", {"username": "ALICE"})
    assert page.status == 200, page.html[:1000]
    assert page.text_of("person-dn").startswith("CN=Alice")
    facts = page.text_of("person")
    assert ALICE.mail in facts and ALICE.given_name in facts and ALICE.surname in facts
    groups = [td.text_content() for td in page.doc().xpath("//table[@id='person-groups']/tbody/tr/td[1]")]
    assert "Sales" in groups and "Mail Users" in groups  # Mail Users through Sales
    assert "Engineering" not in groups
    assert page.doc().get_element_by_id("release", None) is None  # no SP chosen
    _no_secret(page, samba_dc.ldap_settings()["bind_password"])
    row = idp_server.audit_rows(event="admin_user_lookup", username="anna")[0]
    assert row["result"] == "success" and row["reason"] == "found"
    assert json.loads(row["detail"])["after"]["user"] == "ALICE"


def test_preview_matches_what_the_sp_then_receives(idp_server, tmp_path):
    sp = _register_sp(
        idp_server, tmp_path, "preview", "--nameid-format", "persistent",
        "--attribute", "mail", "--attribute", "displayName", "--attribute", "groups", "--attribute", "uid",
    )  # fmt: skip
    admin = admin_browser(idp_server.base_url)
    page = admin.get(idp_server.base_url + "/admin/directory")
    options = page.doc().xpath("//select[@id='lookup-sp']/option/@value")
    assert sp.entity_id in options
    page = admin.submit(page, "lookup-form", {"username": "alice", "sp": sp.entity_id})
    assert page.status == 200, page.html[:1000]
    assert page.doc().get_element_by_id("release").get("data-sp") == sp.entity_id
    assert page.text_of("nameid-format") == PERSISTENT
    preview_nameid = page.text_of("nameid-value")
    preview = {
        tr.get("data-name"): [li.text_content() for li in tr.xpath("./td[4]/div[@class='value']")]
        for tr in page.doc().xpath("//table[@id='release-attributes']/tbody/tr")
    }
    assert preview["urn:oid:0.9.2342.19200300.100.1.3"] == [ALICE.mail]
    assert {"Sales", "Mail Users"} <= set(preview["urn:oid:1.3.6.1.4.1.5923.1.5.1.1"])
    assert page.doc().get_element_by_id("release-refused", None) is None
    row = idp_server.audit_rows(event="admin_user_lookup", username="anna")[0]
    assert row["sp_entity_id"] == sp.entity_id

    employee = Browser()
    login = employee.get(sp.redirect_login_url())
    received = sp.consume(*employee.saml_post(employee.login(login, "alice", ALICE.password)))
    assert received.nameid_format == PERSISTENT and received.nameid == preview_nameid
    assert {name: sorted(values) for name, values in received.attributes.items()} == {
        name: sorted(values) for name, values in preview.items()
    }


def test_preview_warns_when_the_sp_would_refuse_the_person(idp_server, tmp_path):
    sp = _register_sp(idp_server, tmp_path, "engineers", "--group", "Engineering")
    admin = admin_browser(idp_server.base_url)
    page = admin.get(idp_server.base_url + "/admin/directory")
    page = admin.submit(page, "lookup-form", {"username": "alice", "sp": sp.entity_id})
    assert page.status == 200
    assert "Engineering" in page.text_of("release-refused")
    page = admin.submit(page, "lookup-form", {"username": "bob", "sp": sp.entity_id})
    assert page.doc().get_element_by_id("release-refused", None) is None


def test_preview_and_sign_in_agree_on_a_switched_off_sp(idp_server, tmp_path):
    """Both ask the one access decision: the preview names the refusal the sign-in then gives."""
    sp = register_sp(idp_server, "switchedoff", SpPolicy(enabled=False))
    admin = admin_browser(idp_server.base_url)
    page = admin.get(idp_server.base_url + "/admin/directory")
    page = admin.submit(page, "lookup-form", {"username": "alice", "sp": sp.entity_id})
    assert page.status == 200 and "switched off" in page.text_of("release-disabled")
    assert page.doc().get_element_by_id("release-refused", None) is None  # alice is in no group it lacks

    employee = Browser()
    refused = employee.get(sp.redirect_login_url())
    assert refused.status == 403 and not refused.is_login
    assert refused.doc().get_element_by_id("error").get("data-reason") == "sp_disabled"


def test_lookup_of_nobody_and_bad_input(idp_server):
    admin = admin_browser(idp_server.base_url)
    page = admin.get(idp_server.base_url + "/admin/directory")
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    found = admin.submit(page, "lookup-form", {"username": ghost})
    assert found.status == 200 and ghost in found.text_of("lookup-not-found")
    assert idp_server.audit_rows(event="admin_user_lookup", username="anna")[0]["reason"] == "not_found"

    empty = admin.submit(page, "lookup-form", {"username": "  "})
    assert empty.status == 400 and "Enter a username" in empty.text_of("lookup-error")
    unknown = admin.submit(page, "lookup-form", {"username": "alice", "sp": "https://nope.sp.test/saml"})
    assert unknown.status == 400 and "https://nope.sp.test/saml" in unknown.text_of("lookup-error")
    row = idp_server.audit_rows(event="admin_user_lookup", username="anna")[0]
    assert (
        row["result"] == "refused"
        and row["reason"] == "bad_input"
        and row["sp_entity_id"] == "https://nope.sp.test/saml"
    )


def test_directory_page_reads_in_chinese(idp_server):
    admin = admin_browser(idp_server.base_url)
    admin.http.headers["Accept-Language"] = "zh-CN"
    page = admin.submit(admin.get(idp_server.base_url + "/admin/directory"), "test-form")
    assert "当前生效的 Active Directory 设置" in page.html
    assert "Active Directory 可用。" in page.text_of("overall")


@pytest.mark.browser
def test_directory_page_in_chromium_under_the_csp(idp_server, chrome):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(exist_ok=True)
    chrome.set_window_size(1200, 2200)
    chrome.get(idp_server.base_url + "/admin/directory")
    chrome.find_element(By.NAME, "username").send_keys("anna")
    chrome.find_element(By.NAME, "password").send_keys("Passw0rd!Anna")
    chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait = WebDriverWait(chrome, 30)
    wait.until(ec.presence_of_element_located((By.ID, "test-form"))).find_element(By.TAG_NAME, "button").click()
    wait.until(ec.presence_of_element_located((By.ID, "dc-results")))
    assert "Active Directory is usable." in chrome.find_element(By.ID, "overall").text
    chrome.save_screenshot(str(ARTIFACTS / "admin-directory-test.png"))

    chrome.find_element(By.ID, "lookup-username").send_keys("alice")
    Select(chrome.find_element(By.ID, "lookup-sp")).select_by_value(idp_server.sps["webmail"].entity_id)
    chrome.find_element(By.CSS_SELECTOR, "#lookup-form button[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.ID, "release-attributes")))
    assert chrome.find_element(By.ID, "nameid-value").text == ALICE.mail
    chrome.save_screenshot(str(ARTIFACTS / "admin-directory-lookup.png"))
    blocked = [e["message"] for e in chrome.get_log("browser") if "Content Security Policy" in e["message"]]
    assert blocked == []
