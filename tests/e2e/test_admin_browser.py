"""The admin console in headless Chromium, as an admin clicks through it: sign in with the AD password, upload an
SP's metadata, look at the preview, save, restrict the SP to a group and release one more attribute. An employee
then signs in to that SP through the independent SP library and receives exactly what the policy says. A
screenshot of every page is kept in test-artifacts/ (the README's admin guide shows them)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import pytest

from idp.demo.samba_dc import DEMO_USERS
from idp.sps.registry import POLICY_CACHE_SECONDS
from idp.sps.vocabulary import CATALOGUE
from tests.e2e.browser import Browser, Page
from tests.e2e.harness import ARTIFACTS, eventually, free_port
from tests.e2e.saml_sp import IndependentSp, LoginResult, write_metadata

pytestmark = [pytest.mark.ad, pytest.mark.browser]

USERS = {u.username: u for u in DEMO_USERS}
ENTITY_ID = "https://journey.sp.test/saml"


def shot(driver, name: str) -> None:
    """A screenshot of the whole page, not just the window."""
    ARTIFACTS.mkdir(exist_ok=True)
    driver.set_window_size(1280, 800)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(800, min(int(height) + 40, 4000)))
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def sign_in(driver, username: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(USERS[username].password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def click_and_wait(driver, element) -> None:
    """Click a submit button and wait until its page has gone: elements the next page shares with it would
    otherwise be found on the old page, just before it goes stale."""
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element("tag name", "html")
    element.click()
    WebDriverWait(driver, 20).until(ec.staleness_of(page))


def wait_for(driver, element_id: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 20).until(ec.presence_of_element_located((By.ID, element_id)))


def _signed_in_with(
    sp: IndependentSp, username: str, expected: Callable[[Page, LoginResult | None], bool]
) -> tuple[Page, LoginResult | None] | None:
    """(login page answer, what the SP received or None) when ``expected`` holds for them, else None."""
    browser = Browser()
    page = browser.login(browser.get(sp.redirect_login_url()), username, USERS[username].password)
    result = sp.consume(*browser.saml_post(page)) if page.is_auto_post else None
    return (page, result) if expected(page, result) else None


def test_admin_registers_an_sp_and_sets_its_policy_in_the_browser(idp_server, chrome, tmp_path):
    from selenium.webdriver.common.by import By

    base = idp_server.base_url
    sp = IndependentSp(
        entity_id=ENTITY_ID,
        acs_url=f"http://127.0.0.1:{free_port()}/journey/acs",
        sign_requests=False,
        idp_metadata_xml=idp_server.metadata(),
    )
    metadata_file = write_metadata(sp, tmp_path)

    chrome.get(base + "/admin/")
    wait_for(chrome, "username")
    shot(chrome, "admin-login")
    sign_in(chrome, "anna")
    wait_for(chrome, "key-summary")
    assert chrome.find_element(By.ID, "admin-user").text == "Anna Admin"
    shot(chrome, "admin-dashboard")

    chrome.find_element(By.CSS_SELECTOR, "#admin-nav a[href='/admin/sps']").click()
    wait_for(chrome, "sp-upload")
    chrome.find_element(By.ID, "metadata").send_keys(str(metadata_file))
    chrome.find_element(By.CSS_SELECTOR, "#sp-upload button[type=submit]").click()
    wait_for(chrome, "sp-preview")
    assert chrome.find_element(By.ID, "preview-entity-id").text == ENTITY_ID
    assert sp.acs_url in chrome.find_element(By.ID, "preview-acs").text
    shot(chrome, "admin-sp-preview")
    chrome.find_element(By.CSS_SELECTOR, "#sp-save button[type=submit]").click()
    wait_for(chrome, "sps")
    row = chrome.find_element(By.CSS_SELECTOR, f"tr[data-entity-id='{ENTITY_ID}']")
    assert sp.acs_url in row.text
    shot(chrome, "admin-sps")

    chrome.get(f"{base}/admin/sps/policy?entity_id={quote(ENTITY_ID, safe='')}")
    wait_for(chrome, "policy-form")
    groups = chrome.find_element(By.ID, "f-allowed_groups")
    groups.clear()
    groups.send_keys("Sales")
    department = chrome.find_element(By.ID, "attr-department")
    assert not department.is_selected()
    department.click()
    click_and_wait(chrome, chrome.find_element(By.ID, "save-policy"))
    wait_for(chrome, "receives-attributes")
    assert "department" in chrome.find_element(By.ID, "receives-attributes").text
    shot(chrome, "admin-policy")

    stored = idp_server.audit_rows(event="sp_policy_changed", sp_entity_id=ENTITY_ID)
    assert stored and stored[0]["username"] == "anna" and stored[0]["result"] == "success"

    # A worker may answer from its policy cache for POLICY_CACHE_SECONDS after the save, never longer.
    added = CATALOGUE["department"].name
    _, result = eventually(
        lambda: _signed_in_with(sp, "alice", lambda _, got: got is not None and added in got.attributes),
        within=POLICY_CACHE_SECONDS + 10,
        what="alice received the department the admin added",
    )
    released = ["mail", "displayName", "givenName", "sn", "groups", "department"]
    assert set(result.attributes) == {CATALOGUE[key].name for key in released}
    assert result.attributes[added] == ["Sales"]
    assert result.attributes[CATALOGUE["mail"].name] == [USERS["alice"].mail]

    eventually(
        lambda: _signed_in_with(sp, "bob", lambda page, _: page.status == 403 and not page.is_auto_post),
        within=POLICY_CACHE_SECONDS + 10,
        what="bob, outside Sales, was refused",
    )

    # Metadata the IdP refuses: the preview names the element at fault and why, and nothing is saved.
    bad = tmp_path / "http-acs.xml"
    bad.write_text(
        metadata_file.read_text()
        .replace(ENTITY_ID, "https://bad.sp.test/saml")
        .replace(sp.acs_url, "http://mail.example.net/acs")
    )
    chrome.get(base + "/admin/sps")
    wait_for(chrome, "sp-upload")
    chrome.find_element(By.ID, "metadata").send_keys(str(bad))
    chrome.find_element(By.CSS_SELECTOR, "#sp-upload button[type=submit]").click()
    wait_for(chrome, "sp-problem")
    assert "AssertionConsumerService" in chrome.find_element(By.ID, "problem-element").text
    assert "https" in chrome.find_element(By.ID, "problem-reason").text
    shot(chrome, "admin-sp-refused")

    chrome.get(f"{base}/admin/sps/delete?entity_id={quote(ENTITY_ID, safe='')}")
    wait_for(chrome, "sp-delete")
    assert ENTITY_ID in chrome.find_element(By.ID, "delete-text").text
    shot(chrome, "admin-sp-delete")

    for path, element, name in (
        ("/admin/keys", "rollover-step", "admin-keys"),
        ("/admin/activity", "activity-filter", "admin-activity"),
        ("/admin/directory", "test-form", "admin-directory"),
    ):
        chrome.get(base + path)
        wait_for(chrome, element)
        shot(chrome, name)
    click_and_wait(chrome, chrome.find_element(By.CSS_SELECTOR, "#test-form button[type=submit]"))
    wait_for(chrome, "test-form")
    shot(chrome, "admin-directory-tested")

    chrome.get(base + "/lang?to=zh-CN&next=/admin/")
    wait_for(chrome, "key-summary")
    assert "概览" in chrome.find_element(By.ID, "admin-nav").text
    shot(chrome, "admin-dashboard-zh")
    chrome.get(base + "/lang?to=en&next=/admin/")


def test_an_employee_is_refused_the_console_in_the_browser(idp_server, chrome):
    chrome.get(idp_server.base_url + "/admin/")
    wait_for(chrome, "username")
    sign_in(chrome, "alice")
    error = wait_for(chrome, "error")
    assert "not an administrator" in error.text
    assert "admin-nav" not in chrome.page_source
    shot(chrome, "admin-refused")
    chrome.get(idp_server.base_url + "/apps")
    wait_for(chrome, "signed-in-as")
    shot(chrome, "apps-launcher")
