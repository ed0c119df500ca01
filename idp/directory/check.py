"""Is Active Directory usable with these settings? Checked step by step, DC by DC, for `idp ldap test`.

Each step says how long it took and, when it failed, what an admin should read: a sign-in that fails says
only "directory unavailable", this says "the certificate does not match DC1.corp.example.com".
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from ldap3 import BASE, SIMPLE, SYNC, Connection
from ldap3.core.exceptions import LDAPException

from idp.directory.client import Directory
from idp.directory.errors import DirectoryError
from idp.directory.pool import make_server, receive_timeout
from idp.settings import LdapSettings, LoginSettings

STEPS = ("reachable", "tls", "service bind", "base DN")
"""The steps checked on every DC, in order; a failed step skips the ones after it."""


class StepFailed(Exception):
    """One check step did not pass; the message is for the admin."""


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    ms: float
    message: str
    """What was found ("ldaps", "CN=...") or, when not ok, what went wrong."""


@dataclass(frozen=True)
class ControllerReport:
    url: str
    steps: tuple[Step, ...]
    """The steps that ran; a failed step is the last one."""

    @property
    def ok(self) -> bool:
        return len(self.steps) == len(STEPS) and all(step.ok for step in self.steps)


@dataclass(frozen=True)
class UserReport:
    name: str
    found: bool
    ms: float
    dn: str | None = None
    mail: str | None = None
    groups: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class LockoutReport:
    """AD's lockout thresholds as the sign-in throttle sees them, and what an admin should change."""

    domain_threshold: int
    domain_window: float
    visible_psos: int
    """Fine-grained password policies the service account may read (AD hides them from non-admins)."""
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class DirectoryReport:
    controllers: tuple[ControllerReport, ...]
    user: UserReport | None
    lockout: LockoutReport | None = None

    @property
    def ok(self) -> bool:
        """AD is usable: at least one DC passed every step (and the user, when asked for, was looked up)."""
        return any(dc.ok for dc in self.controllers) and (self.user is None or self.user.error is None)


def check_directory(
    settings: LdapSettings, user: str | None = None, *, login: LoginSettings | None = None
) -> DirectoryReport:
    """Check every configured DC in turn, then (optionally) look the user up through the first good one;
    with ``login``, also compare the throttle's limits with AD's lockout thresholds."""
    controllers = tuple(_check_controller(settings, url) for url in settings.urls)
    good = next((dc.url for dc in controllers if dc.ok), None)
    user_report = None
    if user is not None:
        user_report = _check_user(settings, good, user)
    lockout = _check_lockout(settings, good, login) if login is not None and good is not None else None
    return DirectoryReport(controllers=controllers, user=user_report, lockout=lockout)


def _check_lockout(settings: LdapSettings, good_url: str, login: LoginSettings) -> LockoutReport | None:
    directory = Directory(settings.model_copy(update={"urls": [good_url]}))
    try:
        domain = directory.lockout_policy()
        visible = directory.count_password_policies()
    except DirectoryError:
        return None
    finally:
        directory.close()
    warnings = []
    if domain.threshold and login.max_failures_per_user >= domain.threshold:
        warnings.append(
            f"login.max_failures_per_user ({login.max_failures_per_user}) is at or above the domain's lockout "
            f"threshold ({domain.threshold}): the sign-in throttle stops at {domain.threshold - 1} instead; "
            "set it lower to make that visible in the configuration"
        )
    if visible == 0:
        warnings.append(
            "no fine-grained password policy (PSO) is readable by the service account: AD hides them from "
            "non-admins, so for people a PSO applies to the throttle assumes a lockout after "
            f"{login.unknown_lockout_threshold} wrong passwords (login.unknown_lockout_threshold). Grant the "
            "service account read access to CN=Password Settings Container,CN=System,<domain> to use the real "
            "thresholds (ignore this when the domain has no PSO)"
        )
    return LockoutReport(domain.threshold or 0, domain.observation_window, visible, tuple(warnings))


