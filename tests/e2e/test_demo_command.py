"""`idp demo`, the newcomer's command: from nothing to a signed-in webmail with an AD password."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from idp.demo.samba_dc import DEMO_USERS, SambaDC
from tests.e2e.browser import Browser
from tests.support import require

pytestmark = pytest.mark.ad

# Not the test run's DC address (tests/conftest.py) nor the demo's default: a demo a developer left
# running must not collide with this one.
DEMO_TEST_DC_IP = "127.0.0.31"
START_ATTEMPTS = 3


class PortTaken(Exception):
    """Another process took one of the demo's ports before the demo bound it."""


def _unused_ports(count: int) -> list[int]:
    # `idp demo` binds the ports it is given itself, so they cannot stay held for it the way
    # tests.e2e.harness.free_port holds the IdP's: one may be taken in between (see _start_demo).
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:  # all bound at once, so the ports differ
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def _wait_for(url: str, proc: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read()
            if "Address already in use" in output:
                raise PortTaken(output)
            raise AssertionError(f"idp demo exited with {proc.returncode}:\n{output}")
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in time")


def _start_demo(workdir: Path) -> tuple[subprocess.Popen, int, int, int]:
    """`idp demo` answering on its IdP port; started again on other ports when one was taken meanwhile."""
    for _ in range(START_ATTEMPTS):
        idp_port, webmail_port, mail_api_port = _unused_ports(3)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "idp.cli",
                "demo",
                "--dir",
                str(workdir),
                "--bind",
                f"127.0.0.1:{idp_port}",
                "--webmail-port",
                str(webmail_port),
                "--dc-ip",
                DEMO_TEST_DC_IP,
                "--mail-api-port",
                str(mail_api_port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("IDP_")},
        )
        try:
            _wait_for(f"http://127.0.0.1:{idp_port}/healthz", proc, time.monotonic() + 120)
        except PortTaken:
            continue
        except BaseException:
            proc.send_signal(signal.SIGTERM)  # not SIGKILL: the demo stops its domain controller on TERM
            proc.communicate(timeout=60)
            raise
        return proc, idp_port, webmail_port, mail_api_port
    pytest.fail(f"idp demo found one of its ports taken {START_ATTEMPTS} times in a row")


def test_idp_demo_signs_alice_in_to_the_webmail(tmp_path):
    require(os.geteuid() == 0, "idp demo starts a Samba AD DC, which needs root")
    proc, idp_port, webmail_port, mail_api_port = _start_demo(tmp_path / "demo")
    webmail = f"http://127.0.0.1:{webmail_port}/"
    try:
        alice = next(u for u in DEMO_USERS if u.username == "alice")
        browser = Browser()
        login = browser.get(webmail)
        assert login.is_login and login.url.startswith(f"http://127.0.0.1:{idp_port}/saml/sso?SAMLRequest=")
        assert login.text_of("service") == "to continue to Demo Webmail"
        action, fields = browser.saml_post(browser.login(login, "alice", alice.password))
        mailbox = browser.post(action, fields)
        assert mailbox.status == 200 and mailbox.url.startswith(webmail)
        assert mailbox.text_of("signed-in-as") == alice.mail
        attributes = mailbox.text_of("attributes") or ""
        assert alice.given_name in attributes and "Mail Users" in attributes
        # Her first sign-in created her mailbox in the demo's Alibaba Mail emulator, read over its own API.
        api = f"http://127.0.0.1:{mail_api_port}"
        token = httpx.post(
            f"{api}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": "emulator-app", "client_secret": "emulator-secret"},
            timeout=10,
        ).json()["access_token"]
        box = httpx.get(f"{api}/v2/users/{alice.mail}", headers={"Authorization": f"bearer {token}"}, timeout=10)
        assert box.status_code == 200 and box.json()["email"] == alice.mail
        # The launcher offers the webmail, and a click there signs her in without a request from the webmail.
        idp = f"http://127.0.0.1:{idp_port}"
        home = browser.get(idp + "/")
        apps = browser.get(urljoin(home.url, home.doc().get_element_by_id("apps-link").get("href")))
        tile = apps.doc().xpath("//nav[@id='apps']//a")[0]
        assert tile.text_content().strip() == "Webmail"
        action, fields = browser.saml_post(browser.get(urljoin(apps.url, tile.get("href"))))
        assert "InResponseTo" not in base64.b64decode(fields["SAMLResponse"]).decode()
        mailbox = browser.post(action, fields)
        assert mailbox.status == 200 and mailbox.text_of("signed-in-as") == alice.mail
        # anna, in the demo's admin group, opens the console with her AD password.
        admin = Browser()
        console = admin.login(admin.get(idp + "/admin/"), "anna", "Passw0rd!Anna")
        assert console.status == 200 and console.text_of("admin-user") == "Anna Admin"
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{webmail_port}/" in output  # the URL to open is printed
    assert alice.password in output  # and the demo credentials
    assert f"http://127.0.0.1:{mail_api_port}" in output  # and where the mailboxes are
    assert not SambaDC(tmp_path / "demo" / "ad", DEMO_TEST_DC_IP, "").is_running()
