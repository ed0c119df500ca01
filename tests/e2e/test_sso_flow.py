"""End to end over HTTP: the IdP under gunicorn, the Samba AD DC, and python3-saml as the SP that
validates every response. Each test is one thing an employee or an SP does."""

from __future__ import annotations

import base64
import dataclasses
import zlib
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C

from idp.demo.samba_dc import DEMO_USERS
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser, Page

pytestmark = pytest.mark.ad

USERS = {u.username: u for u in DEMO_USERS}
ALICE = USERS["alice"]
SHA256_SIG = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256_DIGEST = "http://www.w3.org/2001/04/xmlenc#sha256"


def sign_in(browser: Browser, sp, username: str = "alice", *, url: str | None = None, **login_kw):
    """SP-initiated sign-in on the Redirect binding; returns the SP's validated view of the response."""
    page = browser.get(url or sp.redirect_login_url(**login_kw))
    if page.is_login:
        page = browser.login(page, username, USERS[username].password)
    return sp.consume(*browser.saml_post(page))


def test_redirect_binding_login_gives_a_signed_sha256_response_with_ad_attributes(idp_server):
    sp = idp_server.sps["webmail"]
    browser = Browser()
    login_page = browser.get(sp.redirect_login_url(relay_state="/inbox?folder=1&x=<b>"))
    assert login_page.is_login
    assert "webmail.sp.test" in (login_page.text_of("service") or "")
    result = sp.consume(*browser.saml_post(browser.login(login_page, "alice", ALICE.password)))

    assert result.nameid == ALICE.mail
    assert result.nameid_format == C.NAMEID_EMAIL_ADDRESS
    assert result.relay_state == "/inbox?folder=1&x=<b>"
    assert result.friendly["mail"] == [ALICE.mail]
    assert result.friendly["givenName"] == [ALICE.given_name]
    assert result.friendly["sn"] == [ALICE.surname]
    assert "Mail Users" in result.friendly["isMemberOf"]  # through Sales: nested membership
    assert "Sales" in result.friendly["isMemberOf"]
    assert result.session_index
    assert SHA256_SIG in result.response_xml and SHA256_DIGEST in result.response_xml
    assert "rsa-sha1" not in result.response_xml and "xmldsig#sha1" not in result.response_xml
    assert "PasswordProtectedTransport" in result.response_xml
    rows = idp_server.audit_rows(event="signin", username="alice", sp_entity_id=sp.entity_id, result="success")
    assert rows and rows[0]["reason"] == "password"
    assert rows[0]["client_ip"] == "127.0.0.1"


def test_post_binding_login_and_relay_state_escaping(idp_server):
    sp = idp_server.sps["webmail"]
    browser = Browser()
    relay = '"><script>alert(1)</script>'
    page = browser.post(idp_server.base_url + "/saml/sso", sp.post_login_fields(relay_state=relay))
    assert page.is_login
    page = browser.login(page, "alice", ALICE.password)
    assert "<script>alert(1)</script>" not in page.html  # escaped in the auto-POST form, never raw
    result = sp.consume(*browser.saml_post(page))
    assert result.relay_state == relay
    assert result.nameid == ALICE.mail


def test_signed_requests_on_both_bindings(idp_server):
    sp = idp_server.sps["signed"]
    browser = Browser()
    assert sign_in(browser, sp).nameid == ALICE.mail
    page = browser.post(idp_server.base_url + "/saml/sso", sp.post_login_fields())
    assert sp.consume(*browser.saml_post(page)).nameid == ALICE.mail


def test_second_sp_in_the_same_browser_does_not_ask_again(idp_server):
    browser = Browser()
    first = sign_in(browser, idp_server.sps["webmail"])
    calendar = idp_server.sps["calendar"]
    page = browser.get(calendar.redirect_login_url())
    assert not page.is_login
    second = calendar.consume(*browser.saml_post(page))
    assert second.nameid == first.nameid
    assert second.session_index == first.session_index
    rows = idp_server.audit_rows(event="signin", sp_entity_id=calendar.entity_id, result="success")
    assert rows[0]["reason"] == "sso_session"


