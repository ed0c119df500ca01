"""/admin/activity against the real IdP: filters, paging, the CSV export, and the sign-in chart after real
sign-ins through an independent SP."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from idp.audit import AuditTrail
from idp.demo.samba_dc import DEMO_USERS
from idp.settings import load_settings
from idp.store.db import Database
from tests.e2e.browser import Browser, Page, admin_browser
from tests.e2e.harness import ARTIFACTS, IdpServer, free_port
from tests.e2e.saml_sp import IndependentSp, write_metadata

pytestmark = pytest.mark.ad

ALICE = next(u for u in DEMO_USERS if u.username == "alice")
BOM = "\ufeff"


def _write_rows(server: IdpServer, event: str, count: int, **fields: str) -> None:
    """Audit rows written the way the IdP writes them (AuditTrail, into the IdP's own database)."""
    db = Database(load_settings(server.config).database_url)
    try:
        trail = AuditTrail(db)
        for n in range(count):
            trail.record(event, "success", reason=f"n{n}", **fields)
    finally:
        db.dispose()


def _rows(page: Page) -> list[dict[str, str]]:
    out = []
    for tr in page.doc().xpath("//table[@id='audit-rows']/tbody/tr"):
        tds = tr.xpath("./td")
        cells = [td.text_content().strip() for td in tds]
        # The event, result and reason cells show words; the raw code the trail holds is in data-code.
        out.append({"id": tr.get("data-id"), "event": tds[1].get("data-code"), "result": tds[2].get("data-code"),
                    "reason": tds[3].get("data-code"), "user": cells[4], "sp": cells[5]})  # fmt: skip
    return out


def _link(page: Page, element_id: str) -> str | None:
    found = page.doc().get_element_by_id(element_id, None)
    return None if found is None else found.get("href")


def _export(browser: Browser, base_url: str, page: Page) -> tuple[list[str], list[list[str]]]:
    r = browser.http.get(base_url + _link(page, "export-csv"), timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert r.headers["Content-Disposition"].startswith("attachment; filename=")
    assert r.content.startswith(b"\xef\xbb\xbf")
    text = r.content.decode("utf-8")
    parsed = list(csv.reader(io.StringIO(text.removeprefix(BOM))))
    return parsed[0], parsed[1:]


def test_filters_paging_and_export_agree(idp_server):
    event = f"e2e_paging_{uuid.uuid4().hex[:8]}"
    _write_rows(idp_server, event, 119, username="pat")
    _write_rows(idp_server, event, 1, username="pat", ip="10.1.2.3", sp="=cmd|' /C calc'!A0")
    _write_rows(idp_server, event, 5, username="quinn")
    browser = admin_browser(idp_server.base_url)
    base = idp_server.base_url

    first = browser.get(f"{base}/admin/activity?event={event}&user=PAT")
    assert first.status == 200, first.html[:1000]
    rows = _rows(first)
    assert len(rows) == 50 and {r["user"] for r in rows} == {"pat"} and {r["event"] for r in rows} == {event}
    assert rows[0]["sp"] == "=cmd|' /C calc'!A0"  # the newest, shown as text
    assert _link(first, "page-newer") is None
    older = _link(first, "page-older")
    assert parse_qs(urlsplit(older).query)["event"] == [event] and parse_qs(urlsplit(older).query)["user"] == ["pat"]

    second = browser.get(base + older)
    third = browser.get(base + _link(second, "page-older"))
    assert len(_rows(second)) == 50 and len(_rows(third)) == 20 and _link(third, "page-older") is None
    seen = [int(r["id"]) for p in (first, second, third) for r in _rows(p)]
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 120
    back = browser.get(base + _link(third, "page-newer"))
    assert [r["id"] for r in _rows(back)] == [r["id"] for r in _rows(second)]

    header, body = _export(browser, base, first)
    assert header[:3] == ["id", "time (UTC)", "event"]
    assert [int(r[0]) for r in body] == seen
    assert {r[5] for r in body} == {"pat"} and all(r[2] == event for r in body)
    assert body[0][6] == "'=cmd|' /C calc'!A0" and body[0][7] == "10.1.2.3"
    export_row = idp_server.audit_rows(event="admin_activity_export", username="anna")[0]
    assert export_row["result"] == "success" and f'"event": "{event}"' in export_row["detail"]

    quinn = browser.get(f"{base}/admin/activity?event={event}&user=quinn&result=success")
    assert [r["user"] for r in _rows(quinn)] == ["quinn"] * 5 and _link(quinn, "page-older") is None
    assert _rows(browser.get(f"{base}/admin/activity?event={event}&result=failure")) == []


def test_a_bad_filter_is_named_and_an_export_with_it_refused(idp_server):
    browser = admin_browser(idp_server.base_url)
    page = browser.get(idp_server.base_url + "/admin/activity?from=2024-05-02&to=2024-05-01")
    assert page.status == 400 and "from" in page.text_of("filter-error")
    page = browser.get(idp_server.base_url + "/admin/activity?result=maybe")
    assert page.status == 400 and "maybe" in page.text_of("filter-error")
    r = browser.http.get(idp_server.base_url + "/admin/activity.csv?to=not-a-day", timeout=30)
    assert r.status_code == 400 and "text/html" in r.headers["Content-Type"]
    row = idp_server.audit_rows(event="admin_activity_export", username="anna")[0]
    assert row["result"] == "refused" and row["reason"] == "bad_filter"


def test_sign_ins_show_as_bars_and_numbers_per_sp(idp_server, tmp_path: Path):
    sp = IndependentSp(
        entity_id=f"https://chart-{uuid.uuid4().hex[:8]}.sp.test/saml",
        acs_url=f"http://127.0.0.1:{free_port()}/chart/acs",
        sign_requests=False,
        idp_metadata_xml=idp_server.metadata(),
    )
    idp_server.idp("sp", "add", str(write_metadata(sp, tmp_path)))
    for _ in range(2):
        employee = Browser()
        login = employee.get(sp.redirect_login_url())
        sp.consume(*employee.saml_post(employee.login(login, "alice", ALICE.password)))
    stranger = Browser()
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    refused = stranger.login(stranger.get(sp.redirect_login_url()), ghost, "wrong-password")
    assert refused.is_login

    browser = admin_browser(idp_server.base_url)
    page = browser.get(idp_server.base_url + "/admin/activity")
    assert page.status == 200
    today = datetime.now(UTC).date().isoformat()
    svg = page.doc().xpath(f"//svg[@data-sp='{sp.entity_id}']")
    assert len(svg) == 1, page.html[:2000]
    days = svg[0].xpath("./g[@class='day']")
    assert len(days) == 14 and days[-1].get("data-day") == today
    assert days[-1].get("data-success") == "2" and days[-1].get("data-failure") == "1"
    ok_bars = svg[0].xpath(".//rect[@class='bar ok']")
    fail_bars = svg[0].xpath(".//rect[@class='bar fail']")
    assert len(ok_bars) == 1 and len(fail_bars) == 1 and float(ok_bars[0].get("height")) > 0
    assert float(ok_bars[0].get("height")) == pytest.approx(2 * float(fail_bars[0].get("height")), abs=0.2)
    assert not svg[0].xpath(".//@style")  # CSP: no inline styles
    table = page.doc().xpath(f"//table[contains(@class, 'signin-counts')][@data-sp='{sp.entity_id}']")[0]
    numbers = [[td.text_content() for td in tr.xpath("./td")] for tr in table.xpath("./tbody/tr")]
    assert len(numbers) == 14 and numbers[-1] == [today, "2", "1"] and numbers[0][1:] == ["0", "0"]

    mine = browser.get(f"{idp_server.base_url}/admin/activity?sp={sp.entity_id}&result=failure")
    assert [(r["user"], r["reason"]) for r in _rows(mine)] == [(ghost, "invalid_credentials")]
    assert [s.get("data-sp") for s in mine.doc().xpath("//svg[@data-sp]")] == [sp.entity_id]
    _, body = _export(browser, idp_server.base_url, mine)
    assert [(r[3], r[4], r[5], r[6]) for r in body] == [("failure", "invalid_credentials", ghost, sp.entity_id)]


def test_activity_page_reads_in_chinese_and_csv_headers_follow(idp_server):
    browser = admin_browser(idp_server.base_url)
    browser.http.headers["Accept-Language"] = "zh-CN"
    page = browser.get(idp_server.base_url + "/admin/activity?event=logout")
    assert page.status == 200 and "审计记录" in page.html and "各应用每日登录次数" in page.html
    header, _ = _export(browser, idp_server.base_url, page)
    assert header[1].startswith("时间") and header[2] == "事件"


@pytest.mark.browser
def test_activity_page_in_chromium_under_the_csp(idp_server, chrome):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    sp = idp_server.sps["webmail"]
    employee = Browser()
    sp.consume(*employee.saml_post(employee.login(employee.get(sp.redirect_login_url()), "alice", ALICE.password)))

    ARTIFACTS.mkdir(exist_ok=True)
    chrome.set_window_size(1200, 2400)
    chrome.get(idp_server.base_url + "/admin/activity")
    chrome.find_element(By.NAME, "username").send_keys("anna")
    chrome.find_element(By.NAME, "password").send_keys("Passw0rd!Anna")
    chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait = WebDriverWait(chrome, 30)
    chart = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"svg[data-sp='{sp.entity_id}']")))
    assert chart.size["width"] > 500 and chart.size["height"] > 50  # drawn, scaled by the stylesheet
    assert chart.find_elements(By.CSS_SELECTOR, "rect.bar.ok")
    chrome.save_screenshot(str(ARTIFACTS / "admin-activity.png"))

    chrome.find_element(By.ID, "f-user").send_keys("alice")
    chrome.find_element(By.CSS_SELECTOR, "#activity-filter button[type=submit]").click()
    wait.until(ec.url_contains("user=alice"))
    users = {td.text for td in chrome.find_elements(By.CSS_SELECTOR, "#audit-rows tbody td:nth-child(5)")}
    assert users == {"alice"}
    blocked = [e["message"] for e in chrome.get_log("browser") if "Content Security Policy" in e["message"]]
    assert blocked == []
