"""/admin/provisioning against `idp serve`, the run's Samba AD DC and the Alibaba Mail emulator over HTTP: the
outbox (a sign-in's failed provisioning shown with the provider's error, retried now, dropped with a reason),
"Sync now" and "Dry run" in the background under the sync lease (a second run refused while it is held), runs of
`idp sync` in the same history, one person's story, and nobody but admins."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import lxml.html
import pytest

from idp.demo.alimail_emulator import RunningEmulator, run_emulator
from idp.demo.samba_dc import DEMO_USERS, REALM
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser, Page, admin_browser
from tests.e2e.harness import (
    ARTIFACTS,
    IdpServer,
    alimail_config,
    base_config,
    eventually,
    free_port,
    prepare_idp,
    serve_idp,
)
from tests.e2e.saml_sp import IndependentSp, write_metadata
from tests.provisioning.sync_lab import SyncLab

pytestmark = pytest.mark.ad

PASSWORD = "Prov-Passw0rd!" + secrets.token_hex(3)
ANNA = next(u for u in DEMO_USERS if u.username == "anna")
ALICE = next(u for u in DEMO_USERS if u.username == "alice")


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(rate_limit=None) as emu:
        yield emu


@pytest.fixture(scope="module")
def lab(samba_dc) -> Iterator[SyncLab]:
    """The OU the sync's scope is: this module's people only, never the demo users other tests rely on."""
    lab = SyncLab(samba_dc, mail_domain="example.com")
    yield lab
    lab.close()


@pytest.fixture(scope="module")
def idp(samba_dc, emulator: RunningEmulator, lab: SyncLab, tmp_path_factory) -> Iterator[IdpServer]:
    root = tmp_path_factory.mktemp("provisioning-console")
    port = free_port()
    config = base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings())
    config["provisioning"] = {
        "provider": "alimail",
        "scope_base_dns": [lab.ou],
        "jit_timeout": 2.0,
        "lease_seconds": 10,
        "outbox_lease_seconds": 5,
    }
    config["provisioning.alimail"] = alimail_config(emulator)
    server = serve_idp(prepare_idp(root, config), port)
    try:
        sp = IndependentSp(
            entity_id="https://mail-console.sp.test/saml",
            acs_url=f"http://127.0.0.1:{free_port()}/mail/acs",
            sign_requests=False,
            idp_metadata_xml=server.metadata(),
        )
        server.idp("sp", "add", str(write_metadata(sp, root)))
        server.sps["mail"] = sp
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _healthy_provider(emulator: RunningEmulator) -> Iterator[None]:
    yield
    emulator.faults.clear()


@pytest.fixture(scope="module")
def admin(idp: IdpServer) -> Browser:
    return admin_browser(idp.base_url)


def add_person(samba_dc, lab: SyncLab) -> str:
    """Someone in the sync's OU with a password this module knows, so they can sign in (and trigger JIT)."""
    ad = AdAdmin(samba_dc)
    username = "pv" + secrets.token_hex(3)
    ad.conn.add(
        f"CN={username},{lab.ou}",
        ["top", "person", "organizationalPerson", "user"],
        {
            "sAMAccountName": username,
            "userPrincipalName": f"{username}@{REALM}",
            "givenName": "Pat",
            "sn": username,
            "displayName": f"Pat {username}",
            "mail": f"{username}@example.com",
            "department": "Sales",
            "title": "Engineer",
            "unicodePwd": f'"{PASSWORD}"'.encode("utf-16-le"),
            "userAccountControl": "512",
        },
    )
    assert ad.conn.result["result"] == 0, ad.conn.result
    ad.conn.unbind()  # the lab's OU goes with everyone in it at the end
    return username


def queue_by_sign_in(idp: IdpServer, emulator: RunningEmulator, username: str) -> None:
    """A sign-in while the provider is down: the person gets in ("allow"), their mailbox waits in the outbox."""
    emulator.faults.fail_next(10_000, status=503)
    try:
        browser = Browser()
        page = browser.login(browser.get(idp.sps["mail"].redirect_login_url()), username, PASSWORD)
        assert page.is_auto_post, page.html[:800]
    finally:
        emulator.faults.clear()


