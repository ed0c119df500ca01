"""OpenID Connect end to end: the IdP under gunicorn against the run's Samba AD DC, and Authlib's own OAuth 2.0
client as the relying party (our server code is ours; the client side, PKCE, the token requests and the ID
token's verification against our JWKS are the library's). Each refusal is checked by the OAuth error the
client reads."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pyotp
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidClaimError
from joserfc.jwk import KeySet
from sqlalchemy import update

from idp.demo.samba_dc import DEMO_USERS
from idp.oidc.tokens import digest
from idp.settings import load_settings
from idp.store.db import Database
from idp.store.models import OidcTokenRow
from tests.e2e.ad_admin import BASE_DN, AdAdmin
from tests.e2e.browser import Browser, Page, admin_browser
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp

pytestmark = pytest.mark.ad

ALICE = next(u for u in DEMO_USERS if u.username == "alice")
REDIRECT = "http://127.0.0.1:9/oidc/callback"
"""Never connected to: the test reads the code from the Location header the IdP answers with."""
SCOPE = "openid profile email groups"
ENTITY = "urn:ad-sso-bridge:oidc:e2e-app"


@dataclass(frozen=True)
class Rp:
    client_id: str
    secret: str
    config: dict
    scope: str = SCOPE

    def client(self) -> OAuth2Client:
        return OAuth2Client(
            self.client_id, self.secret, scope=self.scope, redirect_uri=REDIRECT, code_challenge_method="S256"
        )

    def keys(self) -> KeySet:
        return KeySet.import_key_set(httpx.get(self.config["jwks_uri"], timeout=10).json())


@pytest.fixture(scope="module")
def rp(idp_server) -> Rp:
    added = idp_server.idp("oidc", "client", "add", "e2e-app", "--name", "E2E App", "--redirect-uri", REDIRECT)
    secret = re.search(r"client secret: (\S+)", added.stdout)
    assert secret, added.stdout
    assert secret[1] not in idp_server.idp("oidc", "client", "list").stdout  # shown once, stored hashed
    config = httpx.get(idp_server.base_url + "/.well-known/openid-configuration", timeout=10).json()
    assert config["issuer"] == idp_server.base_url
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["response_types_supported"] == ["code"]
    return Rp("e2e-app", secret[1], config)


def authorize(browser: Browser, url: str, password: str | None = None, username: str = "alice") -> str | Page:
    """Follow the IdP's redirects as a browser would, typing the password if the form is shown; the
    callback URL the IdP sends the browser to, or the page it stopped at."""
    return follow(browser, browser.http.get(url, follow_redirects=False, timeout=30), password, username)


def follow(browser: Browser, resp: httpx.Response, password: str | None = None, username: str = "alice") -> str | Page:
    while True:
        if resp.status_code in (302, 303):
            target = urljoin(str(resp.url), resp.headers["location"])
            if target.startswith(REDIRECT):
                return target
            resp = browser.http.get(target, follow_redirects=False, timeout=30)
            continue
        page = Page(str(resp.url), resp.status_code, resp.text)
        refresh = page.doc().xpath("//meta[@http-equiv='refresh']/@content")
        if refresh:  # the page that opens the next URL after a posted form (idp.web.signin_flow.go_on)
            resp = browser.http.get(urljoin(page.url, str(refresh[0]).split("url=", 1)[1]), follow_redirects=False)
            continue
        if not (page.is_login and password):
            return page
        action, fields = page.form()
        fields.update(username=username, password=password)
        password = None
        resp = browser.http.post(action, data=fields, follow_redirects=False, timeout=30)


def start(rp: Rp, **extra: str) -> tuple[OAuth2Client, str, str, str]:
    """(client, authorization URL, code verifier, nonce)."""
    client = rp.client()
    verifier, nonce = generate_token(48), generate_token(16)
    url, _ = client.create_authorization_url(
        rp.config["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **extra
    )
    return client, url, verifier, nonce


def id_token_claims(rp: Rp, token: dict, nonce: str) -> CodeIDToken:
    """The client's check of the ID token: signature against the JWKS, issuer, audience, nonce, at_hash."""
    decoded = jwt.decode(token["id_token"], rp.keys(), algorithms=["RS256"])
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        options={"iss": {"value": rp.config["issuer"]}, "aud": {"values": [rp.client_id]}},
        params={"nonce": nonce, "access_token": token["access_token"]},
    )
    claims.validate()
    return claims


