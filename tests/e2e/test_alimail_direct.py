"""Alibaba Mail (direct) end to end: `idp serve` (gunicorn) against the run's Samba AD DC and the Alibaba Mail
emulator over HTTP, as a browser sees it. /apps/alimail signs alice in with her AD password, JIT makes her
mailbox, the one logon call's URL lands her in the emulated webmail; refusals are our page and an audit row."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner

from idp.cli import cli
from idp.connectors.direct_app import ENTITY_ID
from idp.demo.alimail_emulator import LOGIN_PATH, RunningEmulator, run_emulator
from idp.demo.samba_dc import DEMO_USERS, REALM
from idp.provisioning.alimail import AlimailProvider
from idp.settings import AlimailSettings
from idp.web.i18n import MESSAGES
from tests.e2e.ad_admin import BASE_DN, AdAdmin
from tests.e2e.browser import Browser, Page
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp

pytestmark = pytest.mark.ad

ALICE, ALICE_PASSWORD = "alice", "Passw0rd!Alice"
ALICE_MAIL = f"alice@{REALM}"


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(mail_domain=REALM, rate_limit=None) as emu:
        yield emu


@pytest.fixture(scope="module")
def idp(samba_dc: Any, emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdpServer]:
    """JIT on for every application (on_failure = "allow"); only "Mail Users" may use the direct app."""
    root = tmp_path_factory.mktemp("alimail-direct")
    emu = emulator.emulator
    secret = root / "alimail-login.secret"
    secret.write_text(emu.login_app_secret + "\n")
    port = free_port()
    config = base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings())
    config["provisioning"] = {"provider": "alimail", "jit_timeout": 2.0}
    config["provisioning.alimail"] = {
        "host": emulator.url,
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "mail_domain": emu.mail_domain,
        "rate_per_second": 1000,
        "read_timeout": 2.0,
    }
    config["alimail_direct"] = {
        "host": emulator.url,
        "app_code": emu.login_app_code,
        "app_secret_file": secret,
        "allowed_groups": ["Mail Users"],
        "read_timeout": 2.0,
    }
    server = serve_idp(prepare_idp(root, config), port)
    yield server
    server.stop()


@dataclass
class SignedIn:
    browser: Browser
    landed: Page
    """Where the password sign-in at /apps/alimail ended."""


@pytest.fixture(scope="module")
def alice(idp: IdpServer) -> SignedIn:
    """A browser in which alice signed in at /apps/alimail with her password (the first test checks how)."""
    browser = Browser()
    page = browser.get(idp.base_url + "/apps/alimail")
    return SignedIn(browser, browser.login(page, ALICE, ALICE_PASSWORD))


@pytest.fixture
def mail_api(emulator: RunningEmulator) -> Iterator[AlimailProvider]:
    emu = emulator.emulator
    settings = AlimailSettings(
        host=emulator.url, client_id=emu.client_id, client_secret=emu.client_secret, mail_domain=emu.mail_domain
    )
    with AlimailProvider(settings) as provider:
        yield provider


def logons(emulator: RunningEmulator) -> int:
    """Logon requests the emulator received (answered or not)."""
    return sum(1 for call in emulator.emulator.calls if call.path == LOGIN_PATH)


def signins(idp: IdpServer) -> list[tuple[str, str, str | None]]:
    """(result, reason, username) of the direct app's sign-in rows, newest first."""
    return [(r["result"], r["reason"], r["username"]) for r in idp.audit_rows(event="signin", sp_entity_id=ENTITY_ID)]


def refusal(page: Page) -> str | None:
    found = page.doc().get_element_by_id("error", None)
    return None if found is None else found.get("data-reason")


def in_webmail(page: Page, emulator: RunningEmulator, address: str) -> bool:
    return page.status == 200 and page.url == emulator.url + "/webmail/" and address in page.html


