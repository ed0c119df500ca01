"""One sign-in, one audit row, for the application the person signed in to, whether it speaks SAML or OpenID
Connect: `idp serve` (gunicorn) against the run's Samba AD DC, python3-saml as the SAML SP and Authlib's OAuth 2.0
client as the relying party. Each test signs a person in to both through the same pages (the password form, the
second-factor pages, a refusal) and compares the rows the two sign-ins wrote, so that the trail of an OIDC
sign-in cannot drift from a SAML one's: the client's row names how the person signed in (a password, not the SSO
session the login form has just started), and no row is written for "no application" on the way."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx
import pyotp
import pytest
from authlib.integrations.httpx_client import OAuth2Client

from idp.demo.alimail_emulator import RunningEmulator, run_emulator
from idp.demo.samba_dc import REALM
from idp.sps.policy import SpPolicy
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser, Page
from tests.e2e.harness import IdpServer, alimail_config, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, register_sp
from tests.e2e.test_oidc import REDIRECT, Rp, authorize, follow, start

pytestmark = pytest.mark.ad

PASSWORD = "Audit-Passw0rd!" + secrets.token_hex(3)
CLIENT = "audit-app"
ENTITY = f"urn:ad-sso-bridge:oidc:{CLIENT}"
MFA_GROUP = "OIDC Audit MFA"
APP = "<the application>"
"""What a row's application reads as when a SAML and an OIDC trail are compared."""
Row = tuple[str, str | None, str, str | None, str | None]


def _add_client(server: IdpServer) -> Rp:
    added = server.idp("oidc", "client", "add", CLIENT, "--name", "Audit App", "--redirect-uri", REDIRECT)
    secret = re.search(r"client secret: (\S+)", added.stdout)
    assert secret, added.stdout
    config = httpx.get(server.base_url + "/.well-known/openid-configuration", timeout=10).json()
    return Rp(CLIENT, secret[1], config)


def trail(server: IdpServer, username: str, app: str, events: tuple[str, ...] = ("signin",)) -> list[Row]:
    """The person's rows of ``events``, oldest first, as (event, application, result, reason, detail); ``app``
    reads as APP, so that the trail of a SAML SP and of a client compare."""
    rows = reversed(server.audit_rows(username=username))
    return [
        (r["event"], APP if r["sp_entity_id"] == app else r["sp_entity_id"], r["result"], r["reason"], r["detail"])
        for r in rows
        if r["event"] in events
    ]


def code_flow(rp: Rp, browser: Browser) -> None:
    """A code flow up to a token, which the browser's SSO session suffices for (no password is typed)."""
    client, url, verifier, _ = start(rp)
    token(rp, client, verifier, authorize(browser, url))


def token(rp: Rp, client: OAuth2Client, verifier: str, callback: str | Page) -> None:
    """The client's token request with the code its callback got (the browser must have got there)."""
    assert isinstance(callback, str), f"{callback.status} {callback.url}\n{callback.html[:800]}"
    assert client.fetch_token(rp.config["token_endpoint"], authorization_response=callback, code_verifier=verifier)


def refusal(page: Page) -> str | None:
    """The reason our error page gives (its data-reason)."""
    error = page.doc().get_element_by_id("error", None)
    return None if error is None else error.get("data-reason")


@pytest.fixture
def ad(samba_dc) -> Iterator[AdAdmin]:
    with AdAdmin(samba_dc) as admin:
        yield admin


def _person(ad: AdAdmin) -> tuple[str, str]:
    """A person of this test only, with a mailbox address of the emulator's domain: (username, DN)."""
    username = "oaud" + secrets.token_hex(3)
    return username, ad.add_user(username, PASSWORD, mail=f"{username}@{REALM}")


@pytest.fixture(scope="module")
def rp(idp_server: IdpServer) -> Rp:
    return _add_client(idp_server)


def test_a_password_sign_in_for_a_client_is_one_password_row_naming_it_as_for_an_sp(
    idp_server: IdpServer, rp: Rp, ad: AdAdmin
) -> None:
    (at_sp, _), (at_client, _) = _person(ad), _person(ad)
    sp = idp_server.sps["webmail"]
    saml = Browser()
    sp.consume(*saml.saml_post(saml.login(saml.get(sp.redirect_login_url()), at_sp, PASSWORD)))
    sp.consume(*saml.saml_post(saml.get(sp.redirect_login_url())))  # the same session once more: no password

    oidc = Browser()
    client, url, verifier, _ = start(rp)
    form = authorize(oidc, url)
    assert isinstance(form, Page) and form.is_login, form
    assert form.text_of("service") == "to continue to Audit App"  # the form knows whom the person signs in to
    action, fields = form.form()
    fields.update(username=at_client, password=PASSWORD)
    token(rp, client, verifier, follow(oidc, oidc.http.post(action, data=fields, follow_redirects=False)))
    code_flow(rp, oidc)

    expected = [("signin", APP, "success", "password", None), ("signin", APP, "success", "sso_session", None)]
    assert trail(idp_server, at_client, ENTITY) == trail(idp_server, at_sp, sp.entity_id) == expected
    issued = idp_server.audit_rows(event="oidc_code_issued", username=at_client, sp_entity_id=ENTITY)
    assert [r["result"] for r in issued] == ["success", "success"]


# ---- the second-factor pages and a refusal on the way ---------------------------------------------------------


@dataclass
class Strict:
    server: IdpServer
    sp: IndependentSp
    rp: Rp
    emulator: RunningEmulator
    mfa_group: str