def mailbox(emulator: RunningEmulator, username: str) -> dict | None:
    return next((u for u in emulator.emulator.users() if u["email"] == f"{username}@example.com"), None)


def console(admin: Browser, idp: IdpServer, query: str = "") -> Page:
    page = admin.get(idp.base_url + "/admin/provisioning" + query)
    assert page.status == 200, page.html[:1000]
    return page


def outbox_row(page: Page, username: str) -> lxml.html.HtmlElement | None:
    rows = page.doc().xpath(f"//table[@id='outbox']//tr[@data-user='{username}']")
    return rows[0] if rows else None


def flashes(page: Page) -> str:
    return " ".join(p.text_content() for p in page.doc().xpath("//p[contains(@class, 'flash')]"))


def run_id_of(page: Page) -> int:
    return int(page.doc().get_element_by_id("run-detail").get("data-run"))


def finished_run(admin: Browser, idp: IdpServer, run_id: int) -> Page:
    def done() -> Page | None:
        page = console(admin, idp, f"?run={run_id}")
        state = page.doc().get_element_by_id("run-detail").get("data-state")
        return None if state == "running" else page

    return eventually(done, within=90, what=f"sync run {run_id} finished")


def test_a_failing_row_shows_the_providers_error_and_retry_now_succeeds_once_the_fault_is_off(
    idp: IdpServer, emulator: RunningEmulator, admin: Browser, samba_dc, lab: SyncLab
) -> None:
    username = add_person(samba_dc, lab)
    queue_by_sign_in(idp, emulator, username)
    page = console(admin, idp)
    row = outbox_row(page, username)
    assert row is not None and row.get("data-state") == "failing"
    [error] = row.xpath(".//td[@data-col='error']")
    assert error.get("data-code") == "provider_unavailable"
    assert "temporarily unavailable" in error.text_content()  # the provider's own words

    emulator.faults.fail_next(10_000, status=503)
    page = admin.submit(page, f"retry-{row.get('data-row')}")
    assert page.status == 200 and "failed again" in flashes(page)
    assert outbox_row(page, username) is not None and mailbox(emulator, username) is None

    emulator.faults.clear()
    page = admin.submit(page, f"retry-{row.get('data-row')}")
    assert f"{username}'s mailbox is provisioned" in flashes(page)
    assert outbox_row(page, username) is None
    box = mailbox(emulator, username)
    assert box is not None and box["jobTitle"] == "Engineer"

    retries = [
        r for r in idp.audit_rows(event="admin_outbox_retry", username="anna") if username in (r["detail"] or "")
    ]
    assert [r["result"] for r in retries] == ["success", "failure"]
    assert ("success", "outbox") in [(r["result"], r["reason"]) for r in idp.audit_rows(username=username)]


WRONG_SECRET = (
    "Alibaba Mail refused the app's credentials; check client_id and the secret in client_secret_file under "
    "[provisioning.alimail] (InvalidClient)"
)


def test_a_wrong_provider_secret_reads_as_one_sentence_an_admin_can_act_on(
    idp: IdpServer, emulator: RunningEmulator, admin: Browser, samba_dc, lab: SyncLab
) -> None:
    username = add_person(samba_dc, lab)
    queue_by_sign_in(idp, emulator, username)
    page = console(admin, idp)
    row = outbox_row(page, username)
    assert row is not None
    emu = emulator.emulator
    right, emu.client_secret = emu.client_secret, "rotated-by-the-provider"
    try:
        page = admin.submit(page, f"retry-{row.get('data-row')}")
    finally:
        emu.client_secret = right
    # The API says "client_id or client_secret is wrong" in two fields; the page says it once, with the fix.
    assert flashes(page).strip() == f"The retry for {username} failed again: {WRONG_SECRET}"
    [error] = outbox_row(page, username).xpath(".//td[@data-col='error']")
    assert (error.text_content().strip(), error.get("data-code")) == (WRONG_SECRET, "provider_rejected")
    assert_plain_words(flashes(page))
    assert_plain_words(error.text_content())


