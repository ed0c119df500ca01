"""Passkeys end to end in headless Chromium, whose DevTools protocol lends a virtual authenticator (a platform
passkey with user verification): alice adds one when an SP that requires a second factor first asks, signs out,
signs in with password and passkey, and the independent SP (python3-saml, behind a real ACS on loopback) reads
REFEDS MFA in the assertion; a passkey she removed is refused, the one she kept is not.

WebAuthn needs a secure context and a domain as RP ID, so this IdP's base_url names ``localhost``."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from idp.demo.samba_dc import DEMO_USERS
from idp.settings import load_settings
from idp.sps.policy import SpPolicy
from idp.sps.registry import SpRegistry
from idp.store.db import Database
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp

pytestmark = [pytest.mark.ad, pytest.mark.browser]

ALICE = next(u for u in DEMO_USERS if u.username == "alice")
REFEDS_MFA = "https://refeds.org/profile/mfa"
WAIT = 20


class Acs:
    """The SP's assertion consumer service on loopback: keeps each posted form for the test to check."""

    def __init__(self) -> None:
        self.posted: list[dict[str, str]] = []
        self._server = make_server("127.0.0.1", 0, self, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/passkey/acs"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __call__(self, environ, start_response):
        request = Request(environ)
        if request.method == "POST":
            self.posted.append(dict(request.form))
        return Response(f'<p id="acs">{len(self.posted)}</p>', mimetype="text/html")(environ, start_response)

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture(scope="module")
def acs() -> Iterator[Acs]:
    consumer = Acs()
    yield consumer
    consumer.stop()


@pytest.fixture(scope="module")
def server(samba_dc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdpServer]:
    root = tmp_path_factory.mktemp("webauthn-idp")
    port = free_port()
    config = base_config(root, f"http://localhost:{port}", samba_dc.ldap_settings())
    config["mfa"] = {"remember_days": 0}
    server = serve_idp(prepare_idp(root, config), port, workers=2)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sp(server: IdpServer, acs: Acs) -> IndependentSp:
    """An SP that requires a second factor, added with `idp sp add` from its metadata."""
    sp = IndependentSp(
        entity_id=f"https://passkey-{uuid.uuid4().hex[:8]}.sp.test/saml",
        acs_url=acs.url,
        sign_requests=False,
        idp_metadata_xml=server.metadata(),
    )
    path = server.root / "passkey-sp.xml"
    path.write_bytes(sp.metadata_xml())
    server.idp("sp", "add", str(path))
    settings = load_settings(server.config)
    db = Database(settings.database_url)
    try:
        SpRegistry(settings.metadata.dir, db, settings.sp_defaults).set_policy(sp.entity_id, SpPolicy(mfa="required"))
    finally:
        db.dispose()
    return sp


def test_alice_signs_in_with_a_passkey_and_a_removed_one_is_refused(server, sp, acs, chrome):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base = f"http://localhost:{urlsplit(server.base_url).port}"

    def wait_for(element_id: str):
        return WebDriverWait(chrome, WAIT).until(ec.presence_of_element_located((By.ID, element_id)))

    def click(element_id: str) -> None:
        wait_for(element_id).click()

    def password_at_sp() -> None:
        chrome.get(sp.redirect_login_url())
        wait_for("username").send_keys(ALICE.username)
        chrome.find_element(By.NAME, "password").send_keys(ALICE.password)
        chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    def class_ref_at_sp() -> str:
        wait_for("acs")
        xml = sp.consume(acs.url, acs.posted[-1]).response_xml
        start = xml.index("AuthnContextClassRef>") + len("AuthnContextClassRef>")
        return xml[start : xml.index("<", start)]

    def sign_out() -> None:
        chrome.get(base + "/")
        button = chrome.find_element(By.CSS_SELECTOR, "form[action='/logout'] button")
        button.click()
        # On to the SP's single-logout address: the sign-out POST's page opens it (a redirect would be held
        # back by our page's form-action), so the browser leaves the IdP.
        WebDriverWait(chrome, WAIT).until(lambda d: not d.current_url.startswith(base))

    cdp = chrome.execute_cdp_cmd
    cdp("WebAuthn.enable", {})
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
    }
    first = cdp("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]

    # Enrolment at the first sign-in the SP's policy asks a factor for: a passkey instead of an app.
    password_at_sp()
    click("passkey-link")
    click("passkey-button")
    assert len(wait_for("recovery-codes").find_elements(By.TAG_NAME, "li")) == 10
    click("continue")
    assert class_ref_at_sp() == REFEDS_MFA
    [created] = cdp("WebAuthn.getCredentials", {"authenticatorId": first})["credentials"]
    sign_out()

    # Password, then the passkey: the SP is told REFEDS MFA.
    password_at_sp()
    click("passkey-button")
    assert class_ref_at_sp() == REFEDS_MFA
    [used] = cdp("WebAuthn.getCredentials", {"authenticatorId": first})["credentials"]
    assert used["signCount"] > created["signCount"]

    # A second passkey on another authenticator, then the first one removed on the self-service page.
    cdp("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": first})
    second = cdp("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]
    chrome.get(base + "/mfa/factors")
    click("passkey-link")
    click("passkey-button")
    rows = WebDriverWait(chrome, WAIT).until(
        lambda d: (found := d.find_elements(By.CSS_SELECTOR, "#factors tbody tr")) and len(found) == 2 and found
    )
    assert all("Passkey" in row.text for row in rows)
    rows[0].find_element(By.NAME, "remove").click()
    WebDriverWait(chrome, WAIT).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#factors tbody tr")) == 1)
    sign_out()

    # The removed passkey, still on an authenticator, is refused; the kept one signs alice in.
    # Back on an authenticator (as a server-side credential: the kept passkey is alice's resident one there).
    removed = {k: used[k] for k in ("credentialId", "rpId", "privateKey", "signCount")}
    cdp("WebAuthn.addCredential", {"authenticatorId": second, "credential": {**removed, "isResidentCredential": False}})
    posted = len(acs.posted)
    password_at_sp()
    wait_for("passkey-button")
    removed_id = base64.urlsafe_b64encode(base64.b64decode(used["credentialId"])).decode().rstrip("=")
    chrome.execute_script(
        "const b = document.getElementById('passkey-button'); const o = JSON.parse(b.dataset.options);"
        "o.allowCredentials = [{type: 'public-key', id: arguments[0]}]; b.dataset.options = JSON.stringify(o);",
        removed_id,
    )
    click("passkey-button")
    assert wait_for("error").text
    assert len(acs.posted) == posted
    [refused] = server.audit_rows(event="signin", username=ALICE.username, result="failure")
    assert refused["reason"] == "mfa_wrong_passkey"
    click("passkey-button")
    assert class_ref_at_sp() == REFEDS_MFA
    assert len(server.audit_rows(event="mfa", username=ALICE.username, reason="passkey")) == 2
    assert [r["result"] for r in server.audit_rows(event="mfa_enrolled", username=ALICE.username)] == ["success"] * 2
