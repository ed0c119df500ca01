"""A signing-key rollover on a running IdP (gunicorn, two workers) with python3-saml as the SPs.

One SP re-imports our metadata after the next key is added, as the console tells admins to; it signs in at
every step. Another keeps the metadata it imported before the rollover; it keeps working until the switch and
is refused afterwards, which proves that signing really moved. Steps are taken on the admin page and with
`idp keys rotate`, and every worker serves the new state without a restart.

The rollover changes the IdP's keys, so this test starts its own IdP instead of the shared one."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from lxml import etree

from idp.demo.samba_dc import DEMO_USERS
from idp.keys.keyring import Keyring
from idp.settings import load_settings
from idp.web.admin.dashboard import KEY_EXPIRY_WARNING
from tests.e2e.browser import Browser, Page, admin_browser
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, LoginResult, write_metadata
from tests.e2e.test_oidc import REDIRECT, Rp, authorize, id_token_claims, start

pytestmark = pytest.mark.ad

ALICE = next(u for u in DEMO_USERS if u.username == "alice")
WORKERS = 2
MD = {"md": "urn:oasis:names:tc:SAML:2.0:metadata", "ds": "http://www.w3.org/2000/09/xmldsig#"}


@pytest.fixture
def own_idp(samba_dc, tmp_path: Path) -> Iterator[IdpServer]:
    port = free_port()
    config = prepare_idp(tmp_path, base_config(tmp_path, f"http://127.0.0.1:{port}", samba_dc.ldap_settings()))
    server = serve_idp(config, port, workers=WORKERS)
    try:
        yield server
    finally:
        server.stop()


def _register(server: IdpServer, name: str) -> IndependentSp:
    sp = IndependentSp(
        entity_id=f"https://{name}.rollover.test/saml",
        acs_url=f"http://127.0.0.1:9/{name}/acs",
        sign_requests=False,
        idp_metadata_xml=server.metadata(),
    )
    folder = server.root / "sp-metadata"
    folder.mkdir(exist_ok=True)
    server.idp("sp", "add", str(write_metadata(sp, folder)))
    return sp


def _sign_in(sp: IndependentSp, browser: Browser | None = None) -> LoginResult:
    browser = browser or Browser()
    page = browser.get(sp.redirect_login_url())
    return sp.consume(*browser.saml_post(browser.login(page, "alice", ALICE.password)))


def _signing_certs(metadata: str | bytes) -> list[str]:
    tree = etree.fromstring(metadata.encode() if isinstance(metadata, str) else metadata)
    found = tree.xpath(
        "//md:IDPSSODescriptor/md:KeyDescriptor[@use='signing']/ds:KeyInfo/ds:X509Data/ds:X509Certificate/text()",
        namespaces=MD,
    )
    return ["".join(c.split()) for c in found]


def _published(server: IdpServer) -> list[str]:
    """Base64 bodies of the certificates the keyring publishes now, the active one first (from the files)."""
    state = Keyring.for_settings(load_settings(server.config)).state()
    return ["".join(pair.cert_file.read_text().strip().splitlines()[1:-1]) for _, pair in state.published()]


def _reloads(server: IdpServer) -> int:
    return server.log.read_text().count("SAML server loaded")


def _every_worker_publishes(server: IdpServer, expected: list[str]) -> None:
    """Ask until every worker has reloaded once since the step (each logs it), with a fresh connection each
    time so that the workers share the requests; every answer must already show the new certificates."""
    start = _reloads(server)
    for _ in range(300):
        assert _signing_certs(httpx.get(server.base_url + "/saml/metadata", timeout=10).text) == expected
        if _reloads(server) - start >= WORKERS:
            return
        time.sleep(0.02)
    pytest.fail(f"only {_reloads(server) - start} of {WORKERS} workers reloaded the keyring")


def _keys_page(browser: Browser, server: IdpServer) -> Page:
    page = browser.get(server.base_url + "/admin/keys")
    assert page.status == 200, page.html[:500]
    return page


def _roles(page: Page) -> list[str]:
    return page.doc().xpath("//table[@id='published-keys']/tbody/tr/@data-role")


def _flash(page: Page) -> str:
    return " ".join(t.strip() for t in page.doc().xpath("//p[contains(@class, 'flash')]/text()"))


def test_sign_in_keeps_working_through_a_rollover_in_every_worker(own_idp: IdpServer) -> None:
    server = own_idp
    fresh, stale = _register(server, "fresh"), _register(server, "stale")
    original = _published(server)
    assert _signing_certs(server.metadata()) == original and len(original) == 1
    assert _sign_in(fresh).nameid == ALICE.mail and _sign_in(stale).nameid == ALICE.mail

    # ---- 1. add, on the admin page ----
    admin = admin_browser(server.base_url)
    page = _keys_page(admin, server)
    assert _roles(page) == ["active"]
    assert page.form_values("rollover-step")[1][-1] == ("step", "add")
    assert "re-import" in page.text_of("step-explanation")
    page = admin.submit(page, "rollover-step")
    assert page.status == 200 and page.url == server.base_url + "/admin/keys"
    assert "re-import" in _flash(page)
    assert _roles(page) == ["active", "next"]
    after_add = _published(server)
    assert after_add[0] == original[0] and len(after_add) == 2
    _every_worker_publishes(server, after_add)
    row = server.audit_rows(event="key_rollover_add")[0]
    assert (row["result"], row["username"], row["client_ip"]) == ("success", "anna", "127.0.0.1")
    detail = json.loads(row["detail"])
    assert detail["before"] == {"active": page.text_of("active-fingerprint")}
    assert set(detail["after"]) == {"active", "next"} and "PRIVATE" not in row["detail"]

    download = admin.http.get(server.base_url + "/admin/keys/metadata.xml", timeout=10)
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert _signing_certs(download.content) == after_add
    pem = admin.http.get(server.base_url + "/admin/keys/next.pem", timeout=10)
    assert "".join(pem.text.strip().splitlines()[1:-1]) == after_add[1]
    assert "attachment" in pem.headers["Content-Disposition"]

    fresh.idp_metadata_xml = server.metadata()  # the SP admin re-imports our metadata, as the page asks
    assert _sign_in(fresh).nameid == ALICE.mail
    assert _sign_in(stale).nameid == ALICE.mail  # the active key still signs
    stale_switch_form = _keys_page(admin, server)  # a second admin leaves the page open at "switch"

    # ---- 2. switch, with the CLI ----
    done = server.idp("keys", "rotate", "switch")
    assert "PRIVATE KEY" not in done.stdout + done.stderr
    after_switch = _published(server)
    assert after_switch == [after_add[1], after_add[0]]
    _every_worker_publishes(server, after_switch)
    row = server.audit_rows(event="key_rollover_switch")[0]
    assert row["result"] == "success" and row["username"].startswith("cli:")
    assert json.loads(row["detail"])["after"]["active"] == json.loads(row["detail"])["before"]["next"]

    for _ in range(WORKERS * 2):
        result = _sign_in(fresh)
        assert result.nameid == ALICE.mail
        assert after_switch[0] in "".join(result.response_xml.split())  # the new certificate signed it
    with pytest.raises(AssertionError, match="Signature validation failed"):
        _sign_in(stale)
    browser = Browser()
    signed_in = _sign_in(fresh, browser)
    r = browser.http.get(
        fresh.logout_url(
            name_id=signed_in.nameid, session_index=signed_in.session_index, nameid_format=signed_in.nameid_format
        ),
        follow_redirects=False,
        timeout=30,
    )
    fresh.validate_logout_response(r.headers["Location"])  # the Redirect binding's query signature moved too

    refused = admin.submit(stale_switch_form, "rollover-step")
    assert "no next key" in _flash(refused)
    assert _roles(refused) == ["active", "previous"]
    row = server.audit_rows(event="key_rollover_switch")[0]
    assert (row["result"], row["reason"], row["username"]) == ("refused", "no_next_key", "anna")

    # ---- 3. retire, on the admin page ----
    page = _keys_page(admin, server)
    assert page.form_values("rollover-step")[1][-1] == ("step", "retire")
    page = admin.submit(page, "rollover-step")
    assert _roles(page) == ["active"]
    assert _published(server) == [after_switch[0]]
    _every_worker_publishes(server, [after_switch[0]])
    assert not (server.root / "certs/idp.key").exists()  # the retired private key is deleted
    row = server.audit_rows(event="key_rollover_retire")[0]
    assert row["result"] == "success"
    assert json.loads(row["detail"])["after"] == {"active": page.text_of("active-fingerprint")}
    assert _sign_in(fresh).nameid == ALICE.mail
    with pytest.raises(AssertionError, match="Signature validation failed"):
        _sign_in(stale)

    shown = server.idp("keys", "show").stdout
    assert "[active]" in shown and "[previous]" not in shown and "idp keys rotate add" in shown
    admin.http.headers["Accept-Language"] = "zh-CN"
    assert "密钥轮换" in _keys_page(admin, server).html


def _oidc_sign_in(rp: Rp) -> dict:
    """A new browser through the code flow: the token response, its ID token verified with a fresh JWKS."""
    client, url, verifier, nonce = start(rp)
    callback = authorize(Browser(), url, ALICE.password)
    assert isinstance(callback, str), callback
    token = client.fetch_token(rp.config["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    id_token_claims(rp, token, nonce)
    return token


def _kid(token: dict) -> str:
    """The key the ID token names in its header (_oidc_sign_in has verified its signature)."""
    header = token["id_token"].split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def _every_worker_jwks(server: IdpServer, expected: int) -> dict:
    """The JWKS once every worker serves ``expected`` keys (fresh connections spread the asks over them)."""
    for _ in range(300):
        answers = [httpx.get(server.base_url + "/oidc/jwks", timeout=10).json() for _ in range(WORKERS * 4)]
        kids = {tuple(k["kid"] for k in a["keys"]) for a in answers}
        if len(kids) == 1 and len(answers[0]["keys"]) == expected:
            return answers[0]
        time.sleep(0.05)
    pytest.fail(f"the workers did not all publish {expected} keys")


def _kids(jwks: dict) -> list[str]:
    return [k["kid"] for k in jwks["keys"]]


def test_id_tokens_follow_the_rollover_and_a_client_cached_jwks_verifies_them(own_idp: IdpServer) -> None:
    """One rollover moves SAML and OIDC signing together: the next key is in the JWKS before it signs, so a
    client that fetched the JWKS after the first step verifies the tokens signed after the switch."""
    server = own_idp
    added = server.idp("oidc", "client", "add", "rolling", "--name", "Rolling", "--redirect-uri", REDIRECT)
    secret = re.search(r"client secret: (\S+)", added.stdout)
    assert secret, added.stdout
    config = httpx.get(server.base_url + "/.well-known/openid-configuration", timeout=10).json()
    rp = Rp("rolling", secret[1], config)
    [first] = _kids(_every_worker_jwks(server, 1))
    assert _kid(_oidc_sign_in(rp)) == first

    server.idp("keys", "rotate", "add")
    jwks = _every_worker_jwks(server, 2)
    assert _kids(jwks)[0] == first
    second = _kids(jwks)[1]
    cached = KeySet.import_key_set(jwks)  # what a client keeps until its cache expires
    assert _kid(_oidc_sign_in(rp)) == first  # published, not yet signing

    server.idp("keys", "rotate", "switch")
    assert _kids(_every_worker_jwks(server, 2)) == [second, first]
    for _ in range(WORKERS * 2):
        token = _oidc_sign_in(rp)
        assert jwt.decode(token["id_token"], cached, algorithms=["RS256"]).header["kid"] == second

    server.idp("keys", "rotate", "retire")
    assert _kids(_every_worker_jwks(server, 1)) == [second]
    assert _kid(_oidc_sign_in(rp)) == second


def test_the_keys_page_warns_well_before_the_certificate_expires(own_idp: IdpServer) -> None:
    server = own_idp
    admin = admin_browser(server.base_url)
    assert _keys_page(admin, server).text_of("expiry-warning") is None  # ten years left
    server.idp("keys", "rotate", "add", "--days", "20")
    server.idp("keys", "rotate", "switch")
    page = _keys_page(admin, server)
    warning = page.text_of("expiry-warning")
    assert warning and "rollover" in warning and page.text_of("active-days-left") in warning
    assert int(page.text_of("active-days-left")) < KEY_EXPIRY_WARNING.days
    assert page.form_values("rollover-step")[1][-1] == ("step", "retire")