def test_session_id_changes_at_login_and_cookie_flags(idp_server):
    sp = idp_server.sps["webmail"]
    browser = Browser()
    page = browser.get(sp.redirect_login_url())
    before = browser.http.cookies.get("idp_session")
    assert before
    action, fields = page.form()
    fields.update(username="alice", password=ALICE.password)
    raw = browser.http.post(action, data=fields, timeout=30)
    after = browser.http.cookies.get("idp_session")
    assert after and after != before
    set_cookie = raw.headers["Set-Cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie


def test_force_authn_asks_for_the_password_again(idp_server):
    sp = idp_server.sps["webmail"]
    browser = Browser()
    sign_in(browser, sp)
    page = browser.get(sp.redirect_login_url(force_authn=True))
    assert page.is_login
    assert sp.consume(*browser.saml_post(browser.login(page, "alice", ALICE.password))).nameid == ALICE.mail


def test_is_passive_without_a_session_answers_no_passive(idp_server):
    sp = idp_server.sps["webmail"]
    browser = Browser()
    page = browser.get(sp.redirect_login_url(is_passive=True))
    action, fields = browser.saml_post(page)
    assert action == sp.acs_url
    assert sp.status_of(fields) == "Responder/NoPassive"
    sign_in(browser, sp)
    assert sp.consume(*browser.saml_post(browser.get(sp.redirect_login_url(is_passive=True)))).nameid == ALICE.mail


def test_nameid_policy_formats(idp_server):
    sp = idp_server.sps["webmail"]
    asked = sign_in(Browser(), sp, nameid_format=C.NAMEID_EMAIL_ADDRESS)
    assert (asked.nameid_format, asked.nameid) == (C.NAMEID_EMAIL_ADDRESS, ALICE.mail)
    # "unspecified" in a NameIDPolicy leaves the choice to the IdP: the SP's policy decides.
    any_format = sign_in(Browser(), sp, nameid_format=C.NAMEID_UNSPECIFIED)
    assert (any_format.nameid_format, any_format.nameid) == (C.NAMEID_EMAIL_ADDRESS, ALICE.mail)
    legacy = sign_in(Browser(), idp_server.sps["legacy"])
    assert (legacy.nameid_format, legacy.nameid) == (C.NAMEID_UNSPECIFIED, "alice")


def test_persistent_nameid_is_opaque_stable_and_per_sp(idp_server):
    sp = idp_server.sps["webmail"]
    a1 = sign_in(Browser(), sp, nameid_format=C.NAMEID_PERSISTENT)
    a2 = sign_in(Browser(), sp, nameid_format=C.NAMEID_PERSISTENT)
    other = sign_in(Browser(), idp_server.sps["persistent"])  # its policy picks persistent by default
    bob = sign_in(Browser(), sp, "bob", nameid_format=C.NAMEID_PERSISTENT)
    assert a1.nameid_format == C.NAMEID_PERSISTENT == other.nameid_format
    assert a1.nameid == a2.nameid
    assert a1.nameid != other.nameid and a1.nameid != bob.nameid
    assert "alice" not in a1.nameid.lower()


def test_transient_nameid_changes_every_time(idp_server):
    sp = idp_server.sps["webmail"]
    browser = Browser()
    t1 = sign_in(browser, sp, nameid_format=C.NAMEID_TRANSIENT)
    t2 = sign_in(browser, sp, nameid_format=C.NAMEID_TRANSIENT)
    assert t1.nameid_format == C.NAMEID_TRANSIENT
    assert t1.nameid != t2.nameid


def test_group_restricted_sp(idp_server):
    sp = idp_server.sps["restricted"]
    assert sign_in(Browser(), sp, "bob").nameid == USERS["bob"].mail  # Engineering -> Mail Users
    browser = Browser()
    page = browser.login(browser.get(sp.redirect_login_url()), "carol", USERS["carol"].password)
    assert page.status == 403
    assert "not allowed to use" in (page.text_of("error") or "")
    assert not page.is_auto_post
    rows = idp_server.audit_rows(event="signin", username="carol", sp_entity_id=sp.entity_id)
    assert rows[0]["result"] == "failure" and rows[0]["reason"] == "not_in_allowed_group"


def test_single_logout_from_an_sp(idp_server):
    sp = idp_server.sps["webmail"]
    browser = Browser()
    result = sign_in(browser, sp)
    r = browser.http.get(
        sp.logout_url(name_id=result.nameid, session_index=result.session_index, nameid_format=result.nameid_format),
        follow_redirects=False,
        timeout=30,
    )
    assert r.status_code in (302, 303)
    sp.validate_logout_response(r.headers["Location"])
    assert browser.get(sp.redirect_login_url()).is_login  # the IdP session is gone
    rows = idp_server.audit_rows(event="logout", sp_entity_id=sp.entity_id)
    assert rows[0]["username"] == "alice"


def test_single_logout_on_the_post_binding(idp_server):
    sp = idp_server.sps["calendar"]
    browser = Browser()
    result = sign_in(browser, sp)
    fields = sp.post_logout_fields(
        name_id=result.nameid, session_index=result.session_index, nameid_format=result.nameid_format
    )
    parked = browser.http.post(idp_server.base_url + "/saml/slo", data=fields, follow_redirects=False, timeout=30)
    assert parked.status_code == 303  # a cross-site POST comes back as a same-site GET, with the cookie
    r = browser.http.get(idp_server.base_url + parked.headers["Location"], follow_redirects=False, timeout=30)
    assert r.status_code in (302, 303)
    sp.validate_logout_response(r.headers["Location"])
    assert browser.get(sp.redirect_login_url()).is_login


def test_chinese_login_page(idp_server):
    page = Browser("zh-CN,zh;q=0.9,en;q=0.5").get(idp_server.sps["webmail"].redirect_login_url())
    assert page.is_login
    assert "使用公司账号登录" in page.html
    assert 'lang="zh-CN"' in page.html


# --- refusals ----------------------------------------------------------------------------------------------


def _deflate(xml: bytes) -> str:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(c.compress(xml) + c.flush()).decode()


def _refused(idp_server, page: Page, reason: str) -> None:
    assert page.status == 400, page.html[:400]
    assert not page.is_auto_post and not page.is_login
    doc = page.doc()
    assert doc.get_element_by_id("error").get("data-reason") == reason
    assert idp_server.audit_rows(event="saml_request", reason=reason), f"no audit row for {reason}"


def test_no_saml_request_at_all_is_refused_on_both_bindings_and_slo(idp_server):
    browser = Browser()
    for path in ("/saml/sso", "/saml/slo"):
        _refused(idp_server, browser.get(idp_server.base_url + path), "missing_request")
        _refused(idp_server, browser.post(idp_server.base_url + path, {"RelayState": "x"}), "missing_request")


def test_unknown_sp_is_refused(idp_server):
    from tests.e2e.saml_sp import IndependentSp

    stranger = IndependentSp("https://stranger.test/saml", "http://127.0.0.1:9999/acs", False, idp_server.metadata())
    _refused(idp_server, Browser().get(stranger.redirect_login_url()), "unknown_sp")


def test_acs_url_not_in_metadata_is_refused(idp_server):
    sp = dataclasses.replace(idp_server.sps["webmail"], acs_url="http://127.0.0.1:9999/evil/acs")
    _refused(idp_server, Browser().get(sp.redirect_login_url()), "acs_not_in_metadata")


@pytest.mark.parametrize("name", ["signed", "required"])
def test_unsigned_request_refused_where_signing_is_required(idp_server, name):
    sp = dataclasses.replace(idp_server.sps[name], sign_requests=False)
    _refused(idp_server, Browser().get(sp.redirect_login_url()), "unsigned_request")
    page = Browser().post(idp_server.base_url + "/saml/sso", sp.post_login_fields(sign=False))
    _refused(idp_server, page, "unsigned_request")


def test_tampered_signature_is_refused(idp_server):
    url = idp_server.sps["signed"].redirect_login_url(relay_state="/inbox")
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    tampered = [(k, "/admin" if k == "RelayState" else v) for k, v in params]
    page = Browser().get(parts._replace(query=urlencode(tampered)).geturl())
    _refused(idp_server, page, "bad_signature")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_x" Version="2.0"
 IssueInstant="2026-01-01T00:00:00Z">
<saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">&lol3;</saml:Issuer>
</samlp:AuthnRequest>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_x" Version="2.0"
 IssueInstant="2026-01-01T00:00:00Z">
<saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">&xxe;</saml:Issuer>
</samlp:AuthnRequest>"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_hostile_xml_is_refused_on_both_bindings(idp_server, xml):
    page = Browser().get(idp_server.base_url + "/saml/sso?" + urlencode({"SAMLRequest": _deflate(xml)}))
    _refused(idp_server, page, "hostile_xml")
    assert "root:" not in page.html
    page = Browser().post(idp_server.base_url + "/saml/sso", {"SAMLRequest": base64.b64encode(xml).decode()})
    _refused(idp_server, page, "hostile_xml")


def test_malformed_and_oversized_requests_are_refused(idp_server):
    browser = Browser()
    _refused(idp_server, browser.get(idp_server.base_url + "/saml/sso?SAMLRequest=not-base64!!"), "malformed")
    huge = base64.b64encode(b"<a>" + b"x" * 200_000 + b"</a>").decode()
    _refused(idp_server, browser.post(idp_server.base_url + "/saml/sso", {"SAMLRequest": huge}), "too_large")
    # A deflate bomb: 3 MB of zeros compress to about 3 kB.
    _refused(
        idp_server,
        browser.get(
            idp_server.base_url + "/saml/sso?" + urlencode({"SAMLRequest": _deflate(b"<a>" + b"0" * 3_000_000)})
        ),
        "too_large",
    )


# --- the login form and Active Directory -------------------------------------------------------------------


def _login_message(idp_server, username: str, password: str, *, status: int = 401) -> tuple[Page, str]:
    browser = Browser()
    page = browser.login(browser.get(idp_server.sps["webmail"].redirect_login_url()), username, password)
    assert page.is_login and page.status == status
    return page, page.text_of("error") or ""


@pytest.mark.parametrize(
    ("username", "reason", "words"),
    [
        ("dave.disabled", "account_disabled", "help desk"),
        ("erin.expired", "account_expired", "help desk"),
        ("henry.locked", "account_locked", "help desk"),
        ("ivan.hours", "logon_hours", "at this time"),
    ],
)
def test_account_states_get_their_message_and_audit_reason(idp_server, username, reason, words):
    _, message = _login_message(idp_server, username, USERS[username].password)
    assert words in message
    rows = idp_server.audit_rows(event="signin", username=username)
    assert rows[0]["result"] == "failure" and rows[0]["reason"] == reason


def test_wrong_password_unknown_user_and_locked_account_read_the_same(idp_server):
    """Nobody learns from the page which usernames exist, or which accounts AD has locked (AD answers
    "locked" whatever the password); the audit row keeps the truth for the admin."""
    _, wrong = _login_message(idp_server, "alice", "not-her-password")
    _, unknown = _login_message(idp_server, "nobody.here", "whatever-1")
    _, locked = _login_message(idp_server, "henry.locked", "not-his-password")
    assert wrong == unknown == locked
    assert wrong.startswith("The username or password is incorrect.")
    assert idp_server.audit_rows(event="signin", username="nobody.here")[0]["reason"] == "invalid_credentials"
    assert idp_server.audit_rows(event="signin", username="henry.locked")[0]["reason"] == "account_locked"


def test_username_forms(idp_server):
    sp = idp_server.sps["webmail"]
    for form in ("alice", "alice@corp.example.com", "CORP\\alice", "ALICE"):
        browser = Browser()
        page = browser.login(browser.get(sp.redirect_login_url()), form, ALICE.password)
        assert sp.consume(*browser.saml_post(page)).nameid == ALICE.mail, form


@pytest.fixture
def ad_admin(samba_dc):
    admin = AdAdmin(samba_dc)
    yield admin
    admin.undo()


def test_empty_password_is_refused_before_any_bind(idp_server, ad_admin):
    ad_admin.count_bad_passwords(ad_admin.dn_of("bob"))
    before = ad_admin.bad_password_count("bob")
    _login_message(idp_server, "bob", "wrong-password-1")
    assert ad_admin.bad_password_count("bob") == before + 1  # a wrong password does reach AD and is counted
    for blank in ("", "   "):
        _, message = _login_message(idp_server, "bob", blank)
        assert message == "Please enter your password."
    assert ad_admin.bad_password_count("bob") == before + 1  # the blank ones never did
    assert idp_server.audit_rows(event="signin", username="bob")[0]["reason"] == "empty_password"


def test_a_nameid_format_we_do_not_issue_answers_invalid_nameid_policy(idp_server):
    # (A person without a mail address reads our own page instead: tests/e2e/test_mail_address.py.)
    sp = idp_server.sps["webmail"]
    browser = Browser()
    kerberos = "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos"
    page = browser.login(browser.get(sp.redirect_login_url(nameid_format=kerberos)), "bob", USERS["bob"].password)
    action, fields = browser.saml_post(page)
    assert action == sp.acs_url
    assert sp.status_of(fields) == "Responder/InvalidNameIDPolicy"  # the IdP has no value to give
    rows = idp_server.audit_rows(event="signin", username="bob")
    assert rows[0]["result"] == "failure" and rows[0]["reason"] == "no_nameid"


def test_guessing_is_throttled_before_ad_would_lock_the_account(idp_server, ad_admin):
    ad_admin.count_bad_passwords(ad_admin.add_user("tina", "Passw0rd!Tina", mail="tina@corp.example.com"))
    for n in range(5):  # [login] max_failures_per_user defaults to 5
        _, message = _login_message(idp_server, "CORP\\Tina" if n % 2 else "tina", f"guess-{n}")
        assert message.startswith("The username or password is incorrect.")
    assert ad_admin.bad_password_count("tina") == 5
    _, message = _login_message(idp_server, "tina", "guess-5", status=429)
    assert message == "Too many failed sign-in attempts. Wait a few minutes and try again."
    _login_message(idp_server, "tina@corp.example.com", "Passw0rd!Tina", status=429)  # even the right one waits
    assert ad_admin.bad_password_count("tina") == 5  # AD was not asked again
    rows = idp_server.audit_rows(event="signin", username="tina")
    assert [r["reason"] for r in rows[:2]] == ["throttled", "throttled"]


def test_login_form_needs_its_csrf_token(idp_server):
    browser = Browser()
    page = browser.get(idp_server.sps["webmail"].redirect_login_url())
    action, fields = page.form()
    fields.update(username="alice", password=ALICE.password, csrf_token="forged")
    refused = browser.post(action, fields)
    assert refused.status == 400
    assert "expired" in (refused.text_of("error") or "")


def test_no_password_in_audit_or_logs(idp_server):
    _login_message(idp_server, "alice", "Sekr1t-typo-!")
    log = idp_server.log.read_text()
    assert "Sekr1t-typo-!" not in log
    for row in idp_server.audit_rows():
        assert "Sekr1t-typo-!" not in repr(row)
