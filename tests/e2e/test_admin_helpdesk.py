"""The console's helpdesk view against the suite's Samba AD: a locked, a disabled and a must-change person show
their state in words (both languages), the refusal a person would read at a chosen SP, their live SSO sessions
and second factors. The people are this module's own (AdAdmin), removed again at the end."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import ldap3
import pytest

from idp.web.i18n import MESSAGES
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser, Page, admin_browser

pytestmark = pytest.mark.ad

PASSWORD = "Helpdesk!Pass1"
LOCK_SECONDS = 1800


@dataclass
class People:
    ok: str
    locked: str
    disabled: str
    must_change: str


@pytest.fixture(scope="module")
def people(samba_dc) -> Iterator[People]:
    adm = AdAdmin(samba_dc)
    tag = uuid.uuid4().hex[:6]
    names = People(ok=f"hd{tag}ok", locked=f"hd{tag}lk", disabled=f"hd{tag}ds", must_change=f"hd{tag}mc")
    try:
        for name in vars(names).values():
            adm.add_user(name, PASSWORD, mail=f"{name}@corp.example.com")
        adm.disable(adm.dn_of(names.disabled))
        adm.conn.modify(adm.dn_of(names.must_change), {"pwdLastSet": [(ldap3.MODIFY_REPLACE, ["0"])]})
        assert adm.conn.result["result"] == 0, adm.conn.result
        locked_dn = adm.dn_of(names.locked)
        adm.apply_lockout(locked_dn, threshold=2, window_seconds=LOCK_SECONDS)
        for _ in range(2):  # straight to AD: our own throttle would stop below the threshold
            _wrong_bind(samba_dc, f"{names.locked}@corp.example.com")
        assert adm.lockout_time(names.locked) > 0
        yield names
    finally:
        adm.undo()


def _wrong_bind(samba_dc, principal: str) -> None:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(samba_dc.ca_file), valid_names=[samba_dc.cert_name])
    conn = ldap3.Connection(ldap3.Server(samba_dc.ldaps_url, tls=tls, get_info=ldap3.NONE), principal, "wrong")
    assert not conn.bind()
    conn.unbind()


@pytest.fixture(scope="module")
def console(idp_server) -> Browser:
    return admin_browser(idp_server.base_url)


def _lookup(console: Browser, base_url: str, username: str, sp: str = "") -> Page:
    page = console.get(base_url + "/admin/directory")
    found = console.submit(page, "lookup-form", {"username": username, "sp": sp})
    assert found.status == 200, found.html[:2000]
    return found


def _value(page: Page, element_id: str) -> str:
    return page.doc().get_element_by_id(element_id).get("data-value")


def test_a_locked_person_shows_until_when(console, idp_server, people):
    page = _lookup(console, idp_server.base_url, people.locked)
    assert _value(page, "state-locked") == "yes"
    assert _value(page, "state-enabled") == "yes"
    shown = page.text_of("state-locked")
    until = datetime.strptime(shown.removeprefix("locked until ").removesuffix(" UTC"), "%Y-%m-%d %H:%M")
    # AD unlocks it LOCK_SECONDS after the second wrong password, which was made a moment ago.
    expected = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=LOCK_SECONDS)
    assert abs((until - expected).total_seconds()) < 180, shown
    assert page.text_of("state-bad-passwords") == "2"
    assert MESSAGES["en"]["account_locked"] in page.text_of("state-words")


def test_a_disabled_person_and_the_refusal_at_an_sp_in_words(console, idp_server, people):
    webmail = idp_server.sps["webmail"].entity_id
    page = _lookup(console, idp_server.base_url, people.disabled, webmail)
    assert _value(page, "state-enabled") == "no"
    assert page.text_of("state-enabled") == "disabled"
    assert page.text_of("release-words") == MESSAGES["en"]["account_disabled"]


def test_a_must_change_person_says_so(console, idp_server, people):
    page = _lookup(console, idp_server.base_url, people.must_change)
    assert page.text_of("state-must-change") == "must be changed at next sign-in"
    assert MESSAGES["en"]["password_must_change"] in page.text_of("state-words")


def test_an_sp_the_person_is_not_allowed_at_and_one_they_are(console, idp_server, people):
    restricted = idp_server.sps["restricted"]
    page = _lookup(console, idp_server.base_url, people.ok, restricted.entity_id)
    assert page.text_of("state-words") == "Nothing in the account's state stops a sign-in now."
    before_name = MESSAGES["en"]["not_in_allowed_group"].split("{sp}")[0]
    assert page.text_of("release-words").startswith(before_name), page.text_of("release-words")
    page = _lookup(console, idp_server.base_url, people.ok, idp_server.sps["webmail"].entity_id)
    assert page.text_of("release-words-ok") == "They would be signed in."
    assert page.text_of("no-factors") == "No second factor enrolled."
    link = page.doc().get_element_by_id("person-factors-link").get("href")
    assert console.get(idp_server.base_url + link).status == 200


def test_live_sessions_are_listed_in_both_languages(console, idp_server, people):
    webmail = idp_server.sps["webmail"]
    person = Browser()
    answered = person.login(person.get(webmail.redirect_login_url()), people.ok, PASSWORD)
    assert answered.is_auto_post, answered.html[:1000]
    page = _lookup(console, idp_server.base_url, people.ok)
    rows = page.doc().xpath("//table[@id='person-sessions']/tbody/tr")
    assert len(rows) == 1
    assert "127.0.0.1" in rows[0].text_content()
    console.get(idp_server.base_url + "/lang?to=zh-CN")
    try:
        page = _lookup(console, idp_server.base_url, people.ok)
        assert page.doc().xpath("//table[@id='person-sessions']/tbody/tr")
        assert MESSAGES["zh-CN"]["admin.helpdesk.sessions"] in page.html
        assert page.text_of("state-words") == MESSAGES["zh-CN"]["admin.helpdesk.may_sign_in"]
    finally:
        console.get(idp_server.base_url + "/lang?to=en")


def test_the_helpdesk_view_is_accessible(idp_server, people, chrome):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    from tests.e2e.a11y import axe_findings
    from tests.e2e.test_admin_browser import click_and_wait, sign_in

    chrome.get(idp_server.base_url + "/admin/directory")
    sign_in(chrome, "anna")
    chrome.find_element(By.ID, "lookup-username").send_keys(people.locked)
    Select(chrome.find_element(By.ID, "lookup-sp")).select_by_value(idp_server.sps["webmail"].entity_id)
    click_and_wait(chrome, chrome.find_element(By.CSS_SELECTOR, "#lookup-form button[type=submit]"))
    assert chrome.find_element(By.ID, "state-locked").get_attribute("data-value") == "yes"
    assert chrome.find_element(By.ID, "release-words").text == MESSAGES["en"]["account_locked"]
    assert [str(f) for f in axe_findings(chrome, "helpdesk lookup")] == []
