"""A person's own password change in AD, the rules it must meet, and when the current one expires.

The change is AD's user change, not an admin reset: one LDAP modify of ``unicodePwd`` that deletes the old
value and adds the new one, each the quoted password in UTF-16LE, over an encrypted connection. AD checks the
old value, the domain's (or the person's PSO's) length, complexity, history and minimum age, exactly as for
Ctrl-Alt-Del. A person whose password has expired (532) or must be changed (773) cannot bind, so the modify
is sent by the service account: AD grants the "Change Password" right on every user to Everyone by default,
and a delete+add with the right old value is a change, never a reset, so the service account needs no
reset rights and the old password stays the proof.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TypeVar

from ldap3 import BASE, MODIFY_ADD, MODIFY_DELETE, SIMPLE, SYNC, Connection
from ldap3.core.exceptions import LDAPException
from ldap3.core.results import (
    RESULT_CONSTRAINT_VIOLATION,
    RESULT_INSUFFICIENT_ACCESS_RIGHTS,
    RESULT_UNWILLING_TO_PERFORM,
)

from idp.codes import DirectoryReason
from idp.directory.account import filetime
from idp.directory.ad_codes import WRONG_USERNAME_OR_PASSWORD
from idp.directory.attributes import EXPIRY_ATTRIBUTE
from idp.directory.client import Account
from idp.directory.errors import DirectoryError, DirectoryUnavailable, InvalidCredentials, ServiceAccountRejected
from idp.directory.lockout import filetime_seconds, interval_seconds
from idp.directory.pool import DomainControllers, receive_timeout, server_url
from idp.person import Person
from idp.settings import LdapSettings

T = TypeVar("T")

_DOMAIN_RULES = ("minPwdLength", "pwdProperties", "pwdHistoryLength", "minPwdAge", "maxPwdAge")
_PSO_RULES = (
    "msDS-MinimumPasswordLength",
    "msDS-PasswordComplexityEnabled",
    "msDS-PasswordHistoryLength",
    "msDS-MinimumPasswordAge",
    "msDS-MaximumPasswordAge",
)
_DOMAIN_PASSWORD_COMPLEX = 0x1
_NEVER_EXPIRES = 0x7FFFFFFFFFFFFFFF
_UF_DONT_EXPIRE_PASSWD = 0x10000


class PasswordRefused(DirectoryError):
    """AD refused the new password (constraint violation 0000052D); the subclass says which rule."""

    reason: DirectoryReason = "password_rejected"


class PasswordTooShort(PasswordRefused):
    reason = "password_too_short"


class PasswordNotComplex(PasswordRefused):
    reason = "password_not_complex"


class PasswordInHistory(PasswordRefused):
    reason = "password_in_history"


class PasswordTooSoon(PasswordRefused):
    reason = "password_too_soon"


@dataclass(frozen=True)
class PasswordRules:
    """What a new password must meet, as AD applies it to one person."""

    min_length: int
    complexity: bool
    """Three of: upper case, lower case, digits, other characters; and not the account name."""
    history: int
    """The last this many passwords may not be used again."""
    min_age_days: float
    max_age_days: float | None
    """None: the password never expires under this policy."""
    source: str
    """"domain", or the DN of the PSO that applies."""


def meets_complexity(password: str, username: str) -> bool:
    """AD's complexity rule, to say which rule a bare 0000052D broke (AD itself does not say)."""
    kinds = [
        any(c.isupper() for c in password),
        any(c.islower() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() for c in password),
    ]
    contains_name = len(username) >= 3 and username.casefold() in password.casefold()
    return sum(kinds) >= 3 and not contains_name


def refusal(message: str, rules: PasswordRules, new: str, username: str) -> DirectoryError:
    """The typed error for AD's refusal of a change. Samba names the rule in its message; Windows AD says
    only 0000052D, so the rules the person can check themselves are tried first, then the ones only AD knows."""
    text = message.casefold()
    if text.startswith("00000056") or "old password" in text:
        return InvalidCredentials(WRONG_USERNAME_OR_PASSWORD)
    if "too short" in text or len(new) < rules.min_length:
        return PasswordTooShort(f"shorter than {rules.min_length} characters (AD: {message})")
    if "complexity" in text or (rules.complexity and not meets_complexity(new, username)):
        return PasswordNotComplex(f"does not meet the complexity rule (AD: {message})")
    if "history" in text or "previous password" in text:
        return PasswordInHistory(f"one of the last {rules.history} passwords (AD: {message})")
    if "too young" in text:
        return PasswordTooSoon(f"changed less than {rules.min_age_days:g} days ago (AD: {message})")
    return PasswordRefused(f"AD refused the new password: {message}")


def expires_at(person: Person) -> datetime | None:
    """When the person's password expires, as with_expiry left it; None when it never does or is unknown."""
    values = person.attributes.get(EXPIRY_ATTRIBUTE, ())
    if not values or not re.fullmatch(r"\d+", values[0]) or int(values[0]) >= _NEVER_EXPIRES:
        return None
    seconds = filetime_seconds(values[0])
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def with_expiry(person: Person, max_age: Callable[[str | None], float | None]) -> Person:
    """``person`` with EXPIRY_ATTRIBUTE worked out as AD does: pwdLastSet plus the maximum age of the policy
    that applies (``max_age(pso_dn)`` in seconds, None: never or unknown); unchanged when the password never
    expires, must be changed now, or the attributes were not read."""

    def first(name: str) -> str:
        return next(iter(person.attributes.get(name, ())), "")

    if not first("pwdLastSet").isdigit() or int(first("userAccountControl") or 0) & _UF_DONT_EXPIRE_PASSWD:
        return person
    last_set = filetime_seconds(first("pwdLastSet"))
    age = max_age(first("msDS-ResultantPSO") or None)
    if last_set is None or not age:
        return person
    expiry = str(filetime(last_set + age))
    return replace(person, attributes={**person.attributes, EXPIRY_ATTRIBUTE: (expiry,)})