def test_alice_signs_in_with_her_password_lands_in_webmail_and_goes_straight_in_again(
    idp: IdpServer, emulator: RunningEmulator, alice: SignedIn
) -> None:
    emu = emulator.emulator
    # The fixture's sign-in: the login form, then webmail; the mailbox JIT made before the one logon call.
    assert in_webmail(alice.landed, emulator, ALICE_MAIL), (alice.landed.url, alice.landed.html[:300])
    assert [u["email"] for u in emu.users()] == [ALICE_MAIL]
    assert emu.webmail_logins == [ALICE_MAIL] and logons(emulator) == 1
    assert signins(idp) == [("success", "password", ALICE)]

    second = alice.browser.http.get(idp.base_url + "/apps/alimail", timeout=30)
    assert second.status_code == 200 and str(second.url) == emulator.url + "/webmail/"
    hops = [str(r.url) for r in second.history]
    assert not any("/login" in hop for hop in hops), hops  # no password asked
    assert second.history[0].status_code == 303 and second.history[0].headers["Cache-Control"] == "no-store"
    assert emu.webmail_logins == [ALICE_MAIL, ALICE_MAIL] and logons(emulator) == 2
    assert signins(idp)[0] == ("success", "sso_session", ALICE)
    assert idp.audit_rows(event="signin", sp_entity_id=ENTITY_ID)[0]["detail"] == "alimail_direct"

    launcher = alice.browser.get(idp.base_url + "/apps")
    tiles = {a.get("data-sp"): a.get("href") for a in launcher.doc().xpath("//nav[@id='apps']/a")}
    assert tiles == {ENTITY_ID: "/apps/alimail"}


def test_a_frozen_mailbox_is_refused_with_our_page_in_both_languages(
    idp: IdpServer, emulator: RunningEmulator, alice: SignedIn, mail_api: AlimailProvider
) -> None:
    mail_api.freeze(ALICE_MAIL)
    try:
        asked = logons(emulator)
        page = alice.browser.get(idp.base_url + "/apps/alimail")
        assert page.status == 403 and refusal(page) == "alimail_mailbox_frozen"
        assert page.text_of("error") == MESSAGES["en"]["alimail_mailbox_frozen"]

        chinese = Browser(accept_language="zh-CN")
        page = chinese.login(chinese.get(idp.base_url + "/apps/alimail"), ALICE, ALICE_PASSWORD)
        assert page.status == 403 and page.text_of("error") == MESSAGES["zh-CN"]["alimail_mailbox_frozen"]
        assert logons(emulator) == asked + 2  # once per sign-in
        assert signins(idp)[:2] == [("failure", "alimail_mailbox_frozen", ALICE)] * 2
        assert emulator.emulator.webmail_logins.count(ALICE_MAIL) == 2  # nobody got in
    finally:
        mail_api.unfreeze(ALICE_MAIL)


def test_a_disabled_ad_user_and_one_outside_the_allowed_groups_are_refused_before_alibaba_mail_is_asked(
    idp: IdpServer, emulator: RunningEmulator
) -> None:
    asked = logons(emulator)
    browser = Browser()
    page = browser.login(browser.get(idp.base_url + "/apps/alimail"), "dave.disabled", "Passw0rd!Dave")
    assert page.status == 401 and page.is_login and MESSAGES["en"]["account_disabled"] in page.html

    browser = Browser()
    page = browser.login(browser.get(idp.base_url + "/apps/alimail"), "carol", "Passw0rd!Carol")
    assert page.status == 403 and refusal(page) == "not_in_allowed_group"
    assert "Alibaba Mail" in page.html
    launcher = browser.get(idp.base_url + "/apps")
    assert launcher.doc().xpath("//nav[@id='apps']/a") == []  # no tile that cannot work

    assert logons(emulator) == asked
    assert signins(idp)[:2] == [
        ("failure", "not_in_allowed_group", "carol"),
        ("failure", "account_disabled", "dave.disabled"),
    ]


def test_alibaba_mail_refusing_the_app_or_failing_is_our_page_and_an_audit_row_and_is_asked_once(
    idp: IdpServer, emulator: RunningEmulator, alice: SignedIn
) -> None:
    emu = emulator.emulator
    entered = len(emu.webmail_logins)
    right_secret = emu.login_app_secret
    emu.login_app_secret = "rotated-at-alibaba"  # our Secret file is now the wrong one
    try:
        asked = logons(emulator)
        page = alice.browser.get(idp.base_url + "/apps/alimail")
    finally:
        emu.login_app_secret = right_secret
    assert page.status == 502 and refusal(page) == "alimail_app_rejected"
    assert page.text_of("error") == MESSAGES["en"]["alimail_app_rejected"] and right_secret not in page.html
    assert logons(emulator) == asked + 1
    row = idp.audit_rows(event="signin", sp_entity_id=ENTITY_ID)[0]
    assert (row["result"], row["reason"], row["username"]) == ("failure", "alimail_app_rejected", ALICE)
    assert "app_secret_file" in row["detail"] and right_secret not in row["detail"]

    emu_faults = emulator.emulator.faults
    emu_faults.fail_next(1, status=503, path_prefix=LOGIN_PATH)
    try:
        page = alice.browser.get(idp.base_url + "/apps/alimail")
    finally:
        emu_faults.clear()
    assert page.status == 503 and refusal(page) == "alimail_unavailable"
    assert logons(emulator) == asked + 2  # a 5xx may have issued a login: not asked again
    assert signins(idp)[0] == ("failure", "alimail_unavailable", ALICE)
    assert len(emu.webmail_logins) == entered


