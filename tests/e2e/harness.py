"""The IdP as production runs it: `idp serve` (gunicorn) on loopback, against the Samba AD DC of the run,
with SPs registered through `idp sp add` from their metadata. Started once per test session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from idp.settings import render_toml
from tests.conftest import require
from tests.e2e.saml_sp import IndependentSp, write_metadata

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
"""Screenshots of the pages, kept after the run (CI keeps the folder)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        return requests.get(self.base_url + "/saml/metadata", timeout=10).text

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
    """`idp serve` (gunicorn) on 127.0.0.1:port, once it answers /healthz."""
    server = IdpServer(f"http://127.0.0.1:{port}", config, config.parent, None)  # type: ignore[arg-type]
    server.process = subprocess.Popen(
        [sys.executable, "-m", "idp.cli", "serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
        env=server.env,
        stdout=server.log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(server.base_url, server.process, server.log)
    except BaseException:
        server.stop()
        raise
    return server


# name -> (sign requests, extra `idp sp add` options)
SP_SPECS: dict[str, tuple[bool, list[str]]] = {
    "webmail": (False, []),
    "calendar": (False, []),
    "signed": (True, []),
    "required": (False, ["--require-signed-requests"]),
    "restricted": (False, ["--group", "Mail Users"]),
    "persistent": (False, ["--nameid-format", "persistent"]),
    "legacy": (False, ["--nameid-format", "unspecified"]),
}


@pytest.fixture(scope="session")
def idp_server(samba_dc, tmp_path_factory) -> Iterator[IdpServer]:
    root = tmp_path_factory.mktemp("idp")
    port = free_port()
    config = prepare_idp(root, base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings()))
    server = serve_idp(config, port)
    try:
        idp_metadata = server.metadata()
        sp_dir = root / "sp-metadata"
        sp_dir.mkdir()
        for name, (signed, options) in SP_SPECS.items():
            sp = IndependentSp(
                entity_id=f"https://{name}.sp.test/saml",
                acs_url=f"http://127.0.0.1:{9000 + len(server.sps)}/{name}/acs",
                sign_requests=signed,
                idp_metadata_xml=idp_metadata,
            )
            server.idp("sp", "add", str(write_metadata(sp, sp_dir)), *options)
            server.sps[name] = sp
        yield server
    finally:
        server.stop()


def _wait_healthy(base_url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"idp serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(base_url + "/healthz", timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"idp serve did not become healthy:\n{log.read_text()[-3000:]}")


@pytest.fixture
def chrome() -> Iterator:
    require(
        shutil.which("chromium") is not None and shutil.which("chromedriver") is not None,
        "Debian's chromium and chromium-driver are not installed",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,900",
        "--lang=en-US",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