def _check_controller(settings: LdapSettings, url: str) -> ControllerReport:
    server = make_server(settings, url)
    conn = Connection(
        server,
        client_strategy=SYNC,
        receive_timeout=receive_timeout(settings),
        read_only=True,
        raise_exceptions=False,
        auto_referrals=False,
    )
    actions: list[Callable[[], str]] = [
        lambda: _reach(server.host, server.port, settings.connect_timeout),
        lambda: _secure(conn, settings, url),
        lambda: _bind_service(conn, settings),
        lambda: _read_base(conn, settings),
    ]
    steps: list[Step] = []
    try:
        for name, action in zip(STEPS, actions, strict=True):
            step = _timed(name, action)
            steps.append(step)
            if not step.ok:
                break
    finally:
        # The connection may never have opened, or already broke: closing it cannot fail the check.
        with contextlib.suppress(LDAPException, OSError):
            conn.unbind()
    return ControllerReport(url=url, steps=tuple(steps))


def _timed(name: str, action: Callable[[], str]) -> Step:
    start = time.perf_counter()
    try:
        message, ok = action(), True
    except (StepFailed, LDAPException, OSError) as exc:
        message, ok = str(exc) or type(exc).__name__, False
    return Step(name=name, ok=ok, ms=(time.perf_counter() - start) * 1000, message=message)


def _reach(host: str, port: int, timeout: float) -> str:
    with socket.create_connection((host, port), timeout=timeout):
        return f"{host}:{port}"


def _secure(conn: Connection, settings: LdapSettings, url: str) -> str:
    try:
        conn.open(read_server_info=False)
    except LDAPException as exc:
        raise StepFailed(f"{exc}{_tls_hint(str(exc))}") from exc
    if url.startswith("ldaps://"):
        return "ldaps, certificate valid" if settings.tls_verify else "ldaps, certificate NOT checked"
    if not settings.start_tls:
        return "none: passwords travel in clear text"
    if not conn.start_tls(read_server_info=False):
        raise StepFailed(f"StartTLS refused: {conn.result.get('description')} {conn.result.get('message', '')}")
    return "StartTLS, certificate valid" if settings.tls_verify else "StartTLS, certificate NOT checked"


def _tls_hint(error: str) -> str:
    if "doesn't match any name" in error:
        return " (add the certificate's name to ldap.tls_valid_names)"
    if "CERTIFICATE_VERIFY_FAILED" in error:
        return " (set ldap.ca_file to the CA that issued the DC's certificate)"
    return ""


def _bind_service(conn: Connection, settings: LdapSettings) -> str:
    ok = conn.rebind(settings.bind_dn, settings.service_password(), authentication=SIMPLE)
    conn.password = None
    if not ok:
        raise StepFailed(f"{settings.bind_dn} refused: {conn.result.get('message') or conn.result.get('description')}")
    return settings.bind_dn


def _read_base(conn: Connection, settings: LdapSettings) -> str:
    conn.search(settings.base_dn, "(objectClass=*)", BASE, attributes=["objectGUID"])
    if conn.result.get("result") != 0 or not conn.response:
        raise StepFailed(
            f"cannot read {settings.base_dn}: {conn.result.get('description')} {conn.result.get('message', '')}"
        )
    return settings.base_dn


def _check_user(settings: LdapSettings, good_url: str | None, name: str) -> UserReport:
    if good_url is None:
        return UserReport(name=name, found=False, ms=0.0, error="not looked up: no domain controller passed")
    start = time.perf_counter()
    directory = Directory(settings.model_copy(update={"urls": [good_url]}))
    try:
        person = directory.find(name)
    except DirectoryError as exc:
        return UserReport(name=name, found=False, ms=_ms(start), error=str(exc))
    finally:
        directory.close()
    if person is None:
        return UserReport(name=name, found=False, ms=_ms(start))
    return UserReport(name=name, found=True, ms=_ms(start), dn=person.dn, mail=person.mail, groups=person.groups)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000
