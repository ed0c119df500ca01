"""Instructions per SSO-session response, counted by valgrind's callgrind, against baselines in the same run.

    .venv/bin/python -m bench.bench_instructions [--responses 40]

CPU time on a shared machine moves by a fifth from one run to the next, which hides a change that saves 5%.
An instruction count does not move with the neighbours: the same code on the same input executes the same
instructions. So this runs the app once, in one process, under `valgrind --tool=callgrind` (installed with
apt-get when missing), and counts each phase alone (instrumentation on around its loop only):

1. **a bare request**: `GET /healthz` through the same Flask app, the floor under any request;
2. **an SSO-session response**: a signed HTTP-Redirect AuthnRequest (python3-saml, built before the count)
   for a browser with an SSO session, answered with the auto-POST page, as `GET /saml/sso` is in production
   (the session planted as a password sign-in leaves it, and checked with AD just now, so no LDAP);
3. **the response builder alone** (`idp.saml.responses`), for the same person, SP and policy;
4. **one RSA-2048 signature** with the IdP's key (`cryptography`), to read the two signatures of a response in.

The requests are WSGI calls built before the count, not HTTP: gunicorn's own share is not in these figures
(`bench_sso` measures it). Under valgrind OpenSSL may take other code paths than on the bare CPU, so read the
RSA row as valgrind's, and compare runs of this command with each other, not with CPU time.

Prints a table and writes bench/results/instructions.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "instructions.json"
IDP_HOST = "idp.bench.test"
IDP_BASE = f"https://{IDP_HOST}"
SP_ENTITY_ID = "https://bench.sp.test/saml"
SP_ACS = "https://bench.sp.test/saml/acs"
PERSON: dict[str, Any] = {
    "username": "alice",
    "dn": "CN=Alice Liddell,CN=Users,DC=bench,DC=test",
    "guid": uuid.UUID("6f1c2f9e-3d1a-4c55-9a7e-0b7d2e9c1a11"),
    "upn": "alice@bench.test",
    "mail": "alice@bench.test",
    "display_name": "Alice Liddell",
    "given_name": "Alice",
    "surname": "Liddell",
    "groups": ("Domain Users",),
}
"""The person of the SSO session and of the builder's response: a mailbox user as AD gives her."""
PHASES = "phases.json"
WARM_UP = 20
"""Calls of each phase before its count: imports, template compilation and caches are done by then."""


class BenchError(RuntimeError):
    """The measurement could not be made; the message says why."""


@dataclass(frozen=True)
class Phase:
    name: str
    operations: int
    instructions: int

    @property
    def per_operation(self) -> float:
        return self.instructions / self.operations


# --- outside valgrind ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", type=int, default=40, help="operations counted per phase (default 40)")
    parser.add_argument("--inside", type=Path, help=argparse.SUPPRESS)  # the run under valgrind: its directory
    args = parser.parse_args(argv)
    if args.inside is not None:
        _measure(args.responses, args.inside)
        return 0
    console = Console(width=max(120, Console().width))
    _ensure_valgrind(console.print)
    with tempfile.TemporaryDirectory(prefix="idp-instructions-") as work:
        out = Path(work) / PHASES
        console.print(f"counting {args.responses} operations per phase under callgrind (a few minutes) ...")
        started = time.perf_counter()
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={work}/callgrind.out",
                sys.executable,
                "-m",
                "bench.bench_instructions",
                "--responses",
                str(args.responses),
                "--inside",
                work,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            tail = "\n".join((done.stderr or done.stdout).splitlines()[-15:])
            raise BenchError(f"the run under valgrind failed (exit {done.returncode}):\n{tail}")
        phases = [Phase(**p) for p in json.loads(out.read_text())]
    _report(console, phases, time.perf_counter() - started)
    return 0


