"""Just-in-time mailbox provisioning end to end: `idp serve` (gunicorn) against the run's Samba AD DC, the
Alibaba Mail emulator over HTTP, python3-saml as the SP, and `idp outbox run` as the worker."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ldap3 import MODIFY_REPLACE

from idp.demo.alimail_emulator import RunningEmulator, run_emulator
from idp.demo.samba_dc import REALM
from idp.provisioning.outbox import Outbox
from idp.settings import load_settings
from idp.store.db import Database
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser, Page
from tests.e2e.harness import IdpServer, alimail_config, base_config, eventually, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, write_metadata

pytestmark = pytest.mark.ad

PASSWORD = "Jit-Passw0rd!" + secrets.token_hex(3)
LEASE_SECONDS = 5  # the smallest the settings allow: a killed worker's row waits this long


class Servers:
    """IdP servers of this module, each with its own config and database, sharing one emulator and DC."""

    def __init__(self, samba_dc: Any, emulator: RunningEmulator, root: Path) -> None:
        self.samba_dc, self.emulator, self.root = samba_dc, emulator, root
        self._servers: list[IdpServer] = []

    def start(self, name: str, **provisioning: Any) -> IdpServer:
        root = self.root / name
        port = free_port()
        config = base_config(root, f"http://127.0.0.1:{port}", self.samba_dc.ldap_settings())
        config["provisioning"] = {
            "provider": "alimail",
            "jit_timeout": 2.0,
            "outbox_lease_seconds": LEASE_SECONDS,
            **provisioning,
        }
        config["provisioning.alimail"] = alimail_config(self.emulator)
        server = serve_idp(prepare_idp(root, config), port)
        self._servers.append(server)
        sp = IndependentSp(
            entity_id=f"https://mail-{name}.sp.test/saml",
            acs_url=f"http://127.0.0.1:9100/{name}/acs",
            sign_requests=False,
            idp_metadata_xml=server.metadata(),
        )
        server.idp("sp", "add", str(write_metadata(sp, root)))
        server.sps["mail"] = sp
        return server

    def stop(self) -> None:
        for server in self._servers:
            server.stop()


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(mail_domain=REALM, rate_limit=None) as emu:
        yield emu


@pytest.fixture(scope="module")
def servers(samba_dc, emulator: RunningEmulator, tmp_path_factory) -> Iterator[Servers]:
    servers = Servers(samba_dc, emulator, tmp_path_factory.mktemp("jit"))
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def idp(servers: Servers) -> IdpServer:
    """JIT on for every SP, on_failure = "allow" (the defaults)."""
    return servers.start("allow")


@pytest.fixture(autouse=True)
def _healthy_provider(emulator: RunningEmulator) -> Iterator[None]:
    yield
    emulator.faults.clear()


@pytest.fixture
def new_user(samba_dc) -> Iterator[Callable[..., str]]:
    """Users of this test only, in CN=Users with a known password, removed afterwards."""
    admin = AdAdmin(samba_dc)

    def make(department: str = "Sales/EMEA", title: str = "Account Manager") -> str:
        username = "jit" + secrets.token_hex(3)
        dn = admin.add_user(username, PASSWORD, mail=f"{username}@{REALM}")
        admin.conn.modify(dn, {"department": [(MODIFY_REPLACE, [department])], "title": [(MODIFY_REPLACE, [title])]})
        assert admin.conn.result["result"] == 0, admin.conn.result
        return username

    make.admin = admin  # type: ignore[attr-defined]
    yield make
    admin.undo()


def sign_in_page(server: IdpServer, username: str) -> Page:
    browser = Browser()
    page = browser.get(server.sps["mail"].redirect_login_url())
    page = browser.login(page, username, PASSWORD)
    page.browser = browser  # type: ignore[attr-defined]
    return page


def sign_in(server: IdpServer, username: str) -> str:
    """A password sign-in; returns the NameID the SP validated."""
    page = sign_in_page(server, username)
    return server.sps["mail"].consume(*page.browser.saml_post(page)).nameid  # type: ignore[attr-defined]


def mailbox(emulator: RunningEmulator, username: str) -> dict | None:
    return next((u for u in emulator.emulator.users() if u["email"] == f"{username}@{REALM}"), None)


def call_count(emulator: RunningEmulator) -> int:
    return len(emulator.emulator.calls)


def creates_of(emulator: RunningEmulator) -> int:
    return sum(1 for c in emulator.emulator.calls if c.method == "POST" and c.path == "/v2/users" and c.status < 300)


def test_first_sign_in_creates_the_mailbox_then_steady_sign_ins_make_no_call_and_ad_changes_follow(
    idp: IdpServer, emulator: RunningEmulator, new_user: Callable[..., str]
) -> None:
    username = new_user()
    assert sign_in(idp, username) == f"{username}@{REALM}"
    box = mailbox(emulator, username)
    assert box is not None and box["jobTitle"] == "Account Manager" and box["status"] == "NORMAL"
    assert emulator.emulator.department_path(box["departmentIds"][0]) == ("Sales", "EMEA")

    before = call_count(emulator)
    sign_in(idp, username)
    assert call_count(emulator) == before  # steady state: the record's fingerprint matched, no provider call

    admin = new_user.admin  # type: ignore[attr-defined]
    admin.conn.modify(
        admin.dn_of(username),
        {"title": [(MODIFY_REPLACE, ["Sales Director"])], "department": [(MODIFY_REPLACE, ["Sales/APAC"])]},
    )
    sign_in(idp, username)
    box = mailbox(emulator, username)
    assert box is not None and box["jobTitle"] == "Sales Director"
    assert emulator.emulator.department_path(box["departmentIds"][0]) == ("Sales", "APAC")
    rows = idp.audit_rows(event="provision", username=username)
    assert [r["result"] for r in rows] == ["success", "success"] and {r["reason"] for r in rows} == {"jit"}


def test_an_outage_with_allow_signs_in_and_the_worker_creates_the_mailbox_later(
    idp: IdpServer, emulator: RunningEmulator, new_user: Callable[..., str]
) -> None:
    username = new_user()
    emulator.faults.fail_next(10_000, status=503)
    started = time.monotonic()
    assert sign_in(idp, username) == f"{username}@{REALM}"  # the SP got a valid, signed response
    assert time.monotonic() - started < 15
    assert mailbox(emulator, username) is None
    (row,) = json.loads(idp.idp("outbox", "list", "--failed", "--json").stdout)
    assert row["username"] == username and "provider_unavailable" in row["last_error"]

    emulator.faults.clear()
    idp.idp("outbox", "retry", "--all")  # the row backed off; an admin (or time) makes it due
    worker = idp.idp("outbox", "run", "--once")
    assert "1 done" in worker.stdout
    assert mailbox(emulator, username) is not None
    assert "The outbox is empty." in idp.idp("outbox", "list").stdout
    results = [(r["result"], r["reason"]) for r in idp.audit_rows(event="provision", username=username)]
    assert results == [("success", "outbox"), ("failure", "jit")]


def test_a_worker_killed_between_claiming_and_calling_is_recovered_exactly_once(
    idp: IdpServer, emulator: RunningEmulator, new_user: Callable[..., str]
) -> None:
    username = new_user()
    emulator.faults.fail_next(10_000, status=503)
    sign_in(idp, username)  # queued in the outbox
    emulator.faults.clear()
    idp.idp("outbox", "retry", "--all")
    creates = creates_of(emulator)

    emulator.faults.latency = 3.0  # the worker's first provider call cannot finish before we kill it
    worker = subprocess.Popen(
        [sys.executable, "-m", "idp.cli", "outbox", "run"],
        env=idp.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(lambda: _claimed(idp), within=30, what="the worker claimed the row", every=0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    emulator.faults.latency = 0.0

    assert "0 done" in idp.idp("outbox", "run", "--once").stdout  # its lease still holds
    eventually(
        lambda: "1 done" in idp.idp("outbox", "run", "--once").stdout,
        within=LEASE_SECONDS + 10,
        what="a worker took over the dead worker's row once its lease expired",
    )
    assert creates_of(emulator) == creates + 1
    assert [u["email"] for u in emulator.emulator.users()].count(f"{username}@{REALM}") == 1


def _claimed(server: IdpServer) -> bool:
    db = Database(load_settings(server.config).database_url)
    try:
        return any(item.lease_owner for item in Outbox(db).items())
    finally:
        db.dispose()


def test_an_outage_with_deny_refuses_the_sign_in_with_a_message(
    servers: Servers, emulator: RunningEmulator, new_user: Callable[..., str]
) -> None:
    server = servers.start("deny", on_failure="deny")
    username = new_user()
    emulator.faults.fail_next(10_000, status=503)
    page = sign_in_page(server, username)
    assert page.status == 403 and not page.is_auto_post
    assert "mailbox" in page.html and "could not be prepared" in page.html
    rows = server.audit_rows(event="signin", username=username)
    assert [(r["result"], r["reason"]) for r in rows] == [("failure", "provisioning_failed")]
    assert mailbox(emulator, username) is None
