"""A reused SSO session follows AD and the admins: a person disabled in AD, or taken out of an SP's group,
loses access within ``login.recheck_seconds``, and a revoke (CLI or console) ends the sessions at their next
request, whichever gunicorn worker serves it.

The recheck interval is a setting of the whole IdP, so this file starts its own IdP with a short one."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from idp.sps.policy import SpPolicy
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser, Page, admin_browser
from tests.e2e.harness import IdpServer, base_config, eventually, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, register_sp

pytestmark = pytest.mark.ad

RECHECK = 1
PASSWORD = "Passw0rd!Recheck1"
TEAM = "Recheck Team"


@pytest.fixture(scope="module")
def ad(samba_dc) -> Iterator[AdAdmin]:
    with AdAdmin(samba_dc) as admin:
        yield admin


@pytest.fixture(scope="module")
def team(ad: AdAdmin) -> str:
    # Made before the IdP starts, so that its workers know the group from their first sign-in on.
    return ad.add_group(TEAM)


@pytest.fixture(scope="module")
def server(samba_dc, team: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdpServer]:
    root = tmp_path_factory.mktemp("recheck-idp")
    port = free_port()
    config = base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings())
    config["login"] = {"recheck_seconds": RECHECK}
    server = serve_idp(prepare_idp(root, config), port, workers=2)
    try:
        server.sps["open"] = register_sp(server, "open", SpPolicy())
        server.sps["team"] = register_sp(server, "team", SpPolicy(allowed_groups=[TEAM]))
        yield server
    finally:
        server.stop()


def _person(ad: AdAdmin, username: str) -> str:
    return ad.add_user(username, PASSWORD, mail=f"{username}@corp.example.com")


def _sign_in(browser: Browser, sp: IndependentSp, username: str) -> str:
    """SP-initiated sign-in, with the password only if the IdP asks for it; the NameID the SP got."""
    page = browser.get(sp.redirect_login_url())
    if page.is_login:
        page = browser.login(page, username, PASSWORD)
    return sp.consume(*browser.saml_post(page)).nameid


def _refused(browser: Browser, sp: IndependentSp) -> Page | None:
    """The IdP's error page for the browser's next request to ``sp``; None while it still signs the browser in
    without a password."""
    page = browser.get(sp.redirect_login_url())
    if page.is_auto_post:
        sp.consume(*browser.saml_post(page))
        return None
    return page


def _reason(page: Page) -> tuple[int, str | None]:
    error = page.doc().get_element_by_id("error", None)
    return page.status, None if error is None else error.get("data-reason")


def _listed(server: IdpServer, username: str) -> list[dict]:
    return json.loads(server.idp("sessions", "list", "--user", username, "--json").stdout)


def test_a_person_disabled_in_ad_loses_their_session_within_recheck_seconds(server: IdpServer, ad: AdAdmin):
    dn = _person(ad, "rc.disabled")
    browser, sp = Browser(), server.sps["open"]
    assert _sign_in(browser, sp, "rc.disabled") == "rc.disabled@corp.example.com"
    [listed] = _listed(server, "rc.disabled")
    assert listed["sps"] == [sp.entity_id] and listed["client_ip"] == "127.0.0.1"

    ad.disable(dn)
    page = eventually(lambda: _refused(browser, sp), within=RECHECK + 15, what="the disabled person was refused")
    assert _reason(page) == (403, "account_disabled")
    assert page.text_of("error") == "Your account is disabled. Please contact the help desk."
    # The session is gone, not just refused once: even enabled again, the browser must type the password.
    ad.enable(dn)
    assert browser.get(sp.redirect_login_url()).is_login
    assert _listed(server, "rc.disabled") == []
    failures = server.audit_rows(event="signin", username="rc.disabled", result="failure")
    assert [(r["reason"], r["sp_entity_id"]) for r in failures] == [("account_disabled", sp.entity_id)]


def test_removed_from_an_sps_group_refuses_that_sp_while_another_still_works(server: IdpServer, ad: AdAdmin, team: str):
    dn = _person(ad, "rc.moved")
    ad.add_member(team, dn)
    browser, team_sp, open_sp = Browser(), server.sps["team"], server.sps["open"]
    assert _sign_in(browser, team_sp, "rc.moved") and _sign_in(browser, open_sp, "rc.moved")

    ad.remove_member(team, dn)
    page = eventually(lambda: _refused(browser, team_sp), within=RECHECK + 15, what="the team SP refused")
    assert _reason(page) == (403, "not_in_allowed_group")
    # The session stays: AD still says yes to the person, only this SP's policy says no.
    page = browser.get(open_sp.redirect_login_url())
    assert page.is_auto_post
    assert open_sp.consume(*browser.saml_post(page)).nameid == "rc.moved@corp.example.com"
    assert _reason(browser.get(team_sp.redirect_login_url())) == (403, "not_in_allowed_group")


def test_a_revoke_from_the_cli_ends_every_session_of_the_person_at_its_next_request(server: IdpServer, ad: AdAdmin):
    _person(ad, "rc.revoked")
    sp = server.sps["open"]
    # Several browsers, so that both workers serve some of the requests that follow the revoke.
    browsers = [Browser() for _ in range(4)]
    for browser in browsers:
        _sign_in(browser, sp, "rc.revoked")
    assert len(_listed(server, "rc.revoked")) == len(browsers)

    out = server.idp("sessions", "revoke", "rc.revoked").stdout
    assert "4 session(s) of rc.revoked revoked" in out
    assert _listed(server, "rc.revoked") == []
    for browser in browsers:
        page = browser.get(sp.redirect_login_url())
        assert _reason(page) == (403, "session_revoked")
        assert "ended by an administrator" in (page.text_of("error") or "")
        assert browser.get(sp.redirect_login_url()).is_login
    [row] = server.audit_rows(event="session_revoked")
    assert row["result"] == "success" and row["username"].startswith("cli:")
    assert json.loads(row["detail"])["after"]["user"] == "rc.revoked"
    assert server.idp("sessions", "revoke", "rc.revoked").stdout.strip() == "rc.revoked has no live session"


def test_an_admin_revokes_a_session_on_the_console(server: IdpServer, ad: AdAdmin):
    _person(ad, "rc.console")
    browser, sp = Browser(), server.sps["open"]
    _sign_in(browser, sp, "rc.console")
    admin = admin_browser(server.base_url)

    page = admin.get(server.base_url + "/admin/sessions?user=rc.console")
    assert page.status == 200 and page.doc().xpath("//nav[@id='admin-nav']/a[text()='Sessions']")
    rows = page.doc().xpath("//table[@id='sessions']/tbody/tr")
    assert [r.get("data-user") for r in rows] == ["rc.console"]
    # The application by the name the console gives it, its entityID on hover.
    [named] = rows[0].xpath(".//span[@title]")
    assert named.get("title") == sp.entity_id and named.text.strip()

    done = admin.submit(page, "revoke-user")
    assert done.status == 200 and "1 session(s) of rc.console revoked." in done.html
    assert done.text_of("no-sessions")
    assert _reason(browser.get(sp.redirect_login_url())) == (403, "session_revoked")
    [row] = [r for r in server.audit_rows(event="session_revoked") if r["username"] == "anna"]
    assert json.loads(row["detail"])["after"] == {"user": "rc.console", "session": None, "revoked": 1}


def test_a_revoked_admin_session_is_turned_away_from_the_console(server: IdpServer):
    admin = admin_browser(server.base_url)
    assert admin.get(server.base_url + "/admin/sessions").status == 200
    server.idp("sessions", "revoke", "anna")
    assert admin.get(server.base_url + "/admin/sessions").is_login