def test_a_mailbox_the_sync_froze_is_thawed_by_jit_before_the_login_is_asked_for(
    idp: IdpServer, emulator: RunningEmulator, samba_dc: Any
) -> None:
    """Someone who left and came back: the sync froze their mailbox, their next sign-in thaws it first."""
    admin = AdAdmin(samba_dc)
    username, password = "back" + secrets.token_hex(3), "Back-Passw0rd!" + secrets.token_hex(3)
    address = f"{username}@{REALM}"
    try:
        dn = admin.add_user(username, password, mail=address)
        admin.add_member(f"CN=Sales,CN=Users,{BASE_DN}", dn)
        browser = Browser()
        page = browser.login(browser.get(idp.base_url + "/apps/alimail"), username, password)
        assert in_webmail(page, emulator, address)

        admin.disable(dn)
        idp.idp("sync", "--force")
        assert mailbox_status(emulator, address) == "FREEZE"
        admin.enable(dn)

        asked = logons(emulator)
        browser = Browser()
        page = browser.login(browser.get(idp.base_url + "/apps/alimail"), username, password)
        assert in_webmail(page, emulator, address), (page.status, page.url, page.html[:300])
        assert mailbox_status(emulator, address) == "NORMAL" and logons(emulator) == asked + 1
        provisioned = idp.audit_rows(event="provision", username=username, reason="jit")
        assert provisioned[0]["result"] == "success" and provisioned[0]["sp_entity_id"] == ENTITY_ID
    finally:
        admin.undo()  # deleting the user takes it out of Sales too


def mailbox_status(emulator: RunningEmulator, address: str) -> str | None:
    return next((u["status"] for u in emulator.emulator.users() if u["email"] == address), None)


def admin_in(idp: IdpServer, language: str) -> Browser:
    """A browser signed in to the console as anna (in "SSO Admins"), reading ``language``."""
    browser = Browser(accept_language=language)
    page = browser.login(browser.get(idp.base_url + "/admin/"), "anna", "Passw0rd!Anna")
    assert page.status == 200 and page.url.startswith(idp.base_url + "/admin/"), (page.status, page.url)
    return browser


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_console_shows_the_direct_app_beside_the_sps_and_tests_its_connection(
    idp: IdpServer, emulator: RunningEmulator, alice: SignedIn, language: str
) -> None:
    emu, words = emulator.emulator, MESSAGES[language]
    carol = Browser()
    carol.login(carol.get(idp.base_url + "/apps/alimail"), "carol", "Passw0rd!Carol")  # outside "Mail Users"
    browser = admin_in(idp, language)
    listed = browser.get(idp.base_url + "/admin/sps")
    assert words["admin.alimail.heading"] in listed.text_of("direct-alimail")
    assert emu.login_app_code in listed.text_of("direct-alimail")

    page = browser.get(idp.base_url + "/admin/alimail")
    assert page.status == 200 and emu.login_app_secret not in page.html
    assert page.text_of("alimail-host") == emulator.url and page.text_of("alimail-app-code") == emu.login_app_code
    assert page.doc().get_element_by_id("alimail-secret").get("data-readable") == "yes"
    assert "Mail Users" in page.text_of("alimail-groups")
    assert "allowed_groups" in page.text_of("alimail-groups-help")  # kept in the file: the key to change
    assert page.text_of("alimail-last-signin") != words["admin.sps.never"]  # alice signed in
    refused = [td.get("data-code") for td in page.doc().xpath("//section[@id='alimail-refusals']//td[@data-code]")]
    assert refused[0] == "not_in_allowed_group"  # carol, the newest refusal
    ways = page.text_of("ways")
    assert all(words[f"admin.alimail.way.{w}"] in ways for w in ("direct", "idaas", "oauth"))
    assert "User.Login.All" in ways and "500" in ways
    # The OAuth way points at our OpenID Connect provider when this IdP has one, and says it has none otherwise.
    has_oidc = browser.http.get(idp.base_url + "/.well-known/openid-configuration").status_code == 200
    assert page.text_of("way-oauth-here") == words["admin.alimail.way.oauth." + ("here" if has_oidc else "missing")]

    asked, mailboxes = logons(emulator), emu.users()
    result = browser.submit(page, "alimail-test-form")
    outcome = result.doc().get_element_by_id("alimail-result")
    assert (outcome.get("data-ok"), outcome.get("data-reason")) == ("yes", "usable")
    assert words["admin.alimail.result.usable"] in result.text_of("alimail-result")
    assert logons(emulator) == asked + 1 and emu.users() == mailboxes  # one harmless call, no mailbox made

    right_secret = emu.login_app_secret
    emu.login_app_secret = "rotated-at-alibaba"
    try:
        result = browser.submit(page, "alimail-test-form")
    finally:
        emu.login_app_secret = right_secret
    outcome = result.doc().get_element_by_id("alimail-result")
    assert (outcome.get("data-ok"), outcome.get("data-reason")) == ("no", "alimail_app_rejected")
    assert words["admin.alimail.result.alimail_app_rejected"] in result.text_of("alimail-result")
    assert right_secret not in result.html

    rows = idp.audit_rows(event="admin_alimail_test", username="anna")[:2]
    assert [(r["result"], r["reason"]) for r in rows] == [("failure", "alimail_app_rejected"), ("success", "usable")]
    assert all(r["sp_entity_id"] == ENTITY_ID and right_secret not in r["detail"] for r in rows)


