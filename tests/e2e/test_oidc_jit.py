"""Just-in-time mailbox provisioning at an OpenID Connect sign-in: `idp serve` (gunicorn) against the run's
Samba AD DC, the Alibaba Mail emulator over HTTP as the mail API, and Authlib's OAuth 2.0 client as the
relying party. The mail client is registered as an admin does (`idp oidc client add --preset alimail`) and
named in ``[provisioning] jit_sps`` by its entity id; a failing mail API gets what SAML JIT gets
(tests/e2e/test_jit_provisioning.py): under "allow" the sign-in goes on and the mailbox waits in the outbox,
under "deny" the sign-in is refused with a page saying why."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet
from ldap3 import MODIFY_REPLACE

from idp.demo.alimail_emulator import RunningEmulator, run_emulator
from idp.demo.samba_dc import REALM
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser, Page
from tests.e2e.harness import IdpServer, alimail_config, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.test_oidc import REDIRECT, Rp, start
from tests.e2e.test_oidc import authorize as follow_code_flow

pytestmark = pytest.mark.ad

PASSWORD = "OidcJit-Passw0rd!" + secrets.token_hex(3)
"""Never connected to: the test reads the code from the Location header the IdP answers with."""
MAIL_CLIENT, OTHER_CLIENT = "alimail", "intranet"
MAIL_ENTITY = f"urn:ad-sso-bridge:oidc:{MAIL_CLIENT}"
OTHER_ENTITY = f"urn:ad-sso-bridge:oidc:{OTHER_CLIENT}"
SCOPE = "openid profile email"
"""What the alimail preset lets its client ask for."""
JIT_TIMEOUT = 2.0


@dataclass
class Idp:
    server: IdpServer
    mail: Rp
    other: Rp


def _add_client(server: IdpServer, *args: str) -> tuple[Rp, str]:
    added = server.idp("oidc", "client", "add", *args, "--redirect-uri", REDIRECT)
    secret = re.search(r"client secret: (\S+)", added.stdout)
    assert secret, added.stdout
    config = httpx.get(server.base_url + "/.well-known/openid-configuration", timeout=10).json()
    return Rp(args[0], secret[1], config, scope=SCOPE), added.stdout


def _start(samba_dc: Any, emulator: RunningEmulator, root: Path, **provisioning: Any) -> Idp:
    """An IdP whose JIT runs for the mail client only, the client registered with the alimail preset."""
    port = free_port()
    config = base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings())
    config["provisioning"] = {
        "provider": "alimail",
        "jit_timeout": JIT_TIMEOUT,
        "jit_sps": [MAIL_ENTITY],
        **provisioning,
    }
    config["provisioning.alimail"] = alimail_config(emulator, JIT_TIMEOUT)
    server = serve_idp(prepare_idp(root, config), port, workers=1)
    try:
        mail, notes = _add_client(server, MAIL_CLIENT, "--preset", "alimail")
        assert f"add {MAIL_ENTITY} to [provisioning] jit_sps" in notes  # the name the preset tells the admin
        other, _ = _add_client(server, OTHER_CLIENT, "--name", "Intranet")
    except BaseException:
        server.stop()
        raise
    return Idp(server, mail, other)


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(mail_domain=REALM, rate_limit=None) as emu:
        yield emu


@pytest.fixture(scope="module")
def idp(samba_dc, emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    """on_failure = "allow" (the default)."""
    started = _start(samba_dc, emulator, tmp_path_factory.mktemp("oidc-jit"))
    yield started
    started.server.stop()


@pytest.fixture(autouse=True)
def _healthy_provider(emulator: RunningEmulator) -> Iterator[None]:
    yield
    emulator.faults.clear()


@pytest.fixture
def new_user(samba_dc) -> Iterator[Callable[[], str]]:
    """A person of this test only, with a department and a title in AD and no mailbox yet."""
    admin = AdAdmin(samba_dc)

    def make() -> str:
        username = "ojit" + secrets.token_hex(3)
        dn = admin.add_user(username, PASSWORD, mail=f"{username}@{REALM}")
        changes = {"department": [(MODIFY_REPLACE, ["Sales/EMEA"])], "title": [(MODIFY_REPLACE, ["Account Manager"])]}
        admin.conn.modify(dn, changes)
        assert admin.conn.result["result"] == 0, admin.conn.result
        return username

    yield make
    admin.undo()


def authorize(rp: Rp, username: str, browser: Browser | None = None) -> tuple[OAuth2Client, str, str | Page]:
    """The code flow up to the client's callback, typing the password when the form is shown: (client, code
    verifier, the callback URL the IdP sent the browser to, or the page it stopped at)."""
    client, url, verifier, _ = start(rp)
    return client, verifier, follow_code_flow(browser or Browser(), url, PASSWORD, username)


def sign_in(rp: Rp, username: str, browser: Browser | None = None) -> dict:
    """A complete code flow; the claims of the ID token the client got (signature checked against the JWKS)."""
    client, verifier, callback = authorize(rp, username, browser)
    assert isinstance(callback, str), f"{callback.status} {callback.url}\n{callback.html[:800]}"
    token = client.fetch_token(rp.config["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    keys = KeySet.import_key_set(httpx.get(rp.config["jwks_uri"], timeout=10).json())
    return jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims


def mailbox(emulator: RunningEmulator, username: str) -> dict | None:
    return next((u for u in emulator.emulator.users() if u["email"] == f"{username}@{REALM}"), None)


def provisioning_rows(server: IdpServer, username: str) -> list[tuple[str, str, str]]:
    return [
        (r["result"], r["reason"], r["sp_entity_id"]) for r in server.audit_rows(event="provision", username=username)
    ]


def test_a_first_sign_in_to_the_mail_client_makes_the_mailbox_from_ad(
    idp: Idp, emulator: RunningEmulator, new_user: Callable[[], str]
) -> None:
    username = new_user()
    assert mailbox(emulator, username) is None
    claims = sign_in(idp.mail, username)
    box = mailbox(emulator, username)
    assert box is not None, "no mailbox after the sign-in"
    assert claims["email"] == box["email"] == f"{username}@{REALM}"  # the address Alibaba Mail looks the box up by
    assert (box["firstName"], box["lastName"], box["jobTitle"], box["status"]) == (
        username.title(),
        "Test",
        "Account Manager",
        "NORMAL",
    )
    assert emulator.emulator.department_path(box["departmentIds"][0]) == ("Sales", "EMEA")
    assert provisioning_rows(idp.server, username) == [("success", "jit", MAIL_ENTITY)]
    assert idp.server.audit_rows(event="signin", username=username, sp_entity_id=MAIL_ENTITY, result="success")


def test_a_client_not_in_jit_sps_provisions_nothing_and_the_session_then_provisions_for_mail(
    idp: Idp, emulator: RunningEmulator, new_user: Callable[[], str]
) -> None:
    username = new_user()
    calls = len(emulator.emulator.calls)
    browser = Browser()
    assert sign_in(idp.other, username, browser)["email"] == f"{username}@{REALM}"
    assert mailbox(emulator, username) is None and len(emulator.emulator.calls) == calls  # the API was not asked
    assert provisioning_rows(idp.server, username) == []
    assert idp.server.audit_rows(event="signin", username=username, sp_entity_id=OTHER_ENTITY, result="success")

    sign_in(idp.mail, username, browser)  # the same SSO session, no password: the person AD gave at sign-in
    box = mailbox(emulator, username)
    assert box is not None and box["jobTitle"] == "Account Manager"
    assert emulator.emulator.department_path(box["departmentIds"][0]) == ("Sales", "EMEA")
    assert provisioning_rows(idp.server, username) == [("success", "jit", MAIL_ENTITY)]


@pytest.mark.parametrize(
    ("fault", "errors"),
    [
        ("down", {"provider_unavailable"}),
        # No answer within jit_timeout: the sign-in's wait or the client's read timeout (both the budget) ends it.
        ("slow", {"provider_timeout", "provider_unavailable"}),
    ],
)
def test_a_mail_api_down_or_slow_signs_in_under_allow_and_queues_the_mailbox(
    idp: Idp, emulator: RunningEmulator, new_user: Callable[[], str], fault: str, errors: set[str]
) -> None:
    username = new_user()
    if fault == "down":
        emulator.faults.fail_next(10_000, status=503)
    else:
        emulator.faults.latency = JIT_TIMEOUT * 5  # every answer comes long after the sign-in's budget
    started = time.monotonic()
    claims = sign_in(idp.mail, username)  # a code, and a token for it: the client signs the person in
    assert claims["email"] == f"{username}@{REALM}"
    assert time.monotonic() - started < 15
    [row] = idp.server.audit_rows(event="provision", username=username)
    assert (row["result"], row["reason"], row["sp_entity_id"]) == ("failure", "jit", MAIL_ENTITY)
    assert row["detail"].split(":")[0] in errors, row["detail"]
    assert row["detail"].endswith("queued in the outbox; sign-in allowed"), row["detail"]
    assert idp.server.audit_rows(event="signin", username=username, sp_entity_id=MAIL_ENTITY, result="success")
    queued = json.loads(idp.server.idp("outbox", "list", "--json").stdout)
    [item] = [q for q in queued if q["username"] == username]
    assert item["last_error"].split(":")[0] in errors and mailbox(emulator, username) is None

    emulator.faults.clear()
    idp.server.idp("outbox", "retry", "--all")
    idp.server.idp("outbox", "run", "--once")
    box = mailbox(emulator, username)
    assert box is not None and box["jobTitle"] == "Account Manager"  # the worker made it, from the queued spec


def test_a_mail_api_down_under_deny_refuses_the_oidc_sign_in_with_a_page(
    samba_dc, emulator: RunningEmulator, new_user: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    deny = _start(samba_dc, emulator, tmp_path_factory.mktemp("oidc-jit-deny"), on_failure="deny")
    try:
        username = new_user()
        emulator.faults.fail_next(10_000, status=503)
        _, _, page = authorize(deny.mail, username)
        assert isinstance(page, Page), f"the client got a code: {page}"
        assert page.status == 403 and page.doc().get_element_by_id("error").get("data-reason") == "provisioning_failed"
        assert page.text_of("error") == (
            "Your mailbox for Alibaba Mail could not be prepared just now, so you cannot sign in yet. Please try "
            "again in a few minutes; if this keeps happening, contact the help desk."
        )
        # One row for the sign-in: the client's, saying why it was refused (no success before it).
        assert not deny.server.audit_rows(event="signin", username=username, result="success")
        [signin] = deny.server.audit_rows(event="signin", username=username, sp_entity_id=MAIL_ENTITY)
        assert (signin["result"], signin["reason"], signin["sp_entity_id"]) == (
            "failure",
            "provisioning_failed",
            MAIL_ENTITY,
        )
        [provision] = deny.server.audit_rows(event="provision", username=username)
        assert provision["sp_entity_id"] == MAIL_ENTITY and provision["detail"].endswith("sign-in refused")
        assert not deny.server.audit_rows(event="oidc_code_issued", username=username, result="success")
        assert mailbox(emulator, username) is None
    finally:
        deny.server.stop()
