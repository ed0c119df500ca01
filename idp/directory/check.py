"""Is Active Directory usable with these settings? Checked step by step, DC by DC, for `idp ldap test`.

Each step says how long it took and, when it failed, what an admin should read: a sign-in that fails says
only "directory unavailable", this says "the certificate does not match DC1.corp.example.com".
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ldap3 import BASE, SIMPLE, SYNC, Connection
from ldap3.core.exceptions import LDAPException
from ldap3.core.results import (
    RESULT_CONFIDENTIALITY_REQUIRED,
    RESULT_INSUFFICIENT_ACCESS_RIGHTS,
    RESULT_INVALID_DN_SYNTAX,
    RESULT_NO_SUCH_OBJECT,
    RESULT_STRONGER_AUTH_REQUIRED,
)

from idp.directory.ad_codes import bind_refusal, sub_code
from idp.directory.client import Directory
from idp.directory.errors import (
    AccountDisabled,
    AccountExpired,
    AccountLocked,
    DirectoryError,
    InvalidCredentials,
    LogonHoursRestricted,
    PasswordExpired,
    PasswordMustChange,
    WorkstationRestricted,
)
from idp.directory.pool import make_server, receive_timeout
from idp.settings import LdapSettings, LoginSettings

TlsMode = Literal["LDAPS", "StartTLS", "clear text"]

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
    tls_mode: TlsMode
    """How passwords travel to this DC with these settings (whether or not the tls step passed)."""

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
    settings: LdapSettings,
    user: str | None = None,
    *,
    login: LoginSettings | None = None,
    allow_cleartext: bool = False,
) -> DirectoryReport:
    """Check every configured DC in turn, then (optionally) look the user up through the first good one;
    with ``login``, also compare the throttle's limits with AD's lockout thresholds. A DC reached in clear
    text fails its tls step unless ``allow_cleartext``."""
    controllers = tuple(_check_controller(settings, url, allow_cleartext) for url in settings.urls)
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


def _check_controller(settings: LdapSettings, url: str, allow_cleartext: bool) -> ControllerReport:
    conn: Connection | None = None

    def secure() -> str:
        nonlocal conn
        conn = _secure(settings, url, allow_cleartext)
        mode = tls_mode(settings, url)
        if mode == "clear text":
            return "clear text: passwords cross the network unencrypted (allowed by --allow-cleartext)"
        return f"{mode}, certificate {'checked' if settings.tls_verify else 'NOT checked (ldap.tls_verify = false)'}"

    actions: list[Callable[[], str]] = [
        lambda: _reach(url, settings.connect_timeout),
        secure,
        lambda: _bind_service(_opened(conn), settings),
        lambda: _read_base(_opened(conn), settings),
    ]
    steps: list[Step] = []
    try:
        for name, action in zip(STEPS, actions, strict=True):
            step = _timed(name, action)
            steps.append(step)
            if not step.ok:
                break
    finally:
        if conn is not None:
            _close(conn)
    return ControllerReport(url=url, steps=tuple(steps), tls_mode=tls_mode(settings, url))


def tls_mode(settings: LdapSettings, url: str) -> TlsMode:
    """How passwords travel to the DC at ``url`` with these settings."""
    if url.lower().startswith("ldaps://"):
        return "LDAPS"
    return "StartTLS" if settings.start_tls else "clear text"


def address(url: str) -> tuple[str, int]:
    """The host and port of a DC's URL (636 for ldaps://, 389 for ldap:// when the URL names none)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname or "", port or (636 if parts.scheme.lower() == "ldaps" else 389)


def unreachable(url: str, timeout: float) -> str | None:
    """Why no TCP connection to the DC at ``url`` opens within ``timeout`` seconds, or None when one does.
    Cheap (no TLS, no bind): the readiness probe uses it too."""
    try:
        _reach(url, timeout)
    except StepFailed as exc:
        return str(exc)
    return None


def _reach(url: str, timeout: float) -> str:
    host, port = address(url)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return f"{host}:{port}"
    except OSError as exc:
        raise StepFailed(_network_words(exc, host, port, timeout)) from None