class PasswordChanges:
    """Changes passwords through a connection of its own: the sign-in pools are read-only on purpose, and a
    change is rare enough that a fresh connection costs nothing that matters."""

    def __init__(self, settings: LdapSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._controllers = DomainControllers(settings)
        self._clock = clock
        self._ages: dict[str, tuple[float, float | None]] = {}
        self._lock = threading.Lock()

    def max_age(self, pso_dn: str | None) -> float | None:
        """Seconds a password lives under the PSO ``pso_dn`` (None: the domain's policy); None when it never
        expires or the PSO is hidden from the service account. Cached for ``group_cache_seconds``: every
        password sign-in asks."""
        key = pso_dn or ""
        now = self._clock()
        with self._lock:
            cached = self._ages.get(key)
        if cached is not None and now - cached[0] < self._settings.group_cache_seconds:
            return cached[1]
        dn, name = (pso_dn, "msDS-MaximumPasswordAge") if pso_dn else (self._settings.base_dn, "maxPwdAge")
        found = self._run(lambda conn: _read(conn, dn, (name,))) or {}
        age = interval_seconds(found.get(name)) or None
        with self._lock:
            self._ages[key] = (now, age)
        return age

    def rules(self, account: Account) -> PasswordRules:
        """The rules for ``account``: its PSO's when one applies and the service account may read it, else
        the domain's (what AD applies when a PSO is hidden from us is unknowable; the domain's is the guess)."""
        pso = account.entry.first("msDS-ResultantPSO")
        found = self._run(lambda conn: _read(conn, pso, _PSO_RULES)) if pso else None
        if found and "msDS-MinimumPasswordLength" in found:
            return _rules(found, _PSO_RULES, pso or "", complexity=found.get(_PSO_RULES[1], "").upper() == "TRUE")
        domain = self._run(lambda conn: _read(conn, self._settings.base_dn, _DOMAIN_RULES)) or {}
        complex_ = bool(int(domain.get("pwdProperties") or 0) & _DOMAIN_PASSWORD_COMPLEX)
        return _rules(domain, _DOMAIN_RULES, "domain", complexity=complex_)

    def change(self, account: Account, old: str, new: str) -> None:
        """AD's own change from ``old`` to ``new``; raises InvalidCredentials for a wrong old password, a
        PasswordRefused naming the broken rule, or DirectoryUnavailable."""
        changes = {"unicodePwd": [(MODIFY_DELETE, [_quoted(old)]), (MODIFY_ADD, [_quoted(new)])]}
        result = self._run(lambda conn: _modify(conn, account.entry.dn, changes))
        code = result.get("result")
        if code == 0:
            return
        message = str(result.get("message") or "")
        if code == RESULT_CONSTRAINT_VIOLATION:
            raise refusal(message, self.rules(account), new, account.username)
        if code == RESULT_INSUFFICIENT_ACCESS_RIGHTS:
            raise DirectoryError(
                f"the service account may not change {account.entry.dn}'s password: grant it (or Everyone) the "
                f"'Change Password' right on user objects ({message})"
            )
        if code == RESULT_UNWILLING_TO_PERFORM:
            raise DirectoryError(f"AD will not change a password over this connection: use LDAPS ({message})")
        raise DirectoryError(f"AD did not change the password: {result.get('description')} {message}".strip())

    def _run(self, operation: Callable[[Connection], T]) -> T:
        problems: list[str] = []
        for server in self._controllers.in_order():
            conn = Connection(
                server,
                client_strategy=SYNC,
                receive_timeout=receive_timeout(self._settings),
                raise_exceptions=False,
                auto_referrals=False,
            )
            try:
                conn.open(read_server_info=False)
                if self._settings.start_tls and not conn.start_tls(read_server_info=False):
                    raise DirectoryUnavailable(f"StartTLS refused: {conn.result.get('description')}")
                if not conn.rebind(self._settings.bind_dn, self._settings.service_password(), authentication=SIMPLE):
                    raise ServiceAccountRejected(
                        f"the domain controller refused the service account {self._settings.bind_dn}"
                    )
                conn.password = None
                return operation(conn)
            except (LDAPException, OSError) as exc:
                self._controllers.failed(server)
                problems.append(f"{server_url(server)}: {exc}")
            finally:
                with contextlib.suppress(LDAPException, OSError):
                    conn.unbind()
        raise DirectoryUnavailable("no domain controller answered: " + "; ".join(problems))


def _quoted(password: str) -> bytes:
    return f'"{password}"'.encode("utf-16-le")


def _modify(conn: Connection, dn: str, changes: Mapping[str, object]) -> dict[str, object]:
    conn.modify(dn, changes)
    return dict(conn.result)


def _read(conn: Connection, dn: str | None, attributes: tuple[str, ...]) -> dict[str, str] | None:
    if not dn or not conn.search(dn, "(objectClass=*)", BASE, attributes=list(attributes)) or not conn.response:
        return None
    raw = conn.response[0].get("raw_attributes", {})
    return {name: values[0].decode("utf-8") for name, values in raw.items() if values}


def _rules(found: dict[str, str], names: tuple[str, ...], source: str, *, complexity: bool) -> PasswordRules:
    length, _, history, min_age, max_age = names
    max_days = interval_seconds(found.get(max_age)) / 86400
    return PasswordRules(
        min_length=int(found.get(length) or 0),
        complexity=complexity,
        history=int(found.get(history) or 0),
        min_age_days=interval_seconds(found.get(min_age)) / 86400,
        max_age_days=max_days or None,
        source=source,
    )
