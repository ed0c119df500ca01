"""Kept-open LDAP connections to the domain controllers, with failover.

A new LDAPS connection plus bind costs ten times a re-bind on an open one (DESIGN.md §6), so connections
stay open between sign-ins. Each pool hands a connection to one thread at a time (ldap3's synchronous
connections are not meant to be shared) and takes it back afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ldap3 import NONE, SIMPLE, SYNC, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPBindError,
    LDAPCommunicationError,
    LDAPException,
    LDAPResponseTimeoutError,
    LDAPStartTLSError,
)
from ldap3.core.results import RESULT_INVALID_CREDENTIALS
from prometheus_client import Gauge

from idp import metrics
from idp.directory.errors import DirectoryUnavailable, ServiceAccountRejected
from idp.settings import LdapSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a connection that broke under us raises. ldap3 turns a server that hung up during a re-bind into
# LDAPBindError, so that counts as broken too.
BROKEN_CONNECTION = (LDAPCommunicationError, LDAPResponseTimeoutError, LDAPStartTLSError, LDAPBindError, OSError)

BACKOFF_SECONDS = 30.0
"""How long a domain controller that failed is tried only after the others."""


class DomainControllers:
    """The configured DCs in the admin's order of preference; one that just failed goes to the back."""

    def __init__(self, settings: LdapSettings, backoff: float = BACKOFF_SECONDS) -> None:
        self._backoff = backoff
        self._lock = threading.Lock()
        self._down_until: dict[str, float] = {}
        self._servers = [make_server(settings, url) for url in settings.urls]

    def in_order(self) -> list[Server]:
        """Healthy DCs first, then the ones in back-off: when all failed, trying them again beats refusing."""
        now = time.monotonic()
        with self._lock:
            return sorted(self._servers, key=lambda s: self._down_until.get(server_url(s), 0.0) > now)

    def failed(self, server: Server) -> None:
        with self._lock:
            self._down_until[server_url(server)] = time.monotonic() + self._backoff
        metrics.LDAP_DC_UP.labels(dc=server_url(server)).set(0)

    def succeeded(self, server: Server) -> None:
        with self._lock:
            self._down_until.pop(server_url(server), None)
        metrics.LDAP_DC_UP.labels(dc=server_url(server)).set(1)


@dataclass(frozen=True)
class PoolStats:
    opened: int
    """Connections opened since the pool was made (a re-bind on an open one does not count)."""
    replaced: int
    """Connections found broken during an operation and replaced by a fresh one."""
    idle: int
    """Open connections waiting for work right now."""