@pytest.fixture(scope="module")
def strict(samba_dc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Strict]:
    """An IdP that asks the members of one group for a second factor and makes every person's mailbox at sign-in
    (JIT for every SP and client) under on_failure = "deny", the Alibaba Mail emulator as the mail API; one SAML
    SP and one client ([mfa] and [provisioning] are settings of the whole IdP)."""
    admin = AdAdmin(samba_dc)
    root = tmp_path_factory.mktemp("oidc-audit-idp")
    port = free_port()
    config = base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings())
    config["mfa"] = {"required_groups": [MFA_GROUP]}
    config["provisioning"] = {"provider": "alimail", "jit_timeout": 2.0, "on_failure": "deny"}
    try:
        group = admin.add_group(MFA_GROUP)
        with run_emulator(mail_domain=REALM, rate_limit=None) as emulator:
            config["provisioning.alimail"] = alimail_config(emulator, 2.0)
            server = serve_idp(prepare_idp(root, config), port, workers=1)
            try:
                yield Strict(server, register_sp(server, "audit", SpPolicy()), _add_client(server), emulator, group)
            finally:
                server.stop()
    finally:
        admin.undo()


def _mfa_person(ad: AdAdmin, strict: Strict) -> str:
    username, dn = _person(ad)
    ad.add_member(strict.mfa_group, dn)
    return username


def _next_code(secret: str) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30)  # the enrolment used up the current step's code


def test_the_second_factor_pages_on_the_way_write_for_a_client_what_they_write_for_an_sp(
    strict: Strict, ad: AdAdmin
) -> None:
    events = ("signin", "mfa", "mfa_enrolled")
    at_sp, at_client = _mfa_person(ad, strict), _mfa_person(ad, strict)

    # At the SP: enrolment at the first sign-in, the code at the next one (another browser).
    browser, sp = Browser(), strict.sp
    enrol = browser.login(browser.get(sp.redirect_login_url()), at_sp, PASSWORD)
    assert enrol.url.startswith(f"{strict.server.base_url}/mfa/enrol"), enrol.url
    secret = (enrol.text_of("secret") or "").replace(" ", "")
    codes = browser.submit(enrol, "mfa-enrol", {"code": pyotp.TOTP(secret).now()})
    sp.consume(*browser.saml_post(browser.get(_continue(codes))))
    browser = Browser()
    form = browser.login(browser.get(sp.redirect_login_url()), at_sp, PASSWORD)
    sp.consume(*browser.saml_post(browser.submit(form, "mfa-verify", {"code": _next_code(secret)})))

    # At the client, the same two.
    browser = Browser()
    client, url, verifier, _ = start(strict.rp)
    enrol = authorize(browser, url, PASSWORD, at_client)
    assert isinstance(enrol, Page) and enrol.url.startswith(f"{strict.server.base_url}/mfa/enrol"), enrol
    secret = (enrol.text_of("secret") or "").replace(" ", "")
    codes = browser.submit(enrol, "mfa-enrol", {"code": pyotp.TOTP(secret).now()})
    token(strict.rp, client, verifier, follow(browser, browser.http.get(_continue(codes), follow_redirects=False)))
    browser = Browser()
    client, url, verifier, _ = start(strict.rp)
    form = authorize(browser, url, PASSWORD, at_client)
    assert isinstance(form, Page) and form.url.startswith(f"{strict.server.base_url}/mfa?"), form
    action, fields = form.form("mfa-verify")
    fields["code"] = _next_code(secret)
    token(strict.rp, client, verifier, follow(browser, browser.http.post(action, data=fields, follow_redirects=False)))

    saml_trail = trail(strict.server, at_sp, sp.entity_id, events)
    oidc_trail = trail(strict.server, at_client, ENTITY, events)
    assert oidc_trail == saml_trail
    signins = [row for row in oidc_trail if row[0] == "signin"]
    assert len(signins) == 2 and {row[1:3] for row in signins} == {(APP, "success")}  # one each, for the client
    assert ("mfa", APP, "success", "totp", None) in oidc_trail


def test_a_mailbox_that_cannot_be_made_under_deny_is_one_refused_row_for_the_client(
    strict: Strict, ad: AdAdmin
) -> None:
    (at_sp, _), (at_client, _) = _person(ad), _person(ad)
    strict.emulator.faults.fail_next(10_000, status=503)
    try:
        browser = Browser()
        refused = browser.login(browser.get(strict.sp.redirect_login_url()), at_sp, PASSWORD)
        _, url, _, _ = start(strict.rp)
        page = authorize(Browser(), url, PASSWORD, at_client)
    finally:
        strict.emulator.faults.clear()
    assert (refused.status, refusal(refused)) == (403, "provisioning_failed")
    assert isinstance(page, Page), f"the client got a code: {page}"
    assert (page.status, refusal(page)) == (403, "provisioning_failed")

    # The password was right, but no row says the person signed in: one refusal, for the client, as for the SP.
    [saml_row] = trail(strict.server, at_sp, strict.sp.entity_id)
    [oidc_row] = trail(strict.server, at_client, ENTITY)
    assert oidc_row[:4] == saml_row[:4] == ("signin", APP, "failure", "provisioning_failed")
    assert not strict.server.audit_rows(event="oidc_code_issued", username=at_client, result="success")


def _continue(page: Page) -> str:
    return urljoin(page.url, page.doc().get_element_by_id("continue").get("href"))
