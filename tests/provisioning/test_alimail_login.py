"""The Alibaba Mail logon connector against the emulator over real HTTP: one-time login URLs, the webmail
that accepts them once, each refusal as its typed error, and no request sent twice."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from idp.connectors.alimail import (
    AlimailLogin,
    AppCredentialsRejected,
    LoginNotPermitted,
    LoginRateLimited,
    LoginRejected,
    LoginUnavailable,
    MailboxFrozen,
    MailboxUnknown,
)
from idp.connectors.alimail_contract import SIGNED_PARAMS, TOKEN_PARAMS, signature
from idp.demo.alimail_emulator import LOGIN_PATH, RunningEmulator
from idp.provisioning import MailboxSpec
from idp.provisioning.alimail import AlimailProvider
from idp.settings import AlimailDirectSettings, SettingsError, load_settings, render_toml

ALICE = "alice@example.com"
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def mailboxes(alimail: AlimailProvider) -> AlimailProvider:
    alimail.create(MailboxSpec(email=ALICE, display_name="Alice Liddell"))
    return alimail


@pytest.fixture
def login_for(emulator: RunningEmulator, tmp_path: Path) -> Iterator[Any]:
    """``login_for(secret=..., **settings)``: a connector for the emulator's login app."""
    opened: list[AlimailLogin] = []

    def make(secret: str | None = None, **overrides: Any) -> AlimailLogin:
        secret_file = tmp_path / f"secret-{len(opened)}"
        secret_file.write_text((secret or emulator.emulator.login_app_secret) + "\n")
        values: dict[str, Any] = {
            "host": emulator.url,
            "app_code": emulator.emulator.login_app_code,
            "app_secret_file": secret_file,
            "connect_timeout": 1.0,
            "read_timeout": 1.0,
        }
        login = AlimailLogin(AlimailDirectSettings(**{**values, **overrides}))
        opened.append(login)
        return login

    yield make
    for login in opened:
        login.close()


def _logon_calls(emu: RunningEmulator) -> list[Any]:
    return [c for c in emu.emulator.calls if c.path == LOGIN_PATH]


def test_a_signed_login_url_opens_the_mailbox_once(mailboxes, login_for, emulator: RunningEmulator) -> None:
    issued = login_for().login_url(ALICE)
    assert issued.expires_at > time.monotonic()
    with httpx.Client(follow_redirects=True) as browser:
        inbox = browser.get(issued.url)
        assert (inbox.status_code, inbox.url.path) == (200, "/webmail/")
        assert f'<p id="message">{ALICE}</p>' in inbox.text
        again = browser.get(issued.url)
    assert again.status_code == 403 and "used already" in again.text
    assert emulator.emulator.webmail_logins == [ALICE]
    [call] = _logon_calls(emulator)
    assert set(call.fields) == set(SIGNED_PARAMS) - {"redirect_url"}


def test_the_landing_page_is_sent_as_the_redirect(mailboxes, login_for, emulator: RunningEmulator) -> None:
    landing = f"{emulator.url}/webmail/?folder=inbox"
    issued = login_for(landing_url=landing).login_url(ALICE)
    with httpx.Client() as browser:
        assert browser.get(issued.url).headers["Location"] == landing
    assert set(_logon_calls(emulator)[0].fields) == set(SIGNED_PARAMS)


def test_the_emulator_refuses_a_parameter_the_contract_does_not_list(mailboxes, emulator: RunningEmulator) -> None:
    """What makes the two tests above able to fail: an extra parameter is a 400, not a login."""
    form = {"app_code": emulator.emulator.login_app_code, "email": ALICE, "timestamp": str(int(time.time() * 1000))}
    form["lang"] = "en"
    form["sign"] = signature(form, emulator.emulator.login_app_secret, "md5")
    answer = httpx.post(f"{emulator.url}{LOGIN_PATH}", data=form)
    assert answer.status_code == 400 and "lang" in answer.json()["message"]


def test_the_signature_is_the_documented_canonical_form() -> None:
    """Sorted name=value pairs joined by &, then the Secret (md5) or keyed with it (hmac-sha256)."""
    params = {"timestamp": "1700000000000", "email": "a@b.c", "app_code": "app"}
    assert signature(params, "s3cret", "md5") == "1d9c32becfe8900e9d3d056e677caf18"
    assert signature(params, "s3cret", "hmac-sha256") == (
        "f4dd5edd342b3b11d69abb7cc924dacd83b9ab4f8be34583a891b6ae455fc030"
    )


def test_token_auth_renews_a_refused_token_once(mailboxes, login_for, emulator: RunningEmulator) -> None:
    login = login_for(auth="token")
    login.login_url(ALICE)
    emulator.expire_tokens()
    issued = login.login_url(ALICE)
    assert [c.status for c in _logon_calls(emulator)] == [200, 401, 200]
    assert all(set(c.fields) <= set(TOKEN_PARAMS) for c in _logon_calls(emulator))
    with httpx.Client(follow_redirects=True) as browser:
        assert ALICE in browser.get(issued.url).text


@pytest.mark.parametrize("auth", ["sign", "token"])
def test_a_wrong_secret_is_the_apps_credentials(mailboxes, login_for, emulator: RunningEmulator, auth: str) -> None:
    with pytest.raises(AppCredentialsRejected, match="app_secret_file") as caught:
        login_for(secret="not-the-secret", auth=auth).login_url(ALICE)
    assert "not-the-secret" not in str(caught.value)
    assert emulator.emulator.webmail_logins == []