def _network_words(exc: OSError, host: str, port: int, timeout: float) -> str:
    if isinstance(exc, socket.gaierror):
        return f"the name {host} does not resolve (check the URL and this machine's DNS)"
    if isinstance(exc, TimeoutError):
        return f"no answer from {host}:{port} within {timeout:g} s (the DC is down, or a firewall drops the packets)"
    if isinstance(exc, ConnectionRefusedError):
        return f"{host}:{port} refused the connection: nothing listens there (LDAPS is port 636, LDAP 389)"
    return f"cannot connect to {host}:{port}: {exc.strerror or type(exc).__name__}"


def _secure(settings: LdapSettings, url: str, allow_cleartext: bool) -> Connection:
    mode = tls_mode(settings, url)
    if mode == "clear text" and not allow_cleartext:
        raise StepFailed(
            "clear text: the service account's and every employee's password would cross the network "
            "unencrypted; use ldaps:// or set ldap.start_tls = true (--allow-cleartext to test anyway)"
        )
    if settings.ca_file is not None and not settings.ca_file.is_file():
        raise StepFailed(f"ldap.ca_file {settings.ca_file} does not exist")
    try:
        server = make_server(settings, url)
    except LDAPException as exc:
        raise StepFailed(_tls_words(str(exc), settings, url)) from None
    conn = Connection(
        server,
        client_strategy=SYNC,
        receive_timeout=receive_timeout(settings),
        read_only=True,
        raise_exceptions=False,
        auto_referrals=False,
    )
    try:
        conn.open(read_server_info=False)
        if mode == "StartTLS" and not conn.start_tls(read_server_info=False):
            raise StepFailed(f"the DC refused StartTLS: {_result_text(conn.result)}")
    except StepFailed:
        _close(conn)
        raise
    except (LDAPException, OSError) as exc:
        _close(conn)
        raise StepFailed(_tls_words(str(exc), settings, url)) from None
    return conn


def _tls_words(error: str, settings: LdapSettings, url: str) -> str:
    """ldap3's text for a failed TLS set-up (a Python repr, a whole certificate as a dict) as one sentence."""
    host, port = address(url)
    if "invalid CA public key file" in error:
        return f"ldap.ca_file {settings.ca_file} is not a readable PEM certificate"
    if "doesn't match any name" in error:
        names = sorted(set(re.findall(r"\('(?:commonName|DNS|IP Address)', '([^']+)'\)", error)))
        found = f" ({', '.join(names)})" if names else ""
        return (
            f"the DC's certificate names{found} do not include {host}: use that name in the URL, or add it to "
            "ldap.tls_valid_names"
        )
    if "CERTIFICATE_VERIFY_FAILED" in error:
        why = "it is self-signed" if "self-signed" in error or "self signed" in error else "its issuer is unknown"
        return f"the DC's certificate is not trusted ({why}): set ldap.ca_file to the CA that issued it" + (
            "" if settings.ca_file is None else f" (now {settings.ca_file})"
        )
    # A plain LDAP port answers a TLS hello with garbage or hangs up on it.
    not_tls = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer", "Connection reset", "EOF occurred")
    if any(sign in error for sign in not_tls):
        return f"{host}:{port} does not speak TLS: LDAPS is port 636; for port 389 use ldap:// with start_tls = true"
    if "timed out" in error:
        return f"the DC accepted the connection but did not finish the TLS handshake in {settings.connect_timeout:g} s"
    if "refused" in error.lower():
        return f"{host}:{port} refused the connection"
    return "TLS could not be set up: " + _first_words(error)


def _first_words(error: str) -> str:
    # ldap3 nests exceptions as reprs of tuples and lists: keep the innermost sentence.
    quoted = re.findall(r"'([^'\[\]()]{8,})'", error)
    return (quoted[-1] if quoted else error)[:200]


