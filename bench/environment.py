"""What the benchmark runs against: its own Samba AD DC, `idp serve` under gunicorn and one registered SP.

Everything lives in a temporary directory and on a loopback address of its own, so a benchmark can run
next to a test session (which uses 127.0.0.21-29) without either noticing the other.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import httpx

from bench.flows import BENCH_PEOPLE
from idp.demo.samba_dc import AddressInUse, SambaDC, ensure_dc
from idp.settings import render_toml
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.saml_sp import IndependentSp, write_metadata

DC_ADDRESSES = [f"127.0.0.{n}" for n in range(41, 50)]
DEFAULT_SERVE_COMMAND = (sys.executable, "-m", "idp.cli", "serve")
SP_ENTITY_ID = "https://bench.sp.test/saml"
_START_TIMEOUT = 60


class BenchSetupError(RuntimeError):
    """The DC or the IdP could not be started; the message carries the tail of the relevant log."""


class BenchEnvironment:
    """Use as a context manager; everything started is stopped and removed on exit."""

    def __init__(
        self, *, log: Callable[[str], None] = print, serve_command: Sequence[str] = DEFAULT_SERVE_COMMAND
    ) -> None:
        """``serve_command`` lets an experiment serve a patched IdP; it gets ``--bind fd://N`` appended (gunicorn
        takes over the bound socket N it inherits)."""
        self._log = log
        self._serve_command = list(serve_command)
        self.root = Path(tempfile.mkdtemp(prefix="idp-bench-"))
        self.dc: SambaDC | None = None
        self._server: subprocess.Popen | None = None
        self._server_log = self.root / "gunicorn.log"
        self.base_url = ""
        self.sp: IndependentSp | None = None
        self.sp_metadata_file = self.root / "sp-metadata.xml"

    @property
    def config_file(self) -> Path:
        return self.root / "idp.toml"

    @property
    def key_file(self) -> Path:
        return self.root / "certs" / "idp.key"

    def __enter__(self) -> BenchEnvironment:
        try:
            self._start_dc()
            self._start_idp()
            self._register_sp()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._server.kill()
            self._server = None
        if self.dc is not None:
            self.dc.stop()
            self.dc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def idp(self, *args: str) -> str:
        """Run an `idp` CLI command against the benchmark's configuration."""
        done = subprocess.run(
            [sys.executable, "-m", "idp.cli", *args],
            env={**os.environ, "IDP_CONFIG": str(self.config_file)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise BenchSetupError(f"idp {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def _start_dc(self) -> None:
        started = time.monotonic()
        for ip in DC_ADDRESSES:
            try:
                self.dc = ensure_dc(self.root / "samba-dc", ip)
                break
            except AddressInUse:
                continue
        else:
            raise BenchSetupError(f"every benchmark DC address ({DC_ADDRESSES[0]}..{DC_ADDRESSES[-1]}) is in use")
        admin = AdAdmin(self.dc)
        for person in BENCH_PEOPLE:
            admin.add_user(person.username, person.password, mail=person.mail)
        admin.conn.unbind()
        self._log(
            f"Samba AD DC on {self.dc.ip} ready with {len(BENCH_PEOPLE)} more people in "
            f"{time.monotonic() - started:.1f} s"
        )

    def _start_idp(self) -> None:
        assert self.dc is not None
        # The config names the port before gunicorn starts, so gunicorn gets the bound socket itself
        # (--bind fd://N): no other process can take the port in between.
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            self.base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
            root = self.root
            self.config_file.write_text(
                render_toml(
                    {
                        # One address sends the whole load on purpose: the per-address limit would refuse it.
                        "server": {"base_url": self.base_url, "data_dir": root / "data", "rate_limit_per_minute": 0},
                        "idp": {
                            "key_file": self.key_file,
                            "cert_file": root / "certs" / "idp.crt",
                            "persistent_id_secret_file": root / "certs" / "persistent-id.secret",
                        },
                        "metadata": {"dir": root / "metadata"},
                        "ldap": self.dc.ldap_settings(),
                    }
                )
            )
            (root / "metadata").mkdir()
            self.idp("keys", "init")
            log = self._server_log.open("w")
            # No --workers: the benchmark measures the default a fresh install gets.
            self._server = subprocess.Popen(
                [*self._serve_command, "--bind", f"fd://{listener.fileno()}"],
                env={**os.environ, "IDP_CONFIG": str(self.config_file)},
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
            )
            log.close()
        self._wait_healthy()
        self._log(f"idp serve (gunicorn) on {self.base_url}")

    def _register_sp(self) -> None:
        idp_metadata = httpx.get(self.base_url + "/saml/metadata", timeout=10).text
        self.sp = IndependentSp(
            entity_id=SP_ENTITY_ID,
            acs_url="http://127.0.0.1:9/bench/acs",  # never contacted: the client carries the form
            sign_requests=True,
            idp_metadata_xml=idp_metadata,
        )
        folder = self.root / "sp-metadata"
        folder.mkdir()
        self.sp_metadata_file = write_metadata(self.sp, folder)
        self.idp("sp", "add", str(self.sp_metadata_file))
        self._warm_up()

    def _warm_up(self) -> None:
        """Each worker rebuilds its pysaml2 server on the first request after an SP was added (about 0.2 s);
        make every worker do that now rather than inside the first timed step."""
        with ThreadPoolExecutor(8) as pool:
            for r in pool.map(lambda _: httpx.get(self.base_url + "/saml/metadata", timeout=30), range(32)):
                r.raise_for_status()

    def _wait_healthy(self) -> None:
        assert self._server is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise BenchSetupError(f"idp serve exited with {self._server.returncode}:\n{self.server_log_tail()}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise BenchSetupError(f"idp serve did not become healthy in {_START_TIMEOUT} s:\n{self.server_log_tail()}")

    def server_log_tail(self, chars: int = 3000) -> str:
        try:
            return self._server_log.read_text()[-chars:]
        except OSError:
            return "(no log)"

    def server_pids(self) -> list[int]:
        """The gunicorn master and its workers (for profiling)."""
        if self._server is None:
            return []
        children = Path(f"/proc/{self._server.pid}/task/{self._server.pid}/children")
        try:
            return [self._server.pid, *(int(p) for p in children.read_text().split())]
        except OSError:
            return [self._server.pid]
