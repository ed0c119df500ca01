"""Two IdP nodes behind the shipped nginx site, with a PostgreSQL, a Redis and two ways to the DC that belong
to this cluster alone, so that each can be killed, restarted, slowed or locked without touching anything
another test (or another person on the machine) uses.

Used by tests/e2e/test_faults.py and by `python -m bench.faults`. Everything lives under one directory and
on ports of its own; ``Cluster.close`` stops it all.

- PostgreSQL: ``initdb`` into the directory (as the ``postgres`` user, from /usr/lib/postgresql/*/bin), its
  own port, fsync off (nothing here must survive a power cut; a restart it must survive, and does).
- Redis: ``redis-server`` with an append-only file, as sessions need in production: a restart keeps them.
- The DC: two TCP proxies in front of the run's Samba DC stand for two domain controllers (``ldap.urls``
  lists both, the first preferred). Stopping one is a DC going down (its open connections are cut, new
  ones refused); ``delay`` holds every reply of both back, which is AD being slow.
- nginx: deploy/nginx/idp.conf with its upstream, ports and certificate rewritten for the cluster; TLS with a
  certificate for 127.0.0.1 made here, which clients trust through SSL_CERT_FILE.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import ipaddress
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from idp.demo.samba_dc import SambaDC
from idp.settings import render_toml

REPO = Path(__file__).resolve().parents[2]
NGINX_SITE = REPO / "deploy" / "nginx" / "idp.conf"


class ClusterError(RuntimeError):
    """A part of the cluster did not start; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _wait(probe, *, within: float, what: str, log: Path | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if probe():
                return
        time.sleep(0.1)
    raise ClusterError(f"{what} within {within:.0f} s" + (f":\n{_tail(log)}" if log else ""))


# --- PostgreSQL -----------------------------------------------------------------------------------------


class OwnPostgres:
    def __init__(self, root: Path) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise ClusterError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self._bin = Path(bins[-1])
        self.port = free_port()
        self.dir = root / "pg"
        self.log = root / "pg.log"
        root.chmod(0o755)  # the postgres user walks in
        self.dir.mkdir()
        shutil.chown(self.dir, "postgres", "postgres")
        self.log.touch()
        shutil.chown(self.log, "postgres", "postgres")
        self._as_postgres("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self._bin / tool), *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise ClusterError(f"{tool} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}\n{_tail(self.log)}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._as_postgres("pg_ctl", "-D", str(self.dir), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        # fast: open transactions are rolled back, connections cut, as a restart by an admin does.
        self._as_postgres("pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.dir / "postmaster.pid").exists()


# --- Redis ------------------------------------------------------------------------------------------------


class OwnRedis:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.dir = root / "redis"
        self.dir.mkdir()
        self.log = root / "redis.log"
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)),
                *("--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--logfile", str(self.log)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self._answers, within=20, what="redis-server did not answer", log=self.log)

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()  # SIGTERM: Redis writes its append-only file and exits
            self._process.wait(timeout=30)
            self._process = None


# --- a TCP proxy standing for a domain controller --------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:port to ``target``; ``delay`` seconds are waited before each reply is passed on."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.delay = 0.0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"ldaps://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """The DC is gone: no new connection is accepted, the open ones are cut."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._open = self._open, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self.delay:
                    time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(source)


# --- TLS for nginx ---------------------------------------------------------------------------------------


def make_tls(folder: Path, port: int) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (a SAN, as browsers and Python require) and its key. The subject
    names the port: clients trusting two clusters' certificates find each by its own name."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"fault cluster nginx 127.0.0.1:{port}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "tls.crt", folder / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def nginx_site(upstreams: list[int], port: int, cert: Path, key: Path) -> str:
    """The shipped site as the cluster runs it: the same proxying, health and error rules; its own upstream
    lines, port and certificate, and no port-80 redirect."""
    site = NGINX_SITE.read_text()
    line = re.search(r"^\s*server 127\.0\.0\.1:8000 (.*);$", site, re.MULTILINE)
    if line is None:
        raise ClusterError(f"{NGINX_SITE}: no `server 127.0.0.1:8000 ...;` line in its upstream block")
    nodes = "".join(f"    server 127.0.0.1:{p} {line.group(1)};\n" for p in upstreams)
    site = site.replace(line.group(0) + "\n", nodes, 1)
    site = re.sub(r"server \{\s*listen 80;.*?\n\}\n", "", site, count=1, flags=re.DOTALL)
    site = re.sub(r"^\s*listen \[::\].*\n", "", site, flags=re.MULTILINE)
    site = re.sub(r"listen 443 ssl", f"listen 127.0.0.1:{port} ssl", site)
    site = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", site)
    return re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", site)


class Nginx:
    def __init__(self, root: Path, upstreams: list[int]) -> None:
        self.port = free_port()
        self.dir = root / "nginx"
        self.dir.mkdir()
        self.cert, key = make_tls(self.dir, self.port)
        (self.dir / "site.conf").write_text(nginx_site(upstreams, self.port, self.cert, key))
        (self.dir / "nginx.conf").write_text(
            f"user root;\nworker_processes 1;\npid {self.dir}/nginx.pid;\nerror_log {self.dir}/error.log;\n"
            f"events {{ worker_connections 512; }}\n"
            f"http {{\n  access_log {self.dir}/access.log;\n  client_body_temp_path {self.dir}/body;\n"
            f"  proxy_temp_path {self.dir}/proxy;\n  include {self.dir}/site.conf;\n}}\n"
        )
        self._process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        conf = str(self.dir / "nginx.conf")
        subprocess.run(["nginx", "-t", "-q", "-c", conf, "-p", str(self.dir)], check=True, capture_output=True)
        self._process = subprocess.Popen(
            ["nginx", "-c", conf, "-p", str(self.dir), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: socket.create_connection(("127.0.0.1", self.port), 1), within=20, what="nginx did not listen")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=20)
            self._process = None


# --- the IdP nodes --------------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    config: Path
    port: int
    log: Path
    workers: int = 2
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    listening_after: float | None = None
    """Seconds from the last start to the port accepting connections."""
    answering_after: float | None = None
    """Seconds from the last start to the first answer of /healthz."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> None:
        self.started_at = time.monotonic()
        self.listening_after = self.answering_after = None
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "idp.cli", "serve"),
                    f"--bind=127.0.0.1:{self.port}",
                    f"--workers={self.workers}",
                ],
                env={**os.environ, "IDP_CONFIG": str(self.config)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() takes the master and every worker
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, within: float = 90) -> None:
        """Wait for /healthz, noting when the port began to accept connections and when it first answered."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ClusterError(f"{self.name} exited with {self.process.returncode}:\n{_tail(self.log)}")
            if self.listening_after is None:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                    self.listening_after = time.monotonic() - self.started_at
            if self.listening_after is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                        self.answering_after = time.monotonic() - self.started_at
                        return
            time.sleep(0.02)
        raise ClusterError(f"{self.name} did not answer /healthz within {within:.0f} s:\n{_tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL to the master and every worker at once: the machine or container died."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None


# --- the whole cluster -----------------------------------------------------------------------------------


@dataclass
class Cluster:
    root: Path
    dc: SambaDC
    postgres: OwnPostgres
    redis: OwnRedis
    dcs: list[TcpProxy]
    nodes: list[Node]
    nginx: Nginx
    database_url: str
    started: list[object] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.nginx.base_url

    def idp(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "idp.cli", *args],
            env={**os.environ, "IDP_CONFIG": str(self.nodes[0].config)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise ClusterError(f"idp {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def slow_ad(self, delay: float) -> None:
        for proxy in self.dcs:
            proxy.delay = delay

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nginx.stop()
        for proxy in self.dcs:
            proxy.stop()
        self.redis.stop()
        if self.postgres.running():
            with contextlib.suppress(ClusterError):
                self.postgres.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def build_cluster(
    dc: SambaDC, *, nodes: int = 2, workers: int = 2, sqlite: bool = False, ldap: dict | None = None
) -> Cluster:
    """Start everything, ready for traffic through ``cluster.base_url``; close() it afterwards.

    ``sqlite``: one database file on the nodes' shared disk instead of PostgreSQL (for one node: the
    locked-database fault). ``ldap`` overrides [ldap] settings (shorter timeouts for the slow-AD fault)."""
    root = Path(tempfile.mkdtemp(prefix="idp-faults-"))
    postgres = OwnPostgres(root)
    redis = OwnRedis(root)
    host, port = dc.ip, 636
    proxies = [TcpProxy((host, port)), TcpProxy((host, port))]
    node_ports = [free_port() for _ in range(nodes)]
    nginx = Nginx(root, node_ports)
    database_url = f"sqlite:///{root / 'shared' / 'idp.db'}" if sqlite else postgres.url
    shared = root / "shared"  # what every node must share: keys, the secret key, SP metadata
    (shared / "metadata").mkdir(parents=True)
    ldap_settings = {**dc.ldap_settings(), "urls": [p.url for p in proxies], **(ldap or {})}
    cluster_nodes = []
    for i, node_port in enumerate(node_ports):
        config = {
            "server": {
                "base_url": nginx.base_url,
                "data_dir": root / f"node{i}",
                "secret_key_file": shared / "secret_key",
                "trusted_proxy_count": 1,
                "session_backend": "redis",
                "redis_url": redis.url,
                "rate_limit_per_minute": 0,  # the whole load comes from one address
            },
            "idp": {
                "key_file": shared / "certs/idp.key",
                "cert_file": shared / "certs/idp.crt",
                "persistent_id_secret_file": shared / "certs/persistent-id.secret",
            },
            "metadata": {"dir": shared / "metadata"},
            "mfa": {"key_file": shared / "certs/mfa.key"},
            "database": {"url": database_url},
            "ldap": ldap_settings,
        }
        path = root / f"node{i}.toml"
        path.write_text(render_toml(config))
        cluster_nodes.append(Node(f"node{i + 1}", path, node_port, root / f"node{i}.log", workers))
    cluster = Cluster(root, dc, postgres, redis, proxies, cluster_nodes, nginx, database_url)
    try:
        postgres.start()
        redis.start()
        for proxy in proxies:
            proxy.start()
        cluster.idp("keys", "init")
        for node in cluster_nodes:
            node.start(wait=False)
        for node in cluster_nodes:
            node.wait_ready()
        nginx.start()
    except BaseException:
        cluster.close()
        raise
    return cluster


@contextlib.contextmanager
def sqlite_write_lock(database_url: str, seconds: float) -> Iterator[None]:
    """Another process holds the SQLite database's write lock (BEGIN IMMEDIATE) for ``seconds``."""
    path = database_url.removeprefix("sqlite:///")
    code = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(float(sys.argv[2])); c.rollback()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "locked":
            raise ClusterError("the lock holder could not take SQLite's write lock")
        yield
    finally:
        holder.wait(timeout=seconds + 30)


@dataclass(frozen=True)
class StoredRows:
    audit_max_id: int
    audit_rows: int
    """Rows with an id up to audit_max_id."""
    outbox_items: int


def stored_rows(database_url: str, *, audit_up_to: int | None = None) -> StoredRows:
    """What the database holds: audit rows (up to an id, to compare a later count with an earlier one) and
    provisioning outbox items."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as conn:
            top = conn.scalar(sqlalchemy.text("SELECT coalesce(max(id), 0) FROM audit_events")) or 0
            limit = top if audit_up_to is None else audit_up_to
            count = conn.scalar(sqlalchemy.text("SELECT count(*) FROM audit_events WHERE id <= :n"), {"n": limit})
            outbox = conn.scalar(sqlalchemy.text("SELECT count(*) FROM provisioning_outbox"))
    finally:
        engine.dispose()
    return StoredRows(int(limit), int(count or 0), int(outbox or 0))


def seed_outbox(database_url: str, count: int) -> None:
    """Queue ``count`` mailbox creations, as sign-ins do while the mail provider is down."""
    from idp.provisioning.outbox import Outbox
    from idp.provisioning.provider import MailboxSpec
    from idp.store.db import Database

    db = Database(database_url)
    try:
        for n in range(count):
            spec = MailboxSpec(email=f"queued{n}@example.test", display_name=f"Queued {n}")
            Outbox(db).enqueue(f"guid-queued-{n}", f"queued{n}", spec, "provider down (seeded by the fault test)")
    finally:
        db.dispose()


def audit_reasons(database_url: str, request_ids: list[str]) -> dict[str, str]:
    """Request id -> reason of the failed sign-in it recorded."""
    import sqlalchemy

    if not request_ids:
        return {}
    engine = sqlalchemy.create_engine(database_url)
    query = sqlalchemy.text(
        "SELECT request_id, reason FROM audit_events WHERE result = 'failure' AND request_id IN :ids"
    ).bindparams(sqlalchemy.bindparam("ids", expanding=True))
    try:
        with engine.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(query, {"ids": request_ids})}
    finally:
        engine.dispose()


def audit_request_ids(database_url: str, *, event: str = "signin", result: str = "success") -> set[str]:
    """Request ids of the audit rows of one kind, read straight from the database."""
    if database_url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as conn:
            rows = conn.execute(
                "SELECT request_id FROM audit_events WHERE event = ? AND result = ?", (event, result)
            ).fetchall()
    else:
        import sqlalchemy

        engine = sqlalchemy.create_engine(database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sqlalchemy.text("SELECT request_id FROM audit_events WHERE event = :e AND result = :r"),
                    {"e": event, "r": result},
                ).all()
        finally:
            engine.dispose()
    return {r[0] for r in rows if r[0]}
