"""An account's state as AD sees it now, for the help desk: enabled, locked until when, expired, when the
password was set and when it expires, how many wrong passwords AD counts, and whether it must be changed.

Read on demand with the service account (the console's person lookup), never at a sign-in: a sign-in reads
what it needs in its one search (client.py) and asks account.py for the verdict.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from idp.directory.account import ACCOUNT_STATE_ATTRIBUTES, account_refusal, has_expired
from idp.directory.errors import DirectoryError
from idp.directory.lockout import filetime_seconds, interval_seconds

STATE_ATTRIBUTES = (
    *ACCOUNT_STATE_ATTRIBUTES,
    "lockoutTime",
    "msDS-UserPasswordExpiryTimeComputed",
    "badPwdCount",
    "msDS-ResultantPSO",
)
"""Constructed ones (msDS-*) are built by the DC at read time and only sent when asked for by name."""

_ACCOUNTDISABLE = 0x2
_DONT_EXPIRE_PASSWORD = 0x10000
_UF_LOCKOUT = 0x10
_UF_PASSWORD_EXPIRED = 0x800000
_NEVER = 0x7FFFFFFFFFFFFFFF

Read = Callable[[str, tuple[str, ...]], dict[str, str] | None]
"""Reads one object's attributes (first values, as text); None when the service account cannot see it."""


@dataclass(frozen=True)
class AccountState:
    enabled: bool
    locked: bool
    locked_since: datetime | None
    locked_until: datetime | None
    """When AD unlocks the account by itself; None when it does not (see locked_for_good) or when the policy
    that applies cannot be read (AD hides PSOs from non-admins by default)."""
    locked_for_good: bool
    """The policy's lockout duration is 0: only an admin unlocks the account."""
    expired: bool
    expires: datetime | None
    """accountExpires; None: never."""
    password_last_set: datetime | None
    """None: never set, or must be changed at next logon (pwdLastSet = 0)."""
    password_expires: datetime | None
    """None: the password never expires (the policy's maximum age is 0, or the account is exempt)."""
    password_expired: bool
    must_change: bool
    bad_password_count: int
    refusal: DirectoryError | None
    """What a sign-in would be refused for now (account.py's verdict, the one sign-ins use); None: nothing."""


def read_account_state(read: Read, dn: str, domain_dn: str, now: float) -> AccountState | None:
    """The state of the account at ``dn``; None when the service account cannot read it."""
    found = read(dn, STATE_ATTRIBUTES)
    if found is None:
        return None
    control = _int(found.get("userAccountControl"))
    computed = _int(found.get("msDS-User-Account-Control-Computed"))
    locked = bool(computed & _UF_LOCKOUT)
    since = filetime_seconds(found.get("lockoutTime")) if locked else None
    locked_until, locked_for_good = None, False
    if since is not None:
        pso = found.get("msDS-ResultantPSO")
        policy = read(pso, ("msDS-LockoutDuration",)) if pso else read(domain_dn, ("lockoutDuration",))
        if policy:
            duration = interval_seconds(next(iter(policy.values())))
            locked_until, locked_for_good = (_utc(since + duration), False) if duration else (None, True)
    expires = _int(found.get("accountExpires"))
    must_change = found.get("pwdLastSet") == "0"
    return AccountState(
        enabled=not control & _ACCOUNTDISABLE,
        locked=locked,
        locked_since=_utc(since),
        locked_until=locked_until,
        locked_for_good=locked_for_good,
        expired=has_expired(expires, now),
        expires=None if expires in (0, _NEVER) else _utc(filetime_seconds(str(expires))),
        password_last_set=None if must_change else _utc(filetime_seconds(found.get("pwdLastSet"))),
        password_expires=_password_expiry(found.get("msDS-UserPasswordExpiryTimeComputed"), control),
        password_expired=bool(computed & _UF_PASSWORD_EXPIRED),
        must_change=must_change,
        bad_password_count=_int(found.get("badPwdCount")),
        refusal=account_refusal(found.get, now),
    )


def _password_expiry(value: str | None, control: int) -> datetime | None:
    if control & _DONT_EXPIRE_PASSWORD or not value or not re.fullmatch(r"\d+", value) or int(value) >= _NEVER:
        return None
    return _utc(filetime_seconds(value))


def _utc(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
