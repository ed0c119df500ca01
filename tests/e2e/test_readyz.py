"""What an operator sees of `idp serve` with the run's real AD: /readyz following the DC, a sign-in counted by
SP with its request id in the JSON log lines, and `kill -HUP` re-reading configuration and keys while
requests keep being answered."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from idp.demo.samba_dc import DEMO_USERS, SambaDC
from tests.e2e.browser import Browser
from tests.e2e.harness import IdpServer, base_config, eventually, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, write_metadata

pytestmark = pytest.mark.ad

ALICE = next(u for u in DEMO_USERS if u.username == "alice")
TOKEN = "scrape-me"


@pytest.fixture(scope="module")
def operated(samba_dc: SambaDC, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdpServer]:
    root = tmp_path_factory.mktemp("operated")
    port = free_port()
    config = base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings())
    config["server"]["metrics_token"] = TOKEN
    config["idp"]["organization"] = "Before Reload Corp"
    config["log"] = {"format": "json"}
    server = serve_idp(prepare_idp(root, config), port)
    try:
        sp = IndependentSp("https://webmail.sp.test/saml", "http://127.0.0.1:9300/acs", False, server.metadata())
        server.idp("sp", "add", str(write_metadata(sp, root)))
        server.sps["webmail"] = sp
        yield server
    finally:
        server.stop()


def readyz(server: IdpServer) -> httpx.Response:
    # Long enough for a request that arrives while reloaded workers load the app: it waits, it is not lost.
    return httpx.get(server.base_url + "/readyz", timeout=30)


def metadata(server: IdpServer) -> str:
    # As patient as readyz: on a busy machine the reloaded workers take a while to load.
    return httpx.get(server.base_url + "/saml/metadata", timeout=30).text


def metrics(server: IdpServer) -> str:
    return httpx.get(server.base_url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text


def test_readyz_follows_the_domain_controller(operated: IdpServer, samba_dc: SambaDC) -> None:
    ready = readyz(operated)
    assert ready.status_code == 200, ready.text
    assert ready.json()["domain_controllers"] == {samba_dc.ldaps_url: "ok"}
    samba_dc.stop()
    try:
        # Each worker asks the DC again once its last answer is a few seconds old.
        body = eventually(
            lambda: (r := readyz(operated)).status_code == 503 and r.json(), within=30, what="/readyz to fail"
        )
        assert body["checks"]["directory"] == "error: no domain controller answers"
        assert "refused the connection" in body["domain_controllers"][samba_dc.ldaps_url]
        assert body["checks"]["database"] == "ok" and body["checks"]["signing_key"] == "ok"
        assert httpx.get(operated.base_url + "/healthz", timeout=10).status_code == 200
    finally:
        samba_dc.start()
    eventually(lambda: readyz(operated).status_code == 200, within=30, what="/readyz to recover")


def test_a_sign_in_is_counted_by_sp_and_logged_with_its_request_id(operated: IdpServer, samba_dc: SambaDC) -> None:
    sp = operated.sps["webmail"]
    browser = Browser()
    page = browser.get(sp.redirect_login_url())
    action, fields = page.form()
    answer = browser.http.post(action, data={**fields, "username": "alice", "password": ALICE.password}, timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    request_ids = {r.headers["X-Request-Id"] for r in [*answer.history, answer]}

    def audit_line() -> dict | None:
        for line in operated.log.read_text().splitlines():
            if line.startswith("{") and "signin success" in (entry := json.loads(line))["message"]:
                return entry
        return None

    entry = eventually(audit_line, within=10, what="the sign-in's audit log line")
    assert entry["logger"] == "idp.audit" and entry["level"] == "INFO"
    assert entry["request_id"] in request_ids
    assert entry["timestamp"].endswith("Z")

    page = metrics(operated)
    assert f'idp_signins_total{{reason="password",result="success",sp="{sp.entity_id}"}} 1.0' in page
    dc = f"{samba_dc.ldaps_url}:636" if samba_dc.ldaps_url.count(":") == 1 else samba_dc.ldaps_url
    assert f'idp_ldap_dc_up{{dc="{dc}"}} 1.0' in page
    assert f'idp_ldap_connections_idle{{dc="{dc}",pool="bind"}}' in page
    assert 'idp_http_request_duration_seconds_bucket{endpoint="login.login"' in page
    assert "idp_ldap_authenticate_seconds_count 1.0" in page


def test_hup_rereads_configuration_and_keys_without_dropping_a_request(operated: IdpServer) -> None:
    before = operated.metadata()
    assert "Before Reload Corp" in before
    config = operated.config.read_text().replace("Before Reload Corp", "After Reload Corp")
    operated.config.write_text(config)
    # A new signing key and certificate in place of the old files (as `idp keys init --force` leaves them).
    subprocess.run(
        [sys.executable, "-m", "idp.cli", "keys", "init", "--force"], env=operated.env, check=True, capture_output=True
    )
    assert "Before Reload Corp" in operated.metadata()  # nothing changes before the reload

    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def keep_asking() -> None:
        nonlocal answered
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    # /healthz: /saml/* would soon meet the per-address rate limit.
                    status = client.get(operated.base_url + "/healthz").status_code
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                answered += 1
                if status != 200:
                    failures.append(str(status))

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        time.sleep(0.5)
        operated.process.send_signal(signal.SIGHUP)
        after = eventually(
            lambda: "After Reload Corp" in (m := metadata(operated)) and m, within=90, what="the reloaded metadata"
        )
        time.sleep(1)
    finally:
        stop.set()
        asker.join()
    assert failures == [] and answered > 10
    assert _certificate(after) != _certificate(before)
    assert operated.process.poll() is None  # the same master, still serving


def test_a_broken_configuration_is_not_reloaded(operated: IdpServer) -> None:
    good = operated.config.read_text()
    operated.config.write_text(good.replace("[ldap]", "[ldap]\nno_such_key = 1"))
    try:
        operated.process.send_signal(signal.SIGHUP)
        eventually(
            lambda: "configuration NOT reloaded" in operated.log.read_text(), within=30, what="the refusal in the log"
        )
        assert "ldap.no_such_key" in operated.log.read_text()
        assert operated.process.poll() is None
        eventually(lambda: readyz(operated).status_code == 200, within=60, what="the previous configuration serving")
    finally:
        operated.config.write_text(good)


def _certificate(metadata: str) -> str:
    found = re.search(r"X509Certificate>([^<]+)<", metadata)
    assert found is not None, metadata
    return found.group(1)
