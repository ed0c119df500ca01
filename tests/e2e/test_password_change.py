"""An employee whose AD password has expired, or must be changed, sets a new one on our page and lands at the
SP; AD's refusals read as clear words; a signed-in person changes theirs; a password that expires soon is
announced once a day. Against the run's Samba AD, with users of this module's own (the demo users stay as
they are), and python3-saml as the SP."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

import pytest
from ldap3 import MODIFY_REPLACE

from idp.demo.samba_dc import DEMO_USERS, SambaDC
from idp.sps.policy import SpPolicy
from tests.e2e.ad_admin import BASE_DN, AdAdmin
from tests.e2e.browser import Browser, Page
from tests.e2e.harness import IdpServer
from tests.e2e.saml_sp import register_sp

pytestmark = pytest.mark.ad

START = "Start-Passw0rd"
USERS = {u.username: u.password for u in DEMO_USERS}
_DAY = 864_000_000_000  # 100 ns intervals
_PSO_CONTAINER = f"CN=Password Settings Container,CN=System,{BASE_DN}"


@dataclass
class Users:
    ad: AdAdmin
    dc: SambaDC


def _policy(ad: AdAdmin, name: str, applies_to: list[str], *, max_age_days: int) -> None:
    """A PSO like a strict domain's (8 characters, complex, 24 remembered) but no minimum age, so that a
    test may change a password twice; ``max_age_days`` (Samba ignores one day or less) makes it expire."""
    ad._add(
        f"CN={name},{_PSO_CONTAINER}",
        "msDS-PasswordSettings",
        {
            "msDS-PasswordSettingsPrecedence": "3",
            "msDS-PasswordReversibleEncryptionEnabled": "FALSE",
            "msDS-PasswordHistoryLength": "24",
            "msDS-PasswordComplexityEnabled": "TRUE",
            "msDS-MinimumPasswordLength": "8",
            "msDS-MinimumPasswordAge": "0",
            "msDS-MaximumPasswordAge": str(-max_age_days * _DAY),
            "msDS-LockoutThreshold": "0",
            "msDS-LockoutObservationWindow": "-18000000000",
            "msDS-LockoutDuration": "-18000000000",
            "msDS-PSOAppliesTo": applies_to,
        },
    )


def _set_long_ago(dc: SambaDC, dn: str) -> None:
    """pwdLastSet 30 days back. Samba's LDAP takes only 0 and -1 for it, so this writes the domain partition
    below the module stack, as the demo DC does for grace."""
    filetime = int((time.time() - 30 * 86400 + 11_644_473_600) * 10**7)
    partition = dc.target_dir / "private" / "sam.ldb.d" / f"{BASE_DN.upper()}.ldb"
    ldif = f"dn: {dn}\nchangetype: modify\nreplace: pwdLastSet\npwdLastSet: {filetime}\n"
    subprocess.run(["ldbmodify", "-H", str(partition)], input=ldif, text=True, check=True, capture_output=True)


@pytest.fixture(scope="module")
def users(samba_dc: SambaDC) -> Iterator[Users]:
    ad = AdAdmin(samba_dc)
    made = {name: ad.add_user(name, START, mail=f"{name}@corp.example.com") for name in ("pwexp", "pwmust", "pwrules")}
    soon = ad.add_user("pwsoon", START, mail="pwsoon@corp.example.com")
    _policy(ad, "pw-tests", list(made.values()), max_age_days=20)  # beyond the warning
    _policy(ad, "pw-tests-soon", [soon], max_age_days=10)
    _set_long_ago(samba_dc, made["pwexp"])
    ad.conn.modify(made["pwmust"], {"pwdLastSet": [(MODIFY_REPLACE, ["0"])]})
    assert ad.conn.result["result"] == 0, ad.conn.result
    try:
        yield Users(ad, samba_dc)
    finally:
        ad.undo()


def _login(browser: Browser, page: Page, username: str, password: str) -> Page:
    return browser.login(page, username, password)


def _change(browser: Browser, page: Page, old: str, new: str, again: str | None = None) -> Page:
    action, fields = page.form()
    fields.update(old_password=old, new_password=new, new_password2=new if again is None else again)
    return browser.post(action, fields)


def _signs_in(idp_server: IdpServer, username: str, password: str) -> None:
    sp = idp_server.sps["webmail"]
    browser = Browser()
    page = _login(browser, browser.get(sp.redirect_login_url()), username, password)
    assert sp.consume(*browser.saml_post(page)).nameid == f"{username}@corp.example.com"


@pytest.mark.parametrize(
    ("username", "words"),
    [("pwexp", "Your password has expired"), ("pwmust", "You must choose a new password")],
)
def test_an_expired_or_must_change_password_is_changed_here_and_the_sign_in_goes_on(idp_server, users, username, words):
    sp = idp_server.sps["webmail"]
    browser = Browser()
    page = _login(browser, browser.get(sp.redirect_login_url(relay_state="/inbox")), username, START)
    assert page.status == 200
    assert words in (page.text_of("error") or "")
    assert "webmail.sp.test" in (page.text_of("service") or "")
    assert "at least 8 characters" in (page.text_of("rule-length") or "")
    assert "last 24 passwords" in (page.text_of("rule-history") or "")
    assert page.text_of("rule-complexity")
    new = f"New-{username}-Passw0rd"
    result = sp.consume(*browser.saml_post(_change(browser, page, START, new)))
    assert result.nameid == f"{username}@corp.example.com"
    assert result.relay_state == "/inbox"
    assert idp_server.audit_rows(event="password_changed", username=username, result="success")
    reason = "password_expired" if username == "pwexp" else "password_must_change"
    assert idp_server.audit_rows(event="signin", username=username, result="failure", reason=reason)
    _signs_in(idp_server, username, new)  # AD has the new password, and no longer asks for a change


def _signed_in_form(idp_server: IdpServer, password: str) -> tuple[Browser, Page]:
    browser = Browser()
    page = _login(browser, browser.get(idp_server.base_url + "/login"), "pwrules", password)
    assert page.text_of("change-password-link") == "Change my password"
    page = browser.get(idp_server.base_url + "/password/change")
    assert page.text_of("password-for") == "Account: pwrules"
    return browser, page


def test_each_refusal_reads_as_its_rule_and_a_signed_in_person_changes_their_password(idp_server, users):
    browser, page = _signed_in_form(idp_server, START)
    refusals = [
        (START, "Sh0rt!", None, "too short", 400, "password_too_short"),
        (START, "alllowercaseletters", None, "too simple", 400, "password_not_complex"),
        (START, START, None, "used this password before", 400, "password_in_history"),
        (START, "Another-Passw0rd", "Another-Passw0rd-typo", "not the same", 400, "password_mismatch"),
        ("Wrong-Passw0rd", "Another-Passw0rd", None, "current password is incorrect", 401, "invalid_credentials"),
    ]
    for old, new, again, words, status, reason in refusals:
        page = _change(browser, page, old, new, again)
        assert page.status == status, (reason, page.html[:500])
        assert words in (page.text_of("error") or ""), reason
        assert idp_server.audit_rows(event="password_changed", username="pwrules", reason=reason), reason
    assert not idp_server.audit_rows(event="password_changed", username="pwrules", result="success")

    page = _change(browser, page, START, "Second-Passw0rd")
    assert page.status == 200 and "has been changed" in (page.text_of("password-changed") or "")
    rows = idp_server.audit_rows(event="password_changed", username="pwrules", result="success")
    assert len(rows) == 1 and not any("Passw0rd" in str(v) for r in rows for v in r.values())
    _signs_in(idp_server, "pwrules", "Second-Passw0rd")


def test_change_my_password_needs_a_sign_in(idp_server):
    page = Browser().get(idp_server.base_url + "/password/change")
    assert page.is_login and page.url.endswith("/login?next=/password/change")


def test_an_expiry_warning_once_a_day_then_on_to_the_sp_which_may_receive_the_expiry(idp_server, users):
    sp = register_sp(idp_server, "pwexpiry", SpPolicy(attributes=["mail", "passwordExpires"]))
    browser = Browser()
    page = _login(browser, browser.get(sp.redirect_login_url()), "pwsoon", START)
    warning = page.text_of("expiry-warning") or ""
    assert "expires in 9 days" in warning or "expires in 10 days" in warning, warning
    later_action, later_fields = page.form()
    result = sp.consume(*browser.saml_post(browser.post(later_action, later_fields)))
    assert result.nameid == "pwsoon@corp.example.com"
    (expires,) = result.attributes["urn:oid:1.2.840.113556.1.4.1996"]
    days = (time.mktime(time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())) / 86400
    assert 9 < days <= 10
    # The same session again, no password: the expiry worked out at the sign-in is kept in the session.
    again = sp.consume(*browser.saml_post(browser.get(sp.redirect_login_url())))
    assert again.attributes["urn:oid:1.2.840.113556.1.4.1996"] == [expires]

    # A fresh password sign-in in the same browser the same day: no second warning.
    page = _login(browser, browser.get(sp.redirect_login_url(force_authn=True)), "pwsoon", START)
    assert page.is_auto_post
    # Another browser is warned again; "change now" changes it and goes on to the SP.
    other = Browser()
    page = _login(other, other.get(idp_server.sps["webmail"].redirect_login_url()), "pwsoon", START)
    assert page.text_of("expiry-warning")
    page = other.get(urljoin(page.url, page.doc().get_element_by_id("change-now").get("href")))
    assert page.text_of("password-for") == "Account: pwsoon"
    result = idp_server.sps["webmail"].consume(*other.saml_post(_change(other, page, START, "Fresh-Passw0rd-9")))
    assert result.nameid == "pwsoon@corp.example.com"


@pytest.mark.parametrize(
    ("username", "words"),
    [("grace.pwexpired", "Your password has expired"), ("frank.mustchange", "You must choose a new password")],
)
def test_the_demo_expired_and_must_change_users_are_offered_the_change_form(idp_server, username, words):
    """Only looked at, never submitted: other tests rely on these demo users' states."""
    browser = Browser()
    page = _login(browser, browser.get(idp_server.sps["webmail"].redirect_login_url()), username, USERS[username])
    assert page.status == 200 and not page.is_login
    assert words in (page.text_of("error") or "")
    assert page.text_of("password-for") == f"Account: {username}"
    assert page.text_of("rule-length") == "at least 7 characters"
