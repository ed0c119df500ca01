"""Slows down password guessing, before AD's own lockout has to.

It counts the failed sign-ins that the audit trail already records, so every worker and every node
(sharing one database) sees the same count without another store. Only wrong-password failures count;
a throttled attempt never reaches AD, so an attacker cannot use us to lock an employee's AD account.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from idp.audit import AuditTrail
from idp.codes import SignInReason
from idp.settings import LoginSettings

COUNTED_REASONS: tuple[SignInReason, ...] = ("invalid_credentials",)


class LoginThrottle:
    def __init__(self, audit: AuditTrail, settings: LoginSettings) -> None:
        self._audit = audit
        self._settings = settings

    def blocked(self, username: str, ip: str | None) -> bool:
        """True when this username, or this client address, has failed too often in the window."""
        s = self._settings
        since = datetime.now(UTC) - timedelta(seconds=s.failure_window)
        if s.max_failures_per_user and (
            self._audit.count_failures(since, COUNTED_REASONS, username=username) >= s.max_failures_per_user
        ):
            return True
        return bool(
            s.max_failures_per_ip
            and ip
            and self._audit.count_failures(since, COUNTED_REASONS, ip=ip) >= s.max_failures_per_ip
        )