def assert_plain_words(text: str) -> None:
    """No chained exception text, no Python repr, no sentence said twice."""
    assert "Error:" not in text and "Exception" not in text and "Traceback" not in text, text
    assert not re.search(r"\w+\(\w+=", text), text  # a repr such as DTDForbidden(name='m', ...)
    sentences = [s.strip() for s in re.split(r"[.;:]\s", text) if len(s.strip()) > 20]
    assert len(sentences) == len(set(sentences)), text


def test_drop_needs_a_reason_and_the_reason_is_in_the_audit_trail_and_the_persons_history(
    idp: IdpServer, emulator: RunningEmulator, admin: Browser, samba_dc, lab: SyncLab
) -> None:
    username = add_person(samba_dc, lab)
    queue_by_sign_in(idp, emulator, username)
    page = console(admin, idp)
    row = outbox_row(page, username)
    assert row is not None
    form = f"drop-{row.get('data-row')}"

    refused = admin.submit(page, form, {"reason": "   "})
    assert refused.status == 400 and "Nothing was dropped" in (refused.text_of("drop-problem") or "")
    assert outbox_row(refused, username) is not None
    assert idp.audit_rows(event="admin_outbox_drop", username="anna")[0]["result"] == "refused"

    page = admin.submit(refused, form, {"reason": "joined and left the same week"})
    assert page.status == 200 and outbox_row(page, username) is None
    dropped = idp.audit_rows(event="admin_outbox_drop", username="anna")[0]
    assert dropped["result"] == "success" and "joined and left the same week" in dropped["detail"]
    assert username in dropped["detail"]
    (mine,) = idp.audit_rows(event="provision", username=username, reason="outbox_dropped")
    assert mine["result"] == "refused" and "by anna: joined and left the same week" in mine["detail"]

    page = admin.submit(page, "person-form", {"q": username})
    assert page.status == 200
    reasons = [tr.get("data-reason") for tr in page.doc().xpath("//table[@id='person-events']/tbody/tr")]
    assert reasons == ["outbox_dropped", "jit"]
    lookup = idp.audit_rows(event="admin_provisioning_lookup", username="anna")[0]
    assert lookup["reason"] == "found" and username in lookup["detail"]


def test_dry_run_then_sync_now_run_in_the_background_and_a_second_run_is_refused_while_the_lease_is_held(
    idp: IdpServer, emulator: RunningEmulator, admin: Browser, lab: SyncLab
) -> None:
    hires = [lab.add_user(name) for name in ("Ann", "Ben", "Cy")]

    page = admin.submit(console(admin, idp), "dry-run-form")
    assert page.status == 200 and "dry run has started" in flashes(page)
    page = finished_run(admin, idp, run_id_of(page))
    detail = page.doc().get_element_by_id("run-detail")
    assert detail.get("data-state") == "ok" and detail.get("data-dry-run") == "yes"
    planned = {tr.get("data-user"): tr.get("data-action") for tr in page.doc().xpath("//table[@id='run-actions']//tr")}
    assert all(planned.get(h.username) == "create" for h in hires), planned
    assert all(mailbox(emulator, h.username) is None for h in hires)  # a dry run changes nothing

    emulator.faults.latency = 1.0  # every provider call slow: the run still holds the lease when we try again
    started = admin.submit(page, "sync-form")
    assert started.status == 200 and "sync has started" in flashes(started)
    again = admin.submit(started, "sync-form")
    assert again.status == 409
    problem = again.text_of("sync-problem") or ""
    assert "holds the sync lease" in problem and "until" in problem and "UTC" in problem
    refusal = idp.audit_rows(event="admin_sync_started", username="anna")[0]
    assert (refusal["result"], refusal["reason"]) == ("refused", "lease_held")
    emulator.faults.latency = 0.0

    page = finished_run(admin, idp, run_id_of(started))
    assert page.doc().get_element_by_id("run-detail").get("data-state") == "ok"
    creates = int(page.doc().xpath("//dd[@id='run-counts']/span[@data-kind='create']/strong")[0].text)
    assert creates >= 3 and int(page.text_of("run-applied") or 0) >= creates and page.text_of("run-failed") == "0"
    assert all(mailbox(emulator, h.username) is not None for h in hires)
    history = page.doc().xpath(f"//table[@id='runs']//tr[@data-run='{run_id_of(started)}']")
    assert history and history[0].get("data-state") == "ok"
    assert "applied" in (page.text_of("last-sync") or "")
    started_rows = [r for r in idp.audit_rows(event="admin_sync_started", username="anna") if r["result"] == "success"]
    assert len(started_rows) >= 2

    page = admin.submit(page, "person-form", {"q": hires[0].mail})  # by address: the record knows whose it is
    (event,) = page.doc().xpath("//table[@id='person-events']/tbody/tr")
    assert event.get("data-reason") == "create" and hires[0].mail in event.text_content()