@pytest.fixture(scope="module")
def alice(idp_server, rp) -> tuple[Browser, dict, str]:
    """alice signed in once through the code flow: her browser, the token response, the nonce."""
    browser = Browser()
    client, url, verifier, nonce = start(rp)
    callback = authorize(browser, url, ALICE.password)
    assert isinstance(callback, str), callback
    token = client.fetch_token(rp.config["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    return browser, token, nonce


def test_code_flow_gives_a_verified_id_token_and_userinfo_from_ad(idp_server, rp, alice):
    _, token, nonce = alice
    claims = id_token_claims(rp, token, nonce)
    assert claims["email"] == ALICE.mail
    assert claims["given_name"] == ALICE.given_name and claims["family_name"] == ALICE.surname
    assert "Mail Users" in claims["groups"]  # nested, through Sales: the same groups SAML releases
    assert re.fullmatch(r"[0-9a-f-]{36}", claims["sub"])  # objectGUID
    kid = jwt.decode(token["id_token"], rp.keys(), algorithms=["RS256"]).header["kid"]
    assert kid in {k["kid"] for k in rp.keys().as_dict()["keys"]}

    client = rp.client()
    client.token = token
    info = client.get(rp.config["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"] and info["email"] == ALICE.mail
    introspected = client.introspect_token(rp.config["introspection_endpoint"], token=token["access_token"]).json()
    assert introspected["active"] is True and introspected["username"] == "alice"
    assert idp_server.audit_rows(event="oidc_code_issued", username="alice", result="success")
    assert idp_server.audit_rows(event="signin", username="alice", sp_entity_id=ENTITY)
    listed = admin_browser(idp_server.base_url).get(idp_server.base_url + "/admin/sps").text_of("oidc-e2e-app")
    assert listed is not None and "E2E App" in listed and REDIRECT in listed


def test_a_saml_session_signs_in_to_oidc_without_a_password(idp_server, rp):
    sp = idp_server.sps["webmail"]
    browser = Browser()
    page = browser.get(sp.redirect_login_url())
    sp.consume(*browser.saml_post(browser.login(page, "alice", ALICE.password)))
    client, url, verifier, _ = start(rp)
    callback = authorize(browser, url)  # no password given: the form must not be shown
    assert isinstance(callback, str), callback
    token = client.fetch_token(rp.config["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    assert token["id_token"]


def test_refresh_rotates_and_a_replayed_refresh_token_revokes_its_family(idp_server, rp, alice):
    browser, _, _ = alice
    client, url, verifier, _ = start(rp)
    callback = authorize(browser, url)
    first = client.fetch_token(rp.config["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    second = client.refresh_token(rp.config["token_endpoint"], refresh_token=first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get(rp.config["userinfo_endpoint"]).status_code == 200

    with pytest.raises(OAuthError) as replayed:
        client.refresh_token(rp.config["token_endpoint"], refresh_token=first["refresh_token"])
    assert replayed.value.error == "invalid_grant"
    with pytest.raises(OAuthError) as family:  # the thief's or the client's: neither may go on
        client.refresh_token(rp.config["token_endpoint"], refresh_token=second["refresh_token"])
    assert family.value.error == "invalid_grant"
    client.token = second
    assert client.get(rp.config["userinfo_endpoint"]).status_code == 401
    assert idp_server.audit_rows(event="oidc_refresh_reused", username="alice")


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_authorization_requests_the_provider_refuses(rp, alice):
    browser, _, _ = alice
    _, url, _, _ = start(rp, redirect_uri=REDIRECT + "/elsewhere")
    wrong_uri = authorize(browser, url)
    assert isinstance(wrong_uri, Page) and wrong_uri.status == 400  # never sent to an unregistered address

    challenge = create_s256_code_challenge(generate_token(48))
    base = {"client_id": rp.client_id, "redirect_uri": REDIRECT, "scope": SCOPE, "state": "s1"}
    cases = {
        "plain PKCE": {**base, "response_type": "code", "code_challenge": "x" * 43, "code_challenge_method": "plain"},
        "no PKCE": {**base, "response_type": "code"},
        "PKCE without a method": {**base, "response_type": "code", "code_challenge": challenge},
        "implicit": {**base, "response_type": "token", "code_challenge": challenge, "code_challenge_method": "S256"},
    }
    for case, params in cases.items():
        answer = authorize(browser, rp.config["authorization_endpoint"] + "?" + urlencode(params))
        assert isinstance(answer, str), case
        error = _query(answer)
        expected = "unsupported_response_type" if case == "implicit" else "invalid_request"
        assert error.get("error") == expected and error.get("state") == "s1", (case, error)

    _, url, _, _ = start(rp, prompt="none")
    silent = authorize(Browser(), url)  # nobody signed in, and the client asked for no login page
    assert isinstance(silent, str) and _query(silent)["error"] == "login_required"


def test_token_requests_the_provider_refuses(idp_server, rp, alice):
    browser, _, _ = alice
    endpoint = rp.config["token_endpoint"]
    for verifier, error in ((generate_token(48), "invalid_grant"), ("", "invalid_request")):
        client, url, _, _ = start(rp)
        callback = authorize(browser, url)
        with pytest.raises(OAuthError) as refused:
            client.fetch_token(endpoint, authorization_response=callback, code_verifier=verifier or None)
        assert refused.value.error == error, verifier

    client, url, verifier, _ = start(rp)
    callback = authorize(browser, url)
    client.fetch_token(endpoint, authorization_response=callback, code_verifier=verifier)
    with pytest.raises(OAuthError) as reused:
        client.fetch_token(endpoint, authorization_response=callback, code_verifier=verifier)
    assert reused.value.error == "invalid_grant"
    refused = idp_server.audit_rows(event="oidc_token_issued", result="refused", sp_entity_id=ENTITY)
    assert any("invalid_grant" in (r["detail"] or "") for r in refused)


def test_the_client_detects_a_wrong_nonce_and_a_tampered_id_token(rp, alice):
    _, token, nonce = alice
    with pytest.raises(InvalidClaimError):
        id_token_claims(rp, token, nonce + "-not-mine")
    header, payload, signature = token["id_token"].split(".")
    forged = payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB")
    with pytest.raises(BadSignatureError):
        id_token_claims(rp, {**token, "id_token": f"{header}.{forged}.{signature}"}, nonce)


def test_an_expired_access_token_is_refused(idp_server, rp, alice):
    browser, _, _ = alice
    client, url, verifier, _ = start(rp)
    token = client.fetch_token(
        rp.config["token_endpoint"], authorization_response=authorize(browser, url), code_verifier=verifier
    )
    db = Database(load_settings(idp_server.config).database_url)
    try:
        with db.session() as s:  # the token's lifetime has passed (the IdP reads the expiry it stored)
            s.execute(
                update(OidcTokenRow)
                .where(OidcTokenRow.access_hash == digest(token["access_token"]))
                .values(access_expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        db.dispose()
    answer = client.get(rp.config["userinfo_endpoint"])
    assert answer.status_code == 401 and "invalid_token" in answer.headers["www-authenticate"]
    introspected = client.introspect_token(rp.config["introspection_endpoint"], token=token["access_token"]).json()
    assert introspected == {"active": False}


def _fresh_sign_in(rp: Rp, browser: Browser) -> tuple[OAuth2Client, dict]:
    client, url, verifier, _ = start(rp)
    callback = authorize(browser, url, ALICE.password)
    assert isinstance(callback, str), callback
    return client, client.fetch_token(
        rp.config["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )


def test_rp_initiated_logout_ends_the_session_and_its_tokens(idp_server, rp):
    browser = Browser()
    client, token = _fresh_sign_in(rp, browser)
    logout = rp.config["end_session_endpoint"]
    forged = browser.http.get(logout, params={"post_logout_redirect_uri": REDIRECT}, follow_redirects=False)
    assert forged.status_code == 400  # no id_token_hint: nobody signs anyone out with a link

    params = {"id_token_hint": token["id_token"], "post_logout_redirect_uri": REDIRECT, "state": "bye"}
    answer = browser.http.get(logout, params=params, follow_redirects=False)
    assert answer.status_code == 303 and _query(answer.headers["location"]) == {"state": "bye"}
    with pytest.raises(OAuthError) as refused:
        client.refresh_token(rp.config["token_endpoint"], refresh_token=token["refresh_token"])
    assert refused.value.error == "invalid_grant"
    assert client.get(rp.config["userinfo_endpoint"]).status_code == 401
    again = authorize(browser, start(rp)[1])
    assert isinstance(again, Page) and again.is_login  # signed out: the password is asked again


def test_signing_out_at_the_idp_ends_the_oidc_tokens_of_the_session(idp_server, rp):
    browser = Browser()
    sp = idp_server.sps["webmail"]
    sp.consume(*browser.saml_post(browser.login(browser.get(sp.redirect_login_url()), "alice", ALICE.password)))
    client, token = _fresh_sign_in(rp, browser)
    action, fields = browser.get(idp_server.base_url + "/").form()
    browser.http.post(action, data=fields, follow_redirects=False)  # on to webmail's single logout: not followed
    with pytest.raises(OAuthError) as refused:
        client.refresh_token(rp.config["token_endpoint"], refresh_token=token["refresh_token"])
    assert refused.value.error == "invalid_grant"


MFA_USER, MFA_PASSWORD, MFA_GROUP = "oidc.mfa", "Passw0rd!Oidc1", "OIDC MFA Users"


@pytest.fixture(scope="module")
def mfa_idp(samba_dc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IdpServer, AdAdmin, str, Rp]]:
    """An IdP whose [mfa] group (empty for now) asks its members for a second factor, and which asks AD about
    a signed-in person at every sign-in ([mfa] is a setting of the whole IdP, so this is an IdP of its own)."""
    ad = AdAdmin(samba_dc)
    root = tmp_path_factory.mktemp("oidc-mfa-idp")
    port = free_port()
    config = base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings())
    config["mfa"] = {"required_groups": [MFA_GROUP]}
    config["login"] = {"recheck_seconds": 0}
    server = None
    try:
        ad.add_user(MFA_USER, MFA_PASSWORD, mail=f"{MFA_USER}@corp.example.com")
        group = ad.add_group(MFA_GROUP)
        server = serve_idp(prepare_idp(root, config), port, workers=1)
        added = server.idp("oidc", "client", "add", "e2e-app", "--name", "E2E App", "--redirect-uri", REDIRECT)
        secret = re.search(r"client secret: (\S+)", added.stdout)
        assert secret, added.stdout
        discovery = httpx.get(server.base_url + "/.well-known/openid-configuration", timeout=10).json()
        yield server, ad, group, Rp("e2e-app", secret[1], discovery)
    finally:
        if server is not None:
            server.stop()
        ad.undo()


def test_a_second_factor_asked_at_authorization_takes_the_code_and_goes_on_to_the_client(mfa_idp):
    server, ad, group, rp = mfa_idp
    enrolling, verifying = Browser(), Browser()
    for browser in (enrolling, verifying):  # signed in while no group asks them for a second factor
        assert isinstance(authorize(browser, start(rp)[1], MFA_PASSWORD, MFA_USER), str)
    ad.add_member(group, f"CN={MFA_USER},CN=Users,{BASE_DN}")

    client, url, verifier, _ = start(rp)
    enrol = authorize(enrolling, url)  # the session is reused: AD now says a second factor is needed
    assert isinstance(enrol, Page) and enrol.url.startswith(f"{server.base_url}/mfa/enrol"), enrol
    secret = (enrol.text_of("secret") or "").replace(" ", "")
    codes_page = enrolling.submit(enrol, "mfa-enrol", {"code": pyotp.TOTP(secret).now()})
    callback = follow(enrolling, enrolling.http.get(_continue(codes_page), follow_redirects=False))
    assert isinstance(callback, str), callback
    assert client.fetch_token(rp.config["token_endpoint"], authorization_response=callback, code_verifier=verifier)

    client, url, verifier, _ = start(rp)
    form = authorize(verifying, url)
    assert isinstance(form, Page) and form.url.startswith(f"{server.base_url}/mfa?"), form
    action, fields = form.form("mfa-verify")
    fields["code"] = pyotp.TOTP(secret).at(time.time() + 30)  # the enrolment used up the current step's code
    callback = follow(verifying, verifying.http.post(action, data=fields, follow_redirects=False))
    assert isinstance(callback, str), callback
    assert client.fetch_token(rp.config["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    assert server.audit_rows(event="mfa", username=MFA_USER, reason="totp")


def _continue(page: Page) -> str:
    return urljoin(page.url, page.doc().get_element_by_id("continue").get("href"))