def _ensure_valgrind(log: Callable[[str], None]) -> None:
    if shutil.which("valgrind") and shutil.which("callgrind_control"):
        return
    log("installing valgrind (apt-get, no recommends)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "valgrind"]):
        if subprocess.run(command, env=env, capture_output=True, check=False).returncode != 0:
            raise BenchError(f"could not install valgrind: `{' '.join(command)}` failed (root is needed)")


def _report(console: Console, phases: list[Phase], seconds: float) -> None:
    by_name = {p.name: p for p in phases}
    bare, response = by_name["bare request"], by_name["SSO-session response"]
    builder, rsa = by_name["response builder alone"], by_name["RSA-2048 signature"]
    table = Table(title=f"ad-sso-bridge: instructions per operation (callgrind, {seconds:.0f} s)")
    for column in ("phase", "operations", "instructions per operation", "vs baseline"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    ratios = {
        bare.name: f"{bare.per_operation / response.per_operation:.2f} of a response",
        response.name: f"{response.per_operation / bare.per_operation:.1f}x a bare request",
        builder.name: f"{builder.per_operation / response.per_operation:.2f} of a response",
        rsa.name: f"two: {2 * rsa.per_operation / response.per_operation:.2f} of a response",
    }
    for phase in phases:
        table.add_row(phase.name, str(phase.operations), f"{phase.per_operation / 1e6:.2f} M", ratios[phase.name])
    console.print(table)
    rest = response.per_operation - bare.per_operation - builder.per_operation
    console.print(
        f"an SSO-session response beyond the bare request and the builder (reading the request, the session, "
        f"the pipeline, the page, the audit row): {rest / 1e6:.2f} M instructions"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "phases": [{**p.__dict__, "per_operation": round(p.per_operation)} for p in phases],
            },
            indent=2,
        )
    )
    console.print(f"figures written to {RESULTS}")


# --- under valgrind ------------------------------------------------------------------------------------------


