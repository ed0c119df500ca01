"""Typed errors from Active Directory, one per thing the person in front of the login page must hear.

AD reports why a bind failed in the diagnostic message ("... AcceptSecurityContext error, data 52e, ...").
Each sub-code maps to one class here. ``reason`` is the stable code written to the audit trail and used
to pick the translated message; it never contains the password or anything the user typed.
"""

from __future__ import annotations

from idp.codes import DirectoryReason


class DirectoryError(Exception):
    """Base for everything the directory can refuse or fail with."""

    reason: DirectoryReason = "directory_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail


class InvalidCredentials(DirectoryError):
    """52e, or no such user: one class for both so usernames cannot be probed."""

    reason = "invalid_credentials"


class AccountDisabled(DirectoryError):
    """533"""

    reason = "account_disabled"


class AccountExpired(DirectoryError):
    """701"""

    reason = "account_expired"


class AccountLocked(DirectoryError):
    """775"""

    reason = "account_locked"


class PasswordExpired(DirectoryError):
    """532"""

    reason = "password_expired"


class PasswordMustChange(DirectoryError):
    """773"""

    reason = "password_must_change"


class LogonHoursRestricted(DirectoryError):
    """530"""

    reason = "logon_hours"


class WorkstationRestricted(DirectoryError):
    """531"""

    reason = "workstation_restricted"


class DirectoryUnavailable(DirectoryError):
    """No domain controller answered in time (all of them were tried)."""

    reason = "directory_unavailable"


class ServiceAccountRejected(DirectoryError):
    """The service account's own bind failed: a configuration problem for the admin, not the employee."""

    reason = "service_account_rejected"
