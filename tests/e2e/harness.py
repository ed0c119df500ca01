"""The IdP as production runs it: `idp serve` (gunicorn) on loopback, against the Samba AD DC of the run.

Plain helpers for the end-to-end tests; the fixtures built from them live in conftest.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from idp.demo.alimail_emulator import RunningEmulator
from idp.settings import render_toml
from tests.e2e.saml_sp import IndependentSp

T = TypeVar("T")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
"""Screenshots of the pages, kept after the run (CI keeps the folder)."""

_held: dict[int, socket.socket] = {}


def free_port() -> int:
    """A loopback port that stays ours: its socket is kept bound until ``serve_idp`` hands it to gunicorn.

    Binding, closing and passing the number on leaves a gap in which another process (another test run,
    any outgoing connection's ephemeral port) can take it. Bound but not listening, the port refuses
    connections until it is served, as a free one would; one used only in a URL is held to the end."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    _held[port] = sock
    return port


def eventually(probe: Callable[[], T], *, within: float, what: str, every: float = 0.3) -> T:
    """Call ``probe`` until it returns something true and return that; fail saying ``what`` did not
    happen once ``within`` seconds have passed.

    For a change another process has to notice (a worker's cache, a lease in the database): the test
    goes on as soon as it has, and a busy machine gets the whole deadline rather than a guessed sleep."""
    deadline = time.monotonic() + within
    while not (result := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {within:.0f} s")
        time.sleep(every)
    return result


@dataclass
class IdpServer:
    base_url: str
    config: Path
    root: Path
    process: subprocess.Popen
    sps: dict[str, IndependentSp] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "IDP_CONFIG": str(self.config)}

    def idp(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "idp.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def metadata(self) -> str:
        return httpx.get(self.base_url + "/saml/metadata", timeout=10).text

    @property
    def log(self) -> Path:
        return self.root / f"gunicorn-{self.base_url.rsplit(':', 1)[1]}.log"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def audit_rows(self, **where: str) -> list[dict]:
        """Audit rows, newest first, read straight from the database the IdP writes."""
        from idp.audit import AuditTrail
        from idp.settings import load_settings
        from idp.store.db import Database

        settings = load_settings(self.config)
        db = Database(settings.database_url)
        try:
            rows = AuditTrail(db).recent(200)
        finally:
            db.dispose()
        out = [r.__dict__ for r in rows]
        return [r for r in out if all(r.get(k) == v for k, v in where.items())]


def alimail_config(emulator: RunningEmulator, timeout: float = 2.0) -> dict:
    """``[provisioning.alimail]`` for the emulator: no rate limit to wait on, retries short enough for a test."""
    emu = emulator.emulator
    return {
        "host": emulator.url,
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "mail_domain": emu.mail_domain,
        "rate_per_second": 1000,
        "read_timeout": timeout,
        "retry_base_wait": 0.05,
        "max_retry_wait": 0.5,
    }


def base_config(root: Path, base_url: str, ldap: dict) -> dict:
    """The settings every test IdP shares: keys, data and metadata under root, the run's AD."""
    return {
        "server": {"base_url": base_url, "data_dir": root / "data"},
        "idp": {
            "key_file": root / "certs/idp.key",
            "cert_file": root / "certs/idp.crt",
            "persistent_id_secret_file": root / "certs/persistent-id.secret",
            "assertion_lifetime": 300,
        },
        "metadata": {"dir": root / "metadata"},
        "ldap": ldap,
        "admin": {"groups": ["SSO Admins"]},
    }


def prepare_idp(root: Path, config: dict) -> Path:
    """Write root/idp.toml and make its signing key with `idp keys init`, as an admin would."""
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    path = root / "idp.toml"
    path.write_text(render_toml(config))
    subprocess.run(
        [sys.executable, "-m", "idp.cli", "keys", "init"],
        env={**os.environ, "IDP_CONFIG": str(path)},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return path


def serve_idp(config: Path, port: int, *, workers: int = 2) -> IdpServer:
    """`idp serve` (gunicorn) on 127.0.0.1:port, a port from ``free_port``, once it answers /healthz.

    The config names the port in ``server.base_url`` (SAML metadata carries it), so it is chosen before
    the start; gunicorn gets the socket ``free_port`` kept bound (``--bind fd://N``), not the number, so no
    other process can have taken the port meanwhile."""
    listener = _held.pop(port, None)
    if listener is None:
        raise ValueError(f"port {port} does not come from free_port(), or was served already")
    server = IdpServer(f"http://127.0.0.1:{port}", config, config.parent, None)  # type: ignore[arg-type]
    with listener, server.log.open("w") as log:
        server.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "idp.cli", "serve"),
                *("--bind", f"fd://{listener.fileno()}", "--workers", str(workers)),
            ],
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
        )
    try:
        _wait_healthy(server.base_url, server.process, server.log)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_healthy(base_url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"idp serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(base_url + "/healthz", timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"idp serve did not become healthy:\n{log.read_text()[-3000:]}")