class ConnectionPool:
    """Open, TLS-protected connections to the first DC that answers.

    With ``bind_as_service`` each new connection binds as the service account (for searches); without it
    connections stay anonymous until the caller re-binds them as the person signing in.
    """

    def __init__(self, settings: LdapSettings, controllers: DomainControllers, *, bind_as_service: bool) -> None:
        self._settings = settings
        self._controllers = controllers
        self._bind_as_service = bind_as_service
        self._kind = "search" if bind_as_service else "bind"
        self._lock = threading.Lock()
        self._idle: deque[Connection] = deque()
        self._opened = 0
        self._replaced = 0

    def run(self, operation: Callable[[Connection], T]) -> T:
        """Run ``operation`` on a pooled connection; a connection that broke is replaced once, transparently."""
        conn = self._take()
        try:
            result = operation(conn)
        except BROKEN_CONNECTION as first:
            # Usually an idle connection the DC (or a firewall) closed: not a reason to distrust the DC yet.
            log.info("LDAP connection to %s broke (%s); replacing it", server_url(conn.server), first)
            _close(conn)
            with self._lock:
                self._replaced += 1
            metrics.LDAP_REPLACED.labels(dc=server_url(conn.server)).inc()
            conn = self._open()
            try:
                result = operation(conn)
            except BROKEN_CONNECTION as second:
                _close(conn)
                self._controllers.failed(conn.server)
                url = server_url(conn.server)
                raise DirectoryUnavailable(f"{url} broke the connection twice: {second}") from second
            except BaseException:
                _close(conn)
                raise
        except BaseException:
            _close(conn)
            raise
        self._give_back(conn)
        return result

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(opened=self._opened, replaced=self._replaced, idle=len(self._idle))

    def close(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle), deque()
        for conn in idle:
            self._idle_gauge(conn).dec()
            _close(conn)

    def _take(self) -> Connection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                self._idle_gauge(conn).dec()
                if not conn.closed:
                    return conn
        return self._open()

    def _give_back(self, conn: Connection) -> None:
        with self._lock:
            if len(self._idle) < self._settings.pool_size:
                self._idle.append(conn)
                self._idle_gauge(conn).inc()
                return
        _close(conn)

    def _open(self) -> Connection:
        problems: list[str] = []
        for server in self._controllers.in_order():
            try:
                conn = self._connect(server)
            except (LDAPException, OSError) as exc:
                self._controllers.failed(server)
                problems.append(f"{server_url(server)}: {exc}")
                metrics.LDAP_CONNECT_FAILURES.labels(dc=server_url(server)).inc()
                log.warning("domain controller %s failed: %s", server_url(server), exc)
                continue
            self._controllers.succeeded(server)
            with self._lock:
                self._opened += 1
            metrics.LDAP_OPENED.labels(dc=server_url(server), pool=self._kind).inc()
            return conn
        raise DirectoryUnavailable("no domain controller answered: " + "; ".join(problems))

    def _idle_gauge(self, conn: Connection) -> Gauge:
        return metrics.LDAP_IDLE.labels(dc=server_url(conn.server), pool=self._kind)

    def _connect(self, server: Server) -> Connection:
        conn = Connection(
            server,
            client_strategy=SYNC,
            receive_timeout=receive_timeout(self._settings),
            read_only=True,
            raise_exceptions=False,
            auto_referrals=False,
        )
        conn.open(read_server_info=False)
        try:
            if self._settings.start_tls and not conn.start_tls(read_server_info=False):
                raise LDAPStartTLSError(f"StartTLS refused: {conn.result}")
            if self._bind_as_service:
                self._bind_service_account(conn)
        except BaseException:
            _close(conn)
            raise
        return conn

    def _bind_service_account(self, conn: Connection) -> None:
        ok = conn.rebind(self._settings.bind_dn, self._settings.service_password(), authentication=SIMPLE)
        # Keep the password only as long as the bind needs it.
        conn.password = None
        if ok:
            return
        if conn.result.get("result") == RESULT_INVALID_CREDENTIALS:
            raise ServiceAccountRejected(
                f"the domain controller refused the service account {self._settings.bind_dn}: "
                f"{conn.result.get('message', '')}"
            )
        raise LDAPBindError(f"service account bind failed: {conn.result.get('description')}")


def make_server(settings: LdapSettings, url: str) -> Server:
    """One DC as ldap3 sees it: certificate checks as configured, no schema reading, a connect timeout."""
    tls = Tls(
        validate=ssl.CERT_REQUIRED if settings.tls_verify else ssl.CERT_NONE,
        ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
        valid_names=settings.tls_valid_names or None,
    )
    # get_info=NONE: reading the AD schema on every new connection costs more than the sign-in itself.
    return Server(url, tls=tls, get_info=NONE, connect_timeout=settings.connect_timeout)


def receive_timeout(settings: LdapSettings) -> int:
    # ldap3 packs this into SO_RCVTIMEO as whole seconds; a float makes open() fail.
    return max(1, math.ceil(settings.receive_timeout))


def server_url(server: Server) -> str:
    return f"{'ldaps' if server.ssl else 'ldap'}://{server.host}:{server.port}"


def _close(conn: Connection) -> None:
    # It is being thrown away, often because it broke: a failing unbind changes nothing.
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()
