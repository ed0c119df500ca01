"""Turn AD's refusal of a bind into the typed error the person at the login page must hear.

AD (and Samba, which copies it) reports why in the diagnostic message:
``80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 775, v1db1``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ldap3.core.results import RESULT_INVALID_CREDENTIALS

from idp.directory.errors import (
    AccountDisabled,
    AccountExpired,
    AccountLocked,
    DirectoryError,
    DirectoryUnavailable,
    InvalidCredentials,
    LogonHoursRestricted,
    PasswordExpired,
    PasswordMustChange,
    WorkstationRestricted,
)

WRONG_USERNAME_OR_PASSWORD = "wrong username or password"  # noqa: S105 - a message, not a password
"""The one message for a wrong password and an unknown user alike, so usernames cannot be probed."""

_BY_SUB_CODE: dict[str, tuple[type[DirectoryError], str]] = {
    "52e": (InvalidCredentials, WRONG_USERNAME_OR_PASSWORD),
    "525": (InvalidCredentials, WRONG_USERNAME_OR_PASSWORD),  # no such user
    "533": (AccountDisabled, "the account is disabled (data 533)"),
    "701": (AccountExpired, "the account has expired (data 701)"),
    "775": (AccountLocked, "the account is locked after too many wrong passwords (data 775)"),
    "532": (PasswordExpired, "the password has expired (data 532)"),
    "773": (PasswordMustChange, "the password must be changed before the first sign-in (data 773)"),
    "530": (LogonHoursRestricted, "sign-in is not allowed at this time of day (data 530)"),
    "531": (WorkstationRestricted, "sign-in is not allowed from this computer (data 531)"),
}

_SUB_CODE = re.compile(r"\bdata ([0-9a-f]{1,8})\b", re.IGNORECASE)


def bind_refusal(result: Mapping[str, object]) -> DirectoryError:
    """The error for an ldap3 bind result that did not succeed."""
    if result.get("result") != RESULT_INVALID_CREDENTIALS:
        # Not a verdict on the person: the DC could not or would not check the password (busy, a
        # policy demanding TLS, ...). The admin needs the details; the person needs "try later".
        return DirectoryUnavailable(
            f"the domain controller did not check the password: {result.get('description')} "
            f"{result.get('message', '')}".strip()
        )
    error_class, detail = _BY_SUB_CODE.get(
        sub_code(result.get("message")) or "", (InvalidCredentials, WRONG_USERNAME_OR_PASSWORD)
    )
    return error_class(detail)


def sub_code(message: object) -> str | None:
    """AD's sub-code ("52e") in a bind's diagnostic message, lower-cased; None when it has none."""
    match = _SUB_CODE.search(str(message or ""))
    return match.group(1).lower() if match else None
