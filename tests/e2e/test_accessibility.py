"""WCAG 2.2 AA on every page and state, in English and Chinese, in headless Chromium: axe-core finds no
violation of any impact, no page scrolls sideways at 320 CSS pixels (a screenshot of each is kept in
test-artifacts/), and a person signs in and an admin saves a policy with the keyboard alone."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from idp.demo.samba_dc import DEMO_USERS
from idp.web.i18n import MESSAGES
from tests.e2e.browser import start_chromium
from tests.e2e.harness import ARTIFACTS, free_port
from tests.e2e.saml_sp import IndependentSp, write_metadata

pytestmark = [pytest.mark.ad, pytest.mark.browser]

USERS = {u.username: u for u in DEMO_USERS}
LANGUAGES = ("en", "zh-CN")
BAD_LIFETIME = "5"
"""An assertion lifetime the policy refuses (30 to 3600 seconds)."""


@pytest.fixture(scope="module")
def driver() -> Iterator:
    """One Chromium for the whole module: a new one costs seconds on a busy machine."""
    chrome = start_chromium(lang=None)
    chrome.set_script_timeout(60)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture(scope="module")
def a11y_sp(idp_server, tmp_path_factory) -> IndependentSp:
    """An SP of this module alone: its policy page is checked and saved here, the shared SPs keep theirs."""
    sp = IndependentSp(
        entity_id="https://a11y.sp.test/saml",
        acs_url=f"http://127.0.0.1:{free_port()}/a11y/acs",
        sign_requests=False,
        idp_metadata_xml=idp_server.metadata(),
    )
    idp_server.idp("sp", "add", str(write_metadata(sp, tmp_path_factory.mktemp("a11y-sp"))))
    return sp


@pytest.fixture(scope="module")
def a11y_client(idp_server) -> str:
    """A confidential OpenID Connect client of this module alone: its edit, new-secret and activity pages."""
    idp_server.idp(
        "oidc", "client", "add", "a11y-app", "--name", "A11y App", "--redirect-uri", "https://a11y-app.example.com/cb"
    )
    return "a11y-app"


class Walk:
    """Visits pages in one language and gathers what each breaks, so one run reports every page at once."""

    def __init__(self, driver, base_url: str, lang: str) -> None:
        self.driver, self.base, self.lang = driver, base_url, lang
        self.problems: list[str] = []
        self.checked: list[str] = []

    def start(self, path: str) -> None:
        """A browser with no session, in this walk's language, at ``path``."""
        self.driver.delete_all_cookies()
        self.driver.get(f"{self.base}/lang?to={self.lang}&next={quote(path, safe='')}")

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def check(self, name: str) -> None:
        from tests.e2e.a11y import NARROW, axe_findings, narrow, reflow_problem

        page = f"{self.lang} {name} ({self.driver.current_url.removeprefix(self.base)})"
        lang, mains, skip = self.driver.execute_script(
            "return [document.documentElement.lang, document.querySelectorAll('main').length,"
            "        document.querySelector('a[href], button, input:not([type=hidden]), select, textarea')"
            "          ?.getAttribute('href')];"
        )
        if lang != self.lang:
            self.problems.append(f"{page}: <html lang={lang!r}>, expected {self.lang!r}")
        if mains != 1:
            self.problems.append(f"{page}: {mains} <main> landmarks, expected one")
        if skip != "#main":
            self.problems.append(f"{page}: the first thing the keyboard reaches is not the skip link ({skip!r})")
        self.problems += [str(f) for f in axe_findings(self.driver, page)]
        with narrow(self.driver):
            problem = reflow_problem(self.driver, page, ARTIFACTS / "a11y" / f"{self.lang}-{name}-{NARROW}.png")
            self.problems += [problem] if problem else []
            self.problems += [str(f) for f in axe_findings(self.driver, f"{page} at {NARROW} px")]
        self.checked.append(name)

    def sign_in(self, username: str, password: str | None = None) -> None:
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        from selenium.webdriver.common.by import By

        for attempt in range(3):
            # The login page can still be replacing the page it came through (the SP's redirect) when it is
            # first found: Chromium then says its nodes "do not belong to the document". Type again on the
            # page that stayed.
            try:
                self.driver.find_element(By.NAME, "username").clear()
                self.driver.find_element(By.NAME, "username").send_keys(username)
                self.driver.find_element(By.NAME, "password").send_keys(password or USERS[username].password)
                self.submit(self.driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
                return
            except (StaleElementReferenceException, WebDriverException) as exc:
                if attempt == 2 or not (
                    isinstance(exc, StaleElementReferenceException) or "does not belong to the document" in str(exc)
                ):
                    raise

    def submit(self, button) -> None:
        """Press a submit button and wait for the next page (the old one's elements would be found meanwhile)."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        html = self.driver.find_element("tag name", "html")
        button.click()

        def gone(_driver: object) -> bool:
            # Chromium says of a node of a replaced page either that it is stale or, while the new page is still
            # being put in place, that it "does not belong to the document": both mean the old page is gone.
            try:
                html.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException as exc:
                if "does not belong to the document" in str(exc):
                    return True
                raise
            return False

        WebDriverWait(self.driver, 30).until(gone)

    def has(self, element_id: str) -> bool:
        from selenium.webdriver.common.by import By

        return bool(self.driver.find_elements(By.ID, element_id))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_page_meets_wcag_22_aa(idp_server, a11y_sp, a11y_client, driver, lang, tmp_path):
    from selenium.webdriver.common.by import By

    walk = Walk(driver, idp_server.base_url, lang)
    webmail = idp_server.sps["webmail"]

    # -- an employee ---------------------------------------------------------------------------------------
    walk.start("/login")
    driver.get(webmail.redirect_login_url())
    assert walk.has("service")
    walk.check("login")
    walk.sign_in("alice", "not-her-password")
    assert walk.has("error")
    walk.check("login-wrong-password")
    walk.sign_in("erin.expired")
    walk.check("login-account-expired")
    walk.sign_in("grace.pwexpired")
    walk.check("login-password-expired")

    walk.start("/login")
    walk.sign_in("alice")
    walk.open("/")
    assert walk.has("signed-in-as")
    walk.check("signed-in")
    walk.open("/apps")
    walk.check("apps")
    walk.submit(driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button"))
    walk.check("logged-out")

    walk.open("/no-such-page")
    assert walk.has("error")
    walk.check("error-not-found")
    walk.open("/saml/sso?SAMLRequest=not-a-request")
    assert walk.has("error")
    walk.check("error-bad-request")

    # The page that posts the answer to the SP submits itself: stopped before its script runs, it is checked
    # as a browser without JavaScript shows it.
    walk.start("/login")
    driver.get(webmail.redirect_login_url())
    driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        walk.sign_in("alice")
    finally:
        driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})
    assert walk.has("saml-post")
    walk.check("post-to-sp")

    # -- an admin ------------------------------------------------------------------------------------------
    entity = quote(a11y_sp.entity_id, safe="")
    walk.start("/admin/")
    walk.check("admin-login")
    walk.sign_in("anna")
    assert walk.has("admin-nav")
    walk.check("admin-dashboard")
    walk.open("/admin/sps")
    walk.check("admin-sps")

    metadata = write_metadata(
        IndependentSp(
            entity_id="https://preview.a11y.sp.test/saml",
            acs_url="https://preview.a11y.sp.test/acs",
            sign_requests=False,
            idp_metadata_xml=idp_server.metadata(),
        ),
        tmp_path,
    )
    driver.find_element(By.ID, "metadata").send_keys(str(metadata))
    walk.submit(driver.find_element(By.CSS_SELECTOR, "#sp-upload button[type=submit]"))
    assert walk.has("sp-preview")
    walk.check("admin-sp-preview")
    refused = tmp_path / "refused.xml"
    refused.write_text(metadata.read_text().replace("https://preview.a11y.sp.test/acs", "http://mail.example.net/acs"))
    walk.open("/admin/sps")
    driver.find_element(By.ID, "metadata").send_keys(str(refused))
    walk.submit(driver.find_element(By.CSS_SELECTOR, "#sp-upload button[type=submit]"))
    assert walk.has("sp-problem")
    walk.check("admin-sp-problem")
    walk.open(f"/admin/sps/delete?entity_id={entity}")
    assert walk.has("sp-delete")
    walk.check("admin-sp-delete")

    walk.open(f"/admin/sps/policy?entity_id={entity}")
    walk.check("admin-policy")
    walk.open(f"/admin/sps/policy?entity_id={entity}&preset=aliyun_ram_role")
    walk.check("admin-policy-preset")
    walk.open(f"/admin/sps/policy?entity_id={entity}")
    lifetime = driver.find_element(By.ID, "f-assertion_lifetime")
    lifetime.clear()
    lifetime.send_keys(BAD_LIFETIME)
    walk.submit(driver.find_element(By.ID, "save-policy"))
    assert walk.has("policy-errors")
    # The complaint is in the page's language, next to its field and linked from the summary.
    expected = MESSAGES[lang]["admin.policy.invalid.greater_than_equal"].format(ge=30)
    assert driver.find_element(By.ID, "error-assertion_lifetime").text == expected
    assert expected in driver.find_element(By.ID, "policy-errors").text
    walk.check("admin-policy-refused")

    # -- OpenID Connect clients ----------------------------------------------------------------------------
    walk.open(f"/admin/oidc/clients/edit?client_id={a11y_client}")
    assert walk.has("oidc-edit")
    walk.check("admin-oidc-edit")
    uris = driver.find_element(By.ID, "oidc-edit-redirect-uris")
    uris.clear()
    uris.send_keys("http://a11y-app.example.com/cb")
    walk.submit(driver.find_element(By.CSS_SELECTOR, "#oidc-edit button[type=submit]"))
    assert walk.has("oidc-edit-error")
    # The reason in the page's language; the field it is about says so, and points at it.
    reason = MESSAGES[lang]["oidc.error.redirect_uri_scheme"].format(uri="http://a11y-app.example.com/cb")
    assert driver.find_element(By.ID, "oidc-edit-error").text == MESSAGES[lang]["admin.oidc.not_saved"].format(
        reason=reason
    )
    uris = driver.find_element(By.ID, "oidc-edit-redirect-uris")
    assert uris.get_attribute("aria-invalid") == "true"
    assert uris.get_attribute("aria-describedby").split()[0] == "oidc-edit-error"
    walk.check("admin-oidc-edit-refused")
    walk.open(f"/admin/oidc/clients/secret?client_id={a11y_client}")
    assert walk.has("oidc-rotate")
    walk.check("admin-oidc-rotate")
    walk.submit(driver.find_element(By.CSS_SELECTOR, "#oidc-rotate button[type=submit]"))
    assert walk.has("oidc-secret")
    walk.check("admin-oidc-rotated")
    walk.open("/admin/oidc/clients?preset=alimail")
    assert walk.has("oidc-add")
    walk.check("admin-oidc-preset")
    driver.find_element(By.ID, "oidc-add-client-id").send_keys(f"a11y-alimail-{lang.lower()}")
    driver.find_element(By.ID, "oidc-add-redirect-uris").send_keys("https://a11y-mail.example.com/cb")
    walk.submit(driver.find_element(By.CSS_SELECTOR, "#oidc-add button[type=submit]"))
    assert walk.has("oidc-preset-notes")
    walk.check("admin-oidc-preset-added")
    walk.open(f"/admin/activity?sp={quote('urn:ad-sso-bridge:oidc:' + a11y_client, safe='')}")
    assert walk.has("audit-rows")
    walk.check("admin-activity-oidc")

    for path, name in (
        ("/admin/keys", "admin-keys"),
        ("/admin/directory", "admin-directory"),
        ("/admin/provisioning", "admin-provisioning"),
        ("/admin/activity", "admin-activity"),
        ("/admin/sessions", "admin-sessions"),
    ):
        walk.open(path)
        assert walk.has("admin-nav"), path
        walk.check(name)
    walk.open("/admin/activity?from=yesterday")
    assert driver.find_element(By.ID, "f-from").get_attribute("aria-describedby") == "filter-error"
    walk.check("admin-activity-refused")

    assert not walk.problems, f"{len(walk.problems)} problems on {len(walk.checked)} pages:\n" + "\n".join(
        walk.problems
    )


# -- the keyboard alone ----------------------------------------------------------------------------------------


def press(driver, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def chord(driver, modifier: str, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).key_down(modifier).send_keys(key).key_up(modifier).perform()


def focused(driver) -> dict:
    from tests.e2e.a11y import focus_description

    return focus_description(driver)


def tab_to(driver, element_id: str, *, limit: int) -> list[dict]:
    """Press Tab until ``element_id`` has focus; every element passed on the way shows that it has it."""
    from selenium.webdriver.common.keys import Keys

    stops = []
    for _ in range(limit):
        press(driver, Keys.TAB)
        stop = focused(driver)
        assert stop["outlined"], f"no visible focus on {stop}"
        stops.append(stop)
        if stop["id"] == element_id:
            return stops
    pytest.fail(f"{element_id} not reached in {limit} Tabs: {[s['id'] or s['text'] for s in stops]}")


def keyboard_sign_in(driver, username: str) -> None:
    """The login page puts focus in the username field: type, Tab, type, Enter."""
    from selenium.webdriver.common.keys import Keys

    assert focused(driver)["id"] == "username"
    press(driver, username)
    assert tab_to(driver, "password", limit=1)
    press(driver, USERS[username].password, Keys.ENTER)


def wait_for(driver, element_id: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, element_id)))


def test_an_employee_signs_in_with_the_keyboard_alone(idp_server, driver):
    from selenium.webdriver.common.keys import Keys

    driver.delete_all_cookies()
    driver.get(idp_server.base_url + "/lang?to=en&next=/login")
    wait_for(driver, "username")
    # Backwards from the username field: the skip link, shown while it has focus.
    chord(driver, Keys.SHIFT, Keys.TAB)
    skip = focused(driver)
    assert skip["text"] == "Skip to main content" and skip["outlined"]
    press(driver, Keys.TAB)
    keyboard_sign_in(driver, "alice")
    assert "Alice" in wait_for(driver, "signed-in-as").text
    assert tab_to(driver, "apps-link", limit=3)


def test_an_admin_saves_a_policy_with_the_keyboard_alone(idp_server, a11y_sp, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.delete_all_cookies()
    driver.get(idp_server.base_url + "/lang?to=en&next=/admin/")
    wait_for(driver, "username")
    keyboard_sign_in(driver, "anna")
    wait_for(driver, "admin-nav")
    driver.get(f"{idp_server.base_url}/admin/sps/policy?entity_id={quote(a11y_sp.entity_id, safe='')}")
    wait_for(driver, "policy-form")

    # The skip link comes first and takes focus past the top bar.
    [skip] = tab_to(driver, "", limit=1)
    assert skip["text"] == "Skip to main content"
    press(driver, Keys.ENTER)
    assert focused(driver)["id"] == "main"
    assert len(tab_to(driver, "f-display_name", limit=15)) < 15
    press(driver, "Keyboard Mail")
    tab_to(driver, "f-assertion_lifetime", limit=80)
    press(driver, BAD_LIFETIME, Keys.ENTER)

    # Refused: focus is on the summary, whose link leads to the field, which says what is wrong with it.
    wait_for(driver, "policy-errors")
    assert focused(driver)["id"] == "policy-errors"
    link = tab_to(driver, "", limit=1)[0]
    assert link["tag"] == "a" and "Assertion lifetime" in link["text"]
    press(driver, Keys.ENTER)
    assert focused(driver)["id"] == "f-assertion_lifetime"
    field = driver.find_element(By.ID, "f-assertion_lifetime")
    assert field.get_attribute("aria-invalid") == "true"
    assert "30" in driver.find_element(By.ID, field.get_attribute("aria-describedby")).text
    chord(driver, Keys.CONTROL, "a")
    refused = driver.find_element(By.TAG_NAME, "html")
    press(driver, "300", Keys.ENTER)

    WebDriverWait(driver, 30).until(ec.staleness_of(refused))
    wait_for(driver, "receives")
    assert "saved" in driver.find_element(By.CSS_SELECTOR, ".flash").text
    assert driver.find_element(By.ID, "f-display_name").get_attribute("value") == "Keyboard Mail"
    assert driver.find_element(By.ID, "f-assertion_lifetime").get_attribute("value") == "300"
    rows = idp_server.audit_rows(event="sp_policy_changed", sp_entity_id=a11y_sp.entity_id)
    assert rows[0]["username"] == "anna" and rows[0]["result"] == "success"