def test_the_console_refuses_a_test_without_a_mail_domain(idp: IdpServer, emulator: RunningEmulator) -> None:
    browser = admin_in(idp, "en")
    asked = logons(emulator)
    page = browser.submit(browser.get(idp.base_url + "/admin/alimail"), "alimail-test-form", {"mail_domain": "no"})
    assert page.status == 400 and "is not a mail domain" in page.text_of("domain-problem")
    assert logons(emulator) == asked
    row = idp.audit_rows(event="admin_alimail_test", username="anna")[0]
    assert (row["result"], row["reason"]) == ("refused", "bad_input")


def test_idp_alimail_test_says_whether_the_connection_works_with_an_exit_code(
    idp: IdpServer, emulator: RunningEmulator
) -> None:
    emu = emulator.emulator
    runner = CliRunner()
    works = runner.invoke(cli, ["--config", str(idp.config), "alimail", "test"])
    assert works.exit_code == 0, works.output
    assert "The connection works" in works.output and emu.login_app_code in works.output
    assert emu.login_app_secret not in works.output

    right_secret = emu.login_app_secret
    emu.login_app_secret = "rotated-at-alibaba"
    try:
        refused = runner.invoke(cli, ["--config", str(idp.config), "alimail", "test"])
    finally:
        emu.login_app_secret = right_secret
    assert refused.exit_code == 1 and "NOT usable: Alibaba Mail refused the app" in refused.output
    assert right_secret not in refused.output

    listed = runner.invoke(cli, ["--config", str(idp.config), "sp", "list"])
    assert listed.exit_code == 0, listed.output
    assert f"Alibaba Mail (direct) {ENTITY_ID}" in listed.output and "Mail Users" in listed.output


@pytest.mark.browser
def test_in_chromium_the_apps_url_signs_bob_in_with_his_password_and_opens_his_mailbox(
    idp: IdpServer, emulator: RunningEmulator, chrome: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    bob = next(u for u in DEMO_USERS if u.username == "bob")
    chrome.get(idp.base_url + "/apps/alimail")
    WebDriverWait(chrome, 20).until(ec.presence_of_element_located((By.NAME, "password")))
    chrome.find_element(By.NAME, "username").send_keys(bob.username)
    chrome.find_element(By.NAME, "password").send_keys(bob.password)
    chrome.find_element(By.CSS_SELECTOR, "main form[method=post] button[type=submit]").click()
    # Our CSP's form-action ('self') holds a form's redirects too: a 303 from the login POST to Alibaba Mail's
    # origin would leave the person on the login page, signed in but not in their mailbox.
    WebDriverWait(chrome, 20).until(ec.url_to_be(emulator.url + "/webmail/"))
    address = emulator.emulator.webmail_logins[-1]
    assert address.startswith("bob") and address in chrome.page_source