def test_a_run_of_idp_sync_is_in_the_same_history(idp: IdpServer, admin: Browser, lab: SyncLab) -> None:
    lab.add_user("Dot")
    result = idp.idp("sync", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    page = console(admin, idp)
    newest = page.doc().xpath("//table[@id='runs']/tbody/tr")[0]
    assert newest.get("data-state") == "ok" and newest.get("data-dry-run") == "no"
    assert "idp sync, as" in newest.text_content()
    assert newest.xpath("./td[@data-kind='create']")[0].text == "1"


def test_a_non_admin_is_refused_and_starts_nothing(idp: IdpServer, admin: Browser) -> None:
    browser = Browser()
    page = browser.login(browser.get(idp.base_url + "/admin/provisioning"), ALICE.username, ALICE.password)
    assert page.status == 403
    token = browser.get(idp.base_url + "/").form()[1]["csrf_token"]  # a valid form token of alice's own session
    runs_before = len(console(admin, idp).doc().xpath("//table[@id='runs']/tbody/tr"))
    refused = browser.post(idp.base_url + "/admin/provisioning/sync", {"csrf_token": token, "mode": "sync"})
    assert refused.status == 403
    assert len(console(admin, idp).doc().xpath("//table[@id='runs']/tbody/tr")) == runs_before
    rows = idp.audit_rows(event="admin_access", username="alice")
    assert rows and rows[0]["result"] == "refused"


def test_the_page_reads_in_chinese(idp: IdpServer) -> None:
    browser = Browser(accept_language="zh-CN")
    page = browser.login(browser.get(idp.base_url + "/admin/provisioning"), ANNA.username, ANNA.password)
    assert page.status == 200
    assert "邮箱开通" in page.html and "待办队列" in page.html and "idp sync --incremental" in page.html


@pytest.mark.browser
def test_screenshot_of_the_page(
    idp: IdpServer, emulator: RunningEmulator, admin: Browser, chrome, samba_dc, lab: SyncLab
) -> None:
    from selenium.webdriver.common.by import By

    queue_by_sign_in(idp, emulator, add_person(samba_dc, lab))  # a failing row, so the outbox has something
    admin.submit(console(admin, idp), "dry-run-form")
    chrome.get(idp.base_url + "/admin/provisioning")
    chrome.find_element(By.NAME, "username").send_keys(ANNA.username)
    chrome.find_element(By.NAME, "password").send_keys(ANNA.password)
    chrome.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()

    def settled() -> bool:
        chrome.get(idp.base_url + "/admin/provisioning")
        running = chrome.find_elements(By.CSS_SELECTOR, "#runs tr[data-state=running]")
        return bool(chrome.find_elements(By.ID, "outbox")) and not running

    eventually(settled, within=60, what="the provisioning page with a failing row and no run going", every=1.0)
    _shot(chrome, ARTIFACTS / "admin-provisioning.png")
    assert chrome.find_element(By.ID, "sync-form").is_displayed()


def _shot(driver, path: Path) -> None:
    """The whole page, not just the window."""
    ARTIFACTS.mkdir(exist_ok=True)
    driver.set_window_size(1280, 800)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(800, min(int(height) + 40, 4000)))
    driver.save_screenshot(str(path))
