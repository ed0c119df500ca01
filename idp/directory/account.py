"""Whether AD would still let an account sign in, read from its attributes instead of from a bind.

A reused SSO session has no password to bind with, so the recheck reads what a bind would have been
refused for: the refusal is the same typed error a password sign-in gets (ad_codes.py), so the person
reads the same words and the audit row carries the same reason.
"""

from __future__ import annotations

from collections.abc import Callable

from idp.directory.errors import (
    AccountDisabled,
    AccountExpired,
    AccountLocked,
    DirectoryError,
    PasswordExpired,
    PasswordMustChange,
)

ACCOUNT_STATE_ATTRIBUTES = ("userAccountControl", "msDS-User-Account-Control-Computed", "accountExpires", "pwdLastSet")
"""Asked for explicitly: the computed one is constructed by the DC at read time and never sent unasked."""

REFUSALS = (AccountDisabled, AccountExpired, AccountLocked, PasswordMustChange, PasswordExpired)
"""What account_refusal can return: a verdict on the person, unlike a DC that does not answer."""

_ACCOUNTDISABLE = 0x2
# msDS-User-Account-Control-Computed takes the domain's lockout duration and password age into account,
# which lockoutTime and pwdLastSet alone do not (lockoutTime stays set after a lockout has run out).
_UF_LOCKOUT = 0x10
_UF_PASSWORD_EXPIRED = 0x800000
_NEVER = (0, 0x7FFFFFFFFFFFFFFF)
_FILETIME_EPOCH_OFFSET = 11_644_473_600
"""Seconds from 1601-01-01 (AD's FILETIME epoch) to 1970-01-01."""


def account_refusal(first: Callable[[str], str | None], now: float) -> DirectoryError | None:
    """The error a bind would get for this entry now (``first`` reads one attribute's first value as text,
    ``now`` is epoch seconds), or None when the account may sign in."""
    control = _int(first("userAccountControl"))
    computed = _int(first("msDS-User-Account-Control-Computed"))
    expires = _int(first("accountExpires"))
    if control & _ACCOUNTDISABLE:
        return AccountDisabled("the account is disabled (userAccountControl)")
    if has_expired(expires, now):
        return AccountExpired("the account has expired (accountExpires)")
    if computed & _UF_LOCKOUT:
        return AccountLocked("the account is locked (msDS-User-Account-Control-Computed)")
    if first("pwdLastSet") == "0":
        # An admin's "must change at next logon", often set when a password is reset after a compromise.
        return PasswordMustChange("the password must be changed (pwdLastSet = 0)")
    if computed & _UF_PASSWORD_EXPIRED:
        return PasswordExpired("the password has expired (msDS-User-Account-Control-Computed)")
    return None


def has_expired(account_expires: int, now: float) -> bool:
    """True when AD's ``accountExpires`` (FILETIME; 0 and 0x7FFFFFFFFFFFFFFF mean never) is not after ``now``
    (epoch seconds)."""
    return account_expires not in _NEVER and account_expires <= filetime(now)


def filetime(epoch_seconds: float) -> int:
    """Epoch seconds as AD's FILETIME: 100 ns intervals since 1601-01-01."""
    return int((epoch_seconds + _FILETIME_EPOCH_OFFSET) * 10_000_000)


def _int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0
