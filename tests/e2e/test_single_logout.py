"""Single logout end to end: two independent SPs (python3-saml) signed in to in one browser; logging out at one,
or on the IdP's own page, tells the other with a signed LogoutRequest, and the browser carries every answer."""

from __future__ import annotations

import base64
import zlib
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree

from idp.demo.samba_dc import DEMO_USERS
from idp.sps.policy import SpPolicy
from tests.e2e.browser import Browser, Page
from tests.e2e.harness import IdpServer
from tests.e2e.saml_sp import IndependentSp, LoginResult, register_sp

pytestmark = pytest.mark.ad

ALICE = next(u for u in DEMO_USERS if u.username == "alice")


def _signed_in_to_both(idp_server: IdpServer) -> tuple[Browser, IndependentSp, LoginResult, IndependentSp, LoginResult]:
    a = register_sp(idp_server, "slo-a", SpPolicy())
    b = register_sp(idp_server, "slo-b", SpPolicy(nameid_format="persistent"))
    browser = Browser()
    page = browser.get(a.redirect_login_url())
    at_a = a.consume(*browser.saml_post(browser.login(page, "alice", ALICE.password)))
    page = browser.get(b.redirect_login_url())
    assert not page.is_login  # the second SP rides on the session
    at_b = b.consume(*browser.saml_post(page))
    return browser, a, at_a, b, at_b


def _go(browser: Browser, url: str) -> str:
    """One step of the chain: the IdP sends the browser on (303) to the Location returned."""
    r = browser.http.get(url, follow_redirects=False, timeout=30)
    assert r.status_code == 303, f"{r.status_code} at {url}: {r.text[:500]}"
    return r.headers["Location"]


def _logout_at(browser: Browser, sp: IndependentSp, result: LoginResult) -> str:
    return _go(
        browser,
        sp.logout_url(name_id=result.nameid, session_index=result.session_index, nameid_format=result.nameid_format),
    )


def _status(url: str) -> str:
    xml = zlib.decompress(base64.b64decode(parse_qs(urlsplit(url).query)["SAMLResponse"][0]), -zlib.MAX_WBITS)
    codes = etree.fromstring(xml).iter("{urn:oasis:names:tc:SAML:2.0:protocol}StatusCode")
    return "/".join(c.get("Value", "").rsplit(":", 1)[-1] for c in codes)


def _both_ask_for_the_password(browser: Browser, a: IndependentSp, b: IndependentSp) -> None:
    assert browser.get(a.redirect_login_url()).is_login
    assert browser.get(b.redirect_login_url()).is_login


def test_logout_at_one_sp_tells_the_other_and_both_need_a_new_login(idp_server):
    browser, a, at_a, b, at_b = _signed_in_to_both(idp_server)

    to_b = _logout_at(browser, a, at_a)
    back, name_id, session_indexes = b.answer_logout_request(to_b)
    assert (name_id, session_indexes) == (at_b.nameid, [at_b.session_index])  # B's own (persistent) NameID
    to_a = _go(browser, back)

    a.validate_logout_response(to_a)
    assert _status(to_a) == "Success"
    _both_ask_for_the_password(browser, a, b)
    row = idp_server.audit_rows(event="logout", sp_entity_id=a.entity_id)[0]
    assert (row["username"], row["result"], row["reason"]) == ("alice", "success", "sp_initiated")


def test_an_sp_that_does_not_answer_makes_it_a_partial_logout(idp_server):
    browser, a, at_a, b, _ = _signed_in_to_both(idp_server)

    _logout_at(browser, a, at_a)  # the browser is sent to B, which never sends it back
    to_a = _go(browser, idp_server.base_url + "/saml/slo/next")  # the person comes back without B's answer

    a.validate_logout_response(to_a)  # PartialLogout sits under Success: A's logout itself went through
    assert _status(to_a) == "Success/PartialLogout"
    _both_ask_for_the_password(browser, a, b)
    row = idp_server.audit_rows(event="logout", sp_entity_id=a.entity_id)[0]
    assert (row["result"], row["reason"]) == ("success", "partial")
    assert b.entity_id in row["detail"] and "did not answer" in row["detail"]


def test_a_logout_request_for_another_session_is_refused_and_ends_nothing(idp_server):
    browser, a, at_a, b, _ = _signed_in_to_both(idp_server)

    answer = _go(browser, a.logout_url(name_id="bob@example.test", session_index=at_a.session_index))

    assert _status(answer) == "Requester"
    assert not browser.get(b.redirect_login_url()).is_login  # still signed in
    row = idp_server.audit_rows(event="logout", sp_entity_id=a.entity_id)[0]
    assert (row["result"], row["reason"]) == ("refused", "session_mismatch")


def test_the_idps_own_sign_out_tells_both(idp_server):
    browser, a, at_a, b, at_b = _signed_in_to_both(idp_server)
    home = browser.get(idp_server.base_url + "/")
    action, fields = home.form()
    assert action.endswith("/logout")

    r = browser.http.post(action, data=fields, follow_redirects=False, timeout=30)
    # A page that opens the first SP's logout URL: a 303 from the form's POST to the SP's origin would be held
    # back by the page's CSP form-action in a real browser.
    opened = Page(str(r.url), r.status_code, r.text).doc().xpath("//meta[@http-equiv='refresh']/@content")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store" and opened
    back, name_id, session_indexes = a.answer_logout_request(str(opened[0]).split("url=", 1)[1])
    assert (name_id, session_indexes) == (at_a.nameid, [at_a.session_index])
    back, name_id, session_indexes = b.answer_logout_request(_go(browser, back))
    assert (name_id, session_indexes) == (at_b.nameid, [at_b.session_index])
    page = browser.get(back)

    assert page.status == 200 and page.url.startswith(idp_server.base_url + "/saml/slo")
    assert "You are signed out" in page.html and page.text_of("not-confirmed") is None
    _both_ask_for_the_password(browser, a, b)
    rows = [r for r in idp_server.audit_rows(event="logout") if r["username"] == "alice" and r["sp_entity_id"] is None]
    assert (rows[0]["reason"], rows[0]["result"]) == ("idp_page", "success")
    assert a.entity_id in rows[0]["detail"] and b.entity_id in rows[0]["detail"]
