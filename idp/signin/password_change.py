"""A person changes their own AD password: after AD said "expired" or "must change" at sign-in, or when
signed in ("Change my password").

The old password is a password guess like any other, so it passes the same throttle as the login form (per
account below AD's lockout threshold, per client address); one audit row says how each attempt ended, with
AD's reason, and never any password.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from idp.audit import AuditTrail
from idp.codes import SignInReason
from idp.directory.client import Directory
from idp.directory.errors import DirectoryError, InvalidCredentials
from idp.directory.password import PasswordChanges, PasswordRefused, PasswordRules
from idp.signin.throttle import LoginThrottle

log = logging.getLogger(__name__)


class ChangeRefused(Exception):
    """The password was not changed; ``reason`` picks the words the person reads."""

    def __init__(self, reason: SignInReason, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class PasswordChange:
    def __init__(
        self, directory: Directory, changes: PasswordChanges, throttle: LoginThrottle, audit: AuditTrail
    ) -> None:
        self._directory = directory
        self._changes = changes
        self._throttle = throttle
        self._audit = audit

    def rules(self, username: str) -> PasswordRules | None:
        """The rules the new password must meet, to show on the form; None when AD cannot say now."""
        try:
            account = self._directory.resolve(username)
            return self._changes.rules(account) if account is not None else None
        except DirectoryError as exc:
            log.warning("could not read the password rules: %s", exc)
            return None

    def change(self, username: str, old: str, new: str, repeated: str, *, ip: str | None) -> str:
        """Change ``username``'s password from ``old`` to ``new`` (typed twice); the account's sAMAccountName
        when done, else ChangeRefused."""
        if new != repeated:
            self._refused("password_mismatch", username, ip)
        if not old.strip():
            self._refused("empty_password", username, ip)
        if not new:
            self._refused("password_too_short", username, ip)
        if self._throttle.address_blocked(ip):
            self._refused("throttled", username, ip)
        try:
            account = self._directory.resolve(username)
        except DirectoryError as exc:
            self._failed(exc.reason, username, ip, exc.detail)
        if account is None:
            self._directory.pretend_bind()
            self._failed("invalid_credentials", username, ip)
        if not self._throttle.take(account):
            self._refused("throttled", account.username, ip)
        try:
            self._changes.change(account, old, new)
        except InvalidCredentials as exc:
            self._throttle.settle(account, exc.reason)
            self._failed(exc.reason, account.username, ip)
        except PasswordRefused as exc:
            self._throttle.settle(account, None)  # AD checked the old password before its rules
            self._failed(exc.reason, account.username, ip, exc.detail)
        except DirectoryError as exc:
            self._throttle.settle(account, exc.reason)
            log.error("the password of %s could not be changed: %s", account.username, exc)
            self._failed(exc.reason, account.username, ip, exc.detail)
        self._throttle.settle(account, None)
        self._audit.record("password_changed", "success", username=account.username, ip=ip)
        return account.username

    def _refused(self, reason: SignInReason, username: str, ip: str | None) -> NoReturn:
        self._audit.record("password_changed", "refused", reason=reason, username=username[:256], ip=ip)
        raise ChangeRefused(reason)

    def _failed(self, reason: SignInReason, username: str, ip: str | None, detail: str | None = None) -> NoReturn:
        self._audit.record("password_changed", "failure", reason=reason, username=username[:256], ip=ip, detail=detail)
        raise ChangeRefused(reason, detail)