def test_the_mailbox_must_exist_and_be_open(mailboxes, login_for, emulator: RunningEmulator) -> None:
    login = login_for()
    with pytest.raises(MailboxUnknown, match=r"no mailbox bob@example\.com"):
        login.login_url("bob@example.com")
    issued = login.login_url(ALICE)
    mailboxes.freeze(ALICE)
    with pytest.raises(MailboxFrozen, match="is frozen"):
        login.login_url(ALICE)
    # A URL issued before the freeze opens nothing after it.
    assert httpx.get(issued.url).status_code == 403
    assert emulator.emulator.webmail_logins == []


def test_an_app_without_the_login_permission(mailboxes, login_for, emulator: RunningEmulator) -> None:
    emulator.emulator.login_permitted = False
    with pytest.raises(LoginNotPermitted, match=r"User\.Login\.All"):
        login_for().login_url(ALICE)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"status": 429, "retry_after": 2.5}, LoginRateLimited),
        ({"status": 503}, LoginUnavailable),
    ],
)
def test_an_unanswered_logon_is_not_sent_again(mailboxes, login_for, emulator: RunningEmulator, fault, error) -> None:
    emulator.faults.fail_next(1, path_prefix=LOGIN_PATH, **fault)
    with pytest.raises(error) as caught:
        login_for().login_url(ALICE)
    assert len(_logon_calls(emulator)) == 1
    if error is LoginRateLimited:
        assert caught.value.retry_after == 2.5


def test_a_logon_whose_answer_is_lost_is_not_repeated(mailboxes, login_for, emulator: RunningEmulator) -> None:
    """The emulator issues the URL and the answer never comes: asking again would issue a second one."""
    emulator.faults.time_out_after_applying(1, path_prefix=LOGIN_PATH, delay=1.5)
    with pytest.raises(LoginUnavailable, match="did not answer in time"):
        login_for().login_url(ALICE)
    emulator.faults.drop_next(1, path_prefix=LOGIN_PATH)
    with pytest.raises(LoginUnavailable):
        login_for().login_url(ALICE)
    # A dropped request leaves no record; a second try would have left one (and issued a URL).
    assert len(_logon_calls(emulator)) == 1
    assert emulator.emulator.webmail_logins == []


def test_a_url_that_came_too_late_is_not_used(mailboxes, login_for, emulator: RunningEmulator) -> None:
    emulator.faults.latency = 0.3
    with pytest.raises(LoginUnavailable, match="lifetime"):
        login_for(url_lifetime=0.2).login_url(ALICE)


def test_an_expired_url_opens_nothing(mailboxes, login_for, emulator: RunningEmulator) -> None:
    emulator.emulator.login_ttl = 0.2
    issued = login_for().login_url(ALICE)
    time.sleep(0.3)
    answer = httpx.get(issued.url)
    assert answer.status_code == 403 and "expired" in answer.text


def test_an_unreachable_host_is_unavailable(login_for) -> None:
    with pytest.raises(LoginUnavailable, match="cannot be reached"):
        login_for(host="http://127.0.0.1:9", connect_attempts=2).login_url(ALICE)


def test_settings_name_the_bad_key(tmp_path: Path) -> None:
    ldap = {"urls": ["ldaps://dc1.example.com"], "base_dn": "DC=example,DC=com", "bind_dn": "s@x", "bind_password": "x"}
    direct = {"app_code": "app", "app_secret_file": "alimail.secret"}
    config = tmp_path / "idp.toml"
    config.write_text(render_toml({"ldap": ldap, "alimail_direct": direct}))
    with pytest.raises(SettingsError, match=r"alimail_direct.app_secret_file: .*alimail.secret does not exist"):
        load_settings(config, environ={})
    (tmp_path / "alimail.secret").write_text("s\n")
    assert load_settings(config, environ={}).alimail_direct.secret() == "s"
    config.write_text(render_toml({"ldap": ldap, "alimail_direct": {**direct, "email_param": "sign"}}))
    with pytest.raises(SettingsError, match=r"alimail_direct: .*_param names must be"):
        load_settings(config, environ={})


def test_check_proves_the_settings_without_signing_anyone_in(login_for, emulator: RunningEmulator) -> None:
    login_for().check("example.com")
    with pytest.raises(AppCredentialsRejected):
        login_for(secret="wrong").check("example.com")
    emulator.emulator.login_permitted = False
    with pytest.raises(LoginNotPermitted):
        login_for().check("example.com")
    assert emulator.emulator.webmail_logins == []


def test_the_readme_shows_every_key_of_the_section() -> None:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^### Alibaba Mail: signing in directly.*?(?=^### )", text, re.S | re.M)
    assert section is not None
    shown = set(re.findall(r"^#? ?(\w+) = ", section.group(0), re.M))
    assert sorted(set(AlimailDirectSettings.model_fields) - shown) == []


def test_a_contract_that_does_not_fit_says_which_section_to_fix(mailboxes, login_for) -> None:
    with pytest.raises(LoginRejected, match=r"check \[alimail_direct\].*HTTP 404"):
        login_for(login_path="/api/sso/wrong").login_url(ALICE)
    with pytest.raises(LoginRejected, match=r"check \[alimail_direct\].*unknown parameter.*user_email"):
        login_for(email_param="user_email").login_url(ALICE)
    with pytest.raises(LoginRejected, match="check url_field"):
        login_for(url_field="url").login_url(ALICE)
