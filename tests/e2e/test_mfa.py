"""A second factor end to end: the IdP under gunicorn, the Samba AD DC, python3-saml as the SP. A person enrols
an authenticator app at the sign-in of an SP that requires one, signs in with password and code (each code
once, wrong ones throttled), with a recovery code (once), or from a remembered browser; an SP that asks for
MFA in its request gets step-up; the assertion's AuthnContextClassRef says what was done; an admin's reset
is audited and sends the person back to enrolment.

[mfa] is a setting of the whole IdP, so this file starts its own IdP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urljoin

import pyotp
import pytest
from onelogin.saml2.auth import OneLogin_Saml2_Auth

from idp.sps.policy import SpPolicy
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser, Page, admin_browser
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, register_sp

pytestmark = pytest.mark.ad

PASSWORD = "Passw0rd!Mfa1"
USER = "mfa.alice"
MAX_FAILURES = 3
REFEDS_MFA = "https://refeds.org/profile/mfa"
PASSWORD_ONLY = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"


@pytest.fixture(scope="module")
def ad(samba_dc) -> Iterator[AdAdmin]:
    with AdAdmin(samba_dc) as admin:
        admin.add_user(USER, PASSWORD, mail=f"{USER}@corp.example.com")
        yield admin


@pytest.fixture(scope="module")
def server(samba_dc, ad: AdAdmin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdpServer]:
    root = tmp_path_factory.mktemp("mfa-idp")
    port = free_port()
    config = base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings())
    config["mfa"] = {"max_failures": MAX_FAILURES, "remember_days": 7}
    server = serve_idp(prepare_idp(root, config), port, workers=2)
    try:
        server.sps["mfa"] = register_sp(server, "mfa", SpPolicy(mfa="required"))
        server.sps["open"] = register_sp(server, "open", SpPolicy())
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def enrolled(server: IdpServer) -> dict:
    """USER enrols at the sign-in of the SP that requires a second factor: (secret, recovery codes)."""
    browser, sp = Browser(), server.sps["mfa"]
    page = browser.login(browser.get(sp.redirect_login_url()), USER, PASSWORD)
    assert page.url.startswith(f"{server.base_url}/mfa/enrol"), page.url
    svg = page.doc().get_element_by_id("qr")
    assert svg is not None and len(svg) == 1 and svg[0].tag == "svg"  # drawn on the server, no script
    secret = (page.text_of("secret") or "").replace(" ", "")
    wrong = browser.submit(page, "mfa-enrol", {"code": _not(pyotp.TOTP(secret).now())})
    assert wrong.status == 400 and wrong.text_of("error")
    codes_page = browser.submit(wrong, "mfa-enrol", {"code": pyotp.TOTP(secret).now()})
    codes = [li.text_content().strip() for li in codes_page.doc().get_element_by_id("recovery-codes")]
    assert len(codes) == 10 and len(set(codes)) == 10
    done = browser.get(_link(codes_page, "continue"))
    result = sp.consume(*browser.saml_post(done))
    assert result.nameid == f"{USER}@corp.example.com"
    assert _class_ref(result.response_xml) == REFEDS_MFA
    return {"secret": secret, "codes": codes, "browser": browser}


def test_enrolment_is_audited_and_the_secret_is_not_stored_in_clear(server: IdpServer, enrolled: dict):
    [row] = server.audit_rows(event="mfa_enrolled", username=USER)
    assert row["result"] == "success" and row["reason"] == "totp"
    db = (server.root / "data" / "idp.db").read_bytes()
    assert enrolled["secret"].encode() not in db
    assert all(code.encode() not in db for code in enrolled["codes"])
    assert oct((server.root / "certs" / "mfa.key").stat().st_mode & 0o777) == "0o600"


def test_password_and_code_wrong_then_right_and_never_twice(server: IdpServer, enrolled: dict):
    browser, sp = Browser(), server.sps["mfa"]
    totp = pyotp.TOTP(enrolled["secret"])
    code = totp.at(time.time() + 30)  # the next step's code: the enrolment used up the current one
    wrong = browser.submit(_password(browser, server, sp), "mfa-verify", {"code": _not(code)})
    assert wrong.status == 401 and wrong.text_of("error")
    page = browser.submit(wrong, "mfa-verify", {"code": code, "remember": "on"})
    result = sp.consume(*browser.saml_post(page))
    assert _class_ref(result.response_xml) == REFEDS_MFA
    enrolled["remembered"] = browser.http.cookies["idp_mfa_browser"]
    # The same code, still within its window, from another browser: refused (a code is good once).
    other = Browser()
    replay = other.submit(_password(other, server, sp), "mfa-verify", {"code": code})
    assert replay.status == 401
    failures = server.audit_rows(event="signin", username=USER, result="failure")
    assert [r["reason"] for r in failures] == ["mfa_wrong_code", "mfa_wrong_code"]
    assert server.audit_rows(event="mfa", username=USER, reason="totp")
    # Another SP of the same session needs no second code, and is told MFA too.
    open_sp = server.sps["open"]
    page = browser.get(open_sp.redirect_login_url())
    assert _class_ref(open_sp.consume(*browser.saml_post(page)).response_xml) == REFEDS_MFA


def test_a_remembered_browser_needs_no_code(server: IdpServer, enrolled: dict):
    browser, sp = Browser(), server.sps["mfa"]
    browser.http.cookies.set("idp_mfa_browser", enrolled["remembered"], domain="127.0.0.1")
    page = browser.login(browser.get(sp.redirect_login_url()), USER, PASSWORD)
    assert _class_ref(sp.consume(*browser.saml_post(page)).response_xml) == REFEDS_MFA
    assert server.audit_rows(event="mfa", username=USER, reason="remembered_browser")


def test_a_recovery_code_works_once(server: IdpServer, enrolled: dict):
    code, sp = enrolled["codes"][0], server.sps["mfa"]
    browser = Browser()
    page = browser.submit(_password(browser, server, sp), "mfa-verify", {"code": code.upper()})
    assert _class_ref(sp.consume(*browser.saml_post(page)).response_xml) == REFEDS_MFA
    again = Browser()
    page = again.submit(_password(again, server, sp), "mfa-verify", {"code": code})
    assert page.status == 401


def test_password_only_sp_then_step_up_when_the_request_asks_for_mfa(server: IdpServer, enrolled: dict):
    browser, open_sp = Browser(), server.sps["open"]
    page = browser.login(browser.get(open_sp.redirect_login_url()), USER, PASSWORD)
    assert _class_ref(open_sp.consume(*browser.saml_post(page)).response_xml) == PASSWORD_ONLY
    # A passive request cannot be asked for a code: NoPassive, not a page.
    passive = browser.get(_requesting_mfa(open_sp, is_passive=True))
    assert open_sp.status_of(browser.saml_post(passive)[1]) == "Responder/NoPassive"
    page = browser.get(_requesting_mfa(open_sp))
    assert page.url.startswith(f"{server.base_url}/mfa?"), page.url
    before = browser.http.cookies["idp_session"]
    page = browser.submit(page, "mfa-verify", {"code": enrolled["codes"][1]})
    assert _class_ref(open_sp.consume(*browser.saml_post(page)).response_xml) == REFEDS_MFA
    # The session goes on under a new id once it holds a second factor; the id it had before is worth nothing.
    assert browser.http.cookies["idp_session"] != before
    copied = Browser()
    copied.http.cookies.set("idp_session", before, domain="127.0.0.1")
    assert copied.get(open_sp.redirect_login_url()).is_login


def test_wrong_codes_are_throttled_even_before_a_right_one(server: IdpServer, enrolled: dict):
    browser, sp = Browser(), server.sps["mfa"]
    page = _password(browser, server, sp)
    for _ in range(MAX_FAILURES):
        page = browser.submit(page, "mfa-verify", {"code": "000000"})
        assert page.status == 401
    page = browser.submit(page, "mfa-verify", {"code": enrolled["codes"][2]})
    assert page.status == 429
    assert server.audit_rows(event="signin", username=USER, reason="throttled")


def test_an_admin_resets_from_the_console_and_the_cli_audited(server: IdpServer, enrolled: dict):
    admin = admin_browser(server.base_url)
    page = admin.get(f"{server.base_url}/admin/mfa?user={USER}")
    assert page.doc().get_element_by_id("mfa-factors") is not None
    page = admin.submit(page, "mfa-reset")
    assert page.doc().get_element_by_id("no-factors") is not None
    [row] = server.audit_rows(event="mfa_removed", username=USER)
    assert (row["result"], row["reason"]) == ("success", "admin_reset") and row["detail"].startswith("by anna")
    # The person enrols again at their next sign-in that needs a factor; the CLI resets that one.
    browser, sp = Browser(), server.sps["mfa"]
    page = browser.login(browser.get(sp.redirect_login_url()), USER, PASSWORD)
    assert page.url.startswith(f"{server.base_url}/mfa/enrol")
    secret = (page.text_of("secret") or "").replace(" ", "")
    assert secret != enrolled["secret"]
    browser.submit(page, "mfa-enrol", {"code": pyotp.TOTP(secret).now()})
    assert "1 second factor(s) of mfa.alice removed" in server.idp("mfa", "reset", USER).stdout
    assert [r["reason"] for r in server.audit_rows(event="mfa_removed", username=USER)] == ["admin_reset"] * 2
    assert server.idp("mfa", "reset", USER, check=False).returncode != 0  # nothing left to reset


# --- helpers --------------------------------------------------------------------------------------------------


def _password(browser: Browser, server: IdpServer, sp: IndependentSp) -> Page:
    page = browser.login(browser.get(sp.redirect_login_url()), USER, PASSWORD)
    assert page.url.startswith(f"{server.base_url}/mfa?"), page.url
    return page


def _requesting_mfa(sp: IndependentSp, *, is_passive: bool = False) -> str:
    """An SP-initiated request whose RequestedAuthnContext asks for REFEDS MFA (python3-saml's own setting)."""
    settings = sp.settings_dict()
    settings["security"]["requestedAuthnContext"] = [REFEDS_MFA]
    settings["security"]["requestedAuthnContextComparison"] = "exact"
    auth = OneLogin_Saml2_Auth(
        {"https": "off", "http_host": "sp.test", "script_name": "/acs", "get_data": {}, "post_data": {}}, settings
    )
    url = auth.login(return_to="/inbox", is_passive=is_passive)
    sp._last_request_id = auth.get_last_request_id()  # consume() checks InResponseTo against it
    return url


def _class_ref(response_xml: str) -> str:
    start = response_xml.index("AuthnContextClassRef>") + len("AuthnContextClassRef>")
    return response_xml[start : response_xml.index("<", start)]


def _link(page: Page, element_id: str) -> str:
    return urljoin(page.url, page.doc().get_element_by_id(element_id).get("href"))


def _not(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"