_SERVICE_REFUSALS: dict[type[DirectoryError], str] = {
    InvalidCredentials: "wrong password, or no such account (bind as user@realm, DOMAIN\\user or the DN)",
    AccountDisabled: "the account is disabled",
    AccountExpired: "the account has expired",
    AccountLocked: "the account is locked after too many wrong passwords",
    PasswordExpired: "its password has expired: set a new one in AD and in ldap.bind_password_file",
    PasswordMustChange: "its password must be changed first (untick 'must change password at next logon')",
    LogonHoursRestricted: "its logon hours do not allow it now",
    WorkstationRestricted: "it may not log on from this computer ('log on to' workstations)",
}


def _bind_service(conn: Connection, settings: LdapSettings) -> str:
    try:
        ok = conn.rebind(settings.bind_dn, settings.service_password(), authentication=SIMPLE)
    except (LDAPException, OSError) as exc:
        raise StepFailed(f"the DC dropped the connection during the bind: {_first_words(str(exc))}") from None
    finally:
        conn.password = None
    if ok:
        return settings.bind_dn
    result = conn.result
    if result.get("result") in (RESULT_STRONGER_AUTH_REQUIRED, RESULT_CONFIDENTIALITY_REQUIRED):
        raise StepFailed("the DC refuses password binds without TLS: use ldaps:// or set ldap.start_tls = true")
    refusal = bind_refusal(result)
    words = _SERVICE_REFUSALS.get(type(refusal))
    if words is None:
        raise StepFailed(f"the DC did not check the password of {settings.bind_dn}: {_result_text(result)}")
    code = sub_code(result.get("message"))
    raise StepFailed(
        f"AD refused the service account {settings.bind_dn}: {words}" + (f" (AD code data {code})" if code else "")
    )


def _read_base(conn: Connection, settings: LdapSettings) -> str:
    try:
        conn.search(settings.base_dn, "(objectClass=*)", BASE, attributes=["objectGUID"])
    except (LDAPException, OSError) as exc:
        raise StepFailed(f"cannot read {settings.base_dn}: {_first_words(str(exc))}") from None
    code = conn.result.get("result")
    if code == 0 and conn.response:
        return settings.base_dn
    if code == RESULT_NO_SUCH_OBJECT:
        root = _naming_context(conn)
        hint = f"; the domain's root is {root}" if root else ""
        raise StepFailed(f"ldap.base_dn {settings.base_dn} does not exist in this domain{hint}")
    if code == RESULT_INVALID_DN_SYNTAX:
        raise StepFailed(f"ldap.base_dn {settings.base_dn!r} is not a DN (e.g. DC=corp,DC=example,DC=com)")
    if code == 0 or code == RESULT_INSUFFICIENT_ACCESS_RIGHTS:
        raise StepFailed(f"the service account may not read {settings.base_dn}")
    raise StepFailed(f"cannot read {settings.base_dn}: {_result_text(conn.result)}")


def _naming_context(conn: Connection) -> str | None:
    """The domain's own root, from the DC's root DSE, to suggest in place of a base DN that does not exist."""
    try:
        conn.search("", "(objectClass=*)", BASE, attributes=["defaultNamingContext"])
    except (LDAPException, OSError):
        return None
    if conn.result.get("result") != 0 or not conn.response:
        return None
    value = conn.response[0].get("attributes", {}).get("defaultNamingContext")
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if value else None


def _result_text(result: Mapping[str, object]) -> str:
    return f"{result.get('description')} {result.get('message') or ''}".strip()


def _opened(conn: Connection | None) -> Connection:
    assert conn is not None  # the tls step that opens it ran and passed before any step that uses it
    return conn


def _close(conn: Connection) -> None:
    # The connection may never have opened, or already broke: closing it cannot fail the check.
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()


def _timed(name: str, action: Callable[[], str]) -> Step:
    start = time.perf_counter()
    try:
        message, ok = action(), True
    except StepFailed as exc:
        message, ok = str(exc), False
    except (LDAPException, OSError) as exc:
        # Every known failure is put in words above; this is the net for one nobody has seen yet.
        message, ok = f"{type(exc).__name__}: {_first_words(str(exc))}", False
    return Step(name=name, ok=ok, ms=(time.perf_counter() - start) * 1000, message=message)


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
