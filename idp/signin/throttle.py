"""Slows down password guessing, and stops it at least one wrong password below AD's own lockout.

Per account: an atomic counter (idp.store.attempts) shared by every worker and node, keyed on the account's
objectGUID, so every spelling of a name (full-width letters, "CORP\\alice", her mail address) counts against the one
account AD would lock. A place is taken before the bind and kept only for a wrong password. The limit is the
lower of ``login.max_failures_per_user`` and one below the lockout threshold that applies to the person (the
domain's, or a PSO's); the count is forgotten only after AD's own observation window (or ours, if longer) has
passed without an attempt, so AD has forgotten it too. AD's badPwdCount, which also counts wrong passwords typed
elsewhere, is a second guard.

Per client address: wrong passwords recorded in the audit trail (login and change forms alike), against
password spraying.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from idp.audit import AuditTrail
from idp.codes import SignInReason
from idp.directory.client import Account
from idp.directory.lockout import LockoutPolicy
from idp.settings import LoginSettings
from idp.store.attempts import AttemptCounters, clearing
from idp.store.db import Write

log = logging.getLogger(__name__)

COUNTED_REASONS: tuple[SignInReason, ...] = ("invalid_credentials",)


@dataclass(frozen=True)
class AccountLimit:
    attempts: int
    """Wrong passwords allowed before the count is forgotten."""
    window: float
    """Seconds without an attempt after which the count is forgotten."""


def account_limit(settings: LoginSettings, policy: LockoutPolicy) -> AccountLimit | None:
    """What the throttle allows for an account under ``policy``, always below AD's threshold; None when
    neither we nor AD limit wrong passwords."""
    threshold = settings.unknown_lockout_threshold if policy.threshold is None else policy.threshold
    limits = [n for n in (settings.max_failures_per_user, threshold - 1 if threshold > 0 else 0) if n > 0]
    if threshold == 1:
        limits = [0]  # one wrong password locks: no attempt is safe to make
    if not limits:
        return None
    return AccountLimit(min(limits), max(float(settings.failure_window), policy.observation_window))


class LoginThrottle:
    def __init__(self, audit: AuditTrail, settings: LoginSettings, counters: AttemptCounters) -> None:
        self._audit = audit
        self._settings = settings
        self._counters = counters

    def address_blocked(self, ip: str | None) -> bool:
        """True when this client address has given too many wrong passwords in the window, at the login form
        and the change form together."""
        s = self._settings
        if not (s.max_failures_per_ip and ip):
            return False
        since = datetime.now(UTC) - timedelta(seconds=s.failure_window)
        return self._audit.count_password_failures(since, COUNTED_REASONS, ip=ip) >= s.max_failures_per_ip

    def take(self, account: Account) -> bool:
        """A place for one password attempt at ``account``; False: the attempt must not reach AD."""
        limit = account_limit(self._settings, account.lockout)
        if limit is None or account.locked:
            # Nothing to protect: no limit at all, or AD has locked the account already and answers
            # "locked" to any password without counting it (the person then reads the help desk words).
            return True
        if account.bad_password_count >= limit.attempts:
            return False
        return self._counters.take(_key(account), limit.attempts, limit.window) is not None

    def settle(self, account: Account, reason: SignInReason | None) -> None:
        """After AD answered: a right password clears the count (as AD clears badPwdCount), a wrong one keeps
        its place, and anything else gives the place back (AD did not count it)."""
        if reason is None:
            self._counters.clear(_key(account))
        elif reason != "invalid_credentials" and self._counted(account):
            self._counters.give_back(_key(account))

    def forgetting(self, account: Account) -> Write:
        """What ``settle`` does after a right password, as a write the caller commits with its own rows."""
        return clearing(_key(account))

    def _counted(self, account: Account) -> bool:
        """Whether ``take`` counted this attempt (it lets some through uncounted)."""
        return account_limit(self._settings, account.lockout) is not None and not account.locked


def _key(account: Account) -> str:
    return f"account:{account.guid}"