def _measure(count: int, work_dir: Path) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from bench.flows import AuthnRequests

    with tempfile.TemporaryDirectory(prefix="idp-instructions-app-") as work:
        world = _World(Path(work))
        calls = WARM_UP + count
        bare = [world.environ("/healthz") for _ in range(calls)]
        requests = AuthnRequests(world.sp)
        sso = [world.environ(requests.signed_redirect().url) for _ in range(calls)]
        dumps = work_dir / "callgrind.out"
        key = serialization.load_pem_private_key(world.settings.idp.key_file.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        phases = [
            _count("bare request", [partial(world.call, env, b'"ok"') for env in bare], count, dumps),
            _count("SSO-session response", [partial(world.call, env, b"SAMLResponse") for env in sso], count, dumps),
            _count("response builder alone", [world.build_response] * calls, count, dumps),
            _count(
                "RSA-2048 signature",
                [partial(key.sign, b"x" * 32, padding.PKCS1v15(), hashes.SHA256())] * calls,
                count,
                dumps,
            ),
        ]
    (work_dir / PHASES).write_text(json.dumps([p.__dict__ for p in phases]))


def _count(name: str, calls: list[Callable[[], Any]], count: int, dumps: Path) -> Phase:
    """Run the first WARM_UP calls uncounted, then count the instructions of the next ``count``; ``dumps`` is
    valgrind's --callgrind-out-file."""
    for call in calls[:WARM_UP]:
        call()
    ready = calls[WARM_UP : WARM_UP + count]
    _callgrind("--zero")
    _callgrind("--instr=on")
    for call in ready:
        call()
    _callgrind("--instr=off")
    return Phase(name, count, _dumped_instructions(dumps))


def _callgrind(option: str) -> None:
    subprocess.run(["callgrind_control", option, str(os.getpid())], check=True, capture_output=True)


def _dumped_instructions(dumps: Path) -> int:
    """Dump the counts since the last zero and read their total."""
    _callgrind("--dump")
    newest = max(dumps.parent.glob(dumps.name + "*"), key=lambda p: p.stat().st_mtime_ns)
    for line in newest.read_text().splitlines():
        if line.startswith("totals:"):  # its "summary:" stays 0 while instrumentation is switched by hand
            return int(line.split()[1])
    raise BenchError(f"{newest} has no total")


class _World:
    """The IdP app on its own data directory, one SP (python3-saml, signing its requests) registered from its
    metadata, and a browser's session as a password sign-in leaves it."""

    def __init__(self, root: Path) -> None:
        from idp.app import create_app
        from idp.keys.material import init_keys
        from idp.settings import Settings
        from tests.e2e.saml_sp import IndependentSp

        certs = root / "certs"
        certs.mkdir()
        init_keys(certs / "idp.key", certs / "idp.crt", certs / "persistent-id.secret", IDP_HOST)
        (root / "metadata").mkdir()
        self.settings = Settings.model_validate(
            {
                "server": {"base_url": IDP_BASE, "data_dir": str(root / "data")},
                "idp": {
                    "key_file": str(certs / "idp.key"),
                    "cert_file": str(certs / "idp.crt"),
                    "persistent_id_secret_file": str(certs / "persistent-id.secret"),
                },
                "metadata": {"dir": str(root / "metadata"), "refresh_poll": 0},
                # Never asked: the session below was checked just now, so the sign-in reads nobody from AD.
                "ldap": {
                    "urls": ["ldaps://127.0.0.1:1"],
                    "base_dn": "DC=bench,DC=test",
                    "bind_dn": "x",
                    "bind_password": "x",
                },
            }
        )
        self.app = create_app(self.settings)
        services = self.app.extensions["idp"]
        self.sp = IndependentSp(SP_ENTITY_ID, SP_ACS, True, services.saml_server.metadata_xml().decode())
        (root / "metadata" / "bench.xml").write_bytes(self.sp.metadata_xml())
        self._cookie = self._signed_in()
        self._person, self._request, self._responses, self._policy = self._builder_inputs(services)

    def _signed_in(self) -> str:
        client = self.app.test_client()
        now = time.time()
        with client.session_transaction() as session:
            session["sso"] = {
                "person": {
                    **PERSON,
                    "guid": str(PERSON["guid"]),
                    "groups": list(PERSON["groups"]),
                    "group_dns": [],
                    "attributes": {},
                },
                "session_index": "bench-session",
                "authn_instant": now,
                "expires_at": now + 8 * 3600,
                "checked_at": now + 8 * 3600,  # checked "later" than every request here: no recheck in AD
                "sps": [],
                "issued": {},
                "oidc": [],
            }
        cookie = client.get_cookie(self.app.config["SESSION_COOKIE_NAME"])
        if cookie is None:
            raise BenchError("the planted session set no cookie")
        return f"{cookie.key}={cookie.value}"

    def _builder_inputs(self, services: Any) -> tuple[Any, Any, Any, Any]:
        from idp.person import Person

        with self.app.test_request_context():
            request = services.saml_requests.plain_request(SP_ENTITY_ID)
        policy = services.registry.policy_for(SP_ENTITY_ID)
        return Person(**PERSON), request, services.saml_responses, policy

    def environ(self, url: str) -> dict[str, Any]:
        from werkzeug.test import EnvironBuilder

        parts = urlsplit(url)
        builder = EnvironBuilder(
            path=parts.path, query_string=parts.query, base_url=IDP_BASE, headers=[("Cookie", self._cookie)]
        )
        try:
            return builder.get_environ()
        finally:
            builder.close()

    def call(self, environ: dict[str, Any], expect: bytes) -> None:
        status: list[str] = []

        def start_response(line: str, _headers: list[tuple[str, str]], _exc_info: object = None) -> Callable[..., Any]:
            status.append(line)
            return lambda _data: None

        body = b"".join(self.app(dict(environ), start_response))
        if not status or not status[0].startswith("200") or expect not in body:
            raise BenchError(f"{environ['PATH_INFO']} answered {status[:1]}: {body[:200]!r}")

    def build_response(self) -> None:
        from idp.sps.release import release

        name_id = self._responses.name_id(self._request, self._policy, self._person)
        self._responses.authn_response(
            self._request,
            self._policy,
            name_id,
            release(self._policy, self._person),
            session_index="bench-session",
            authn_instant=datetime.now(UTC),
        )


if __name__ == "__main__":
    sys.exit(main())
