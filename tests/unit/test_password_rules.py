"""Which rule a refused password change broke (Samba names it, Windows AD says only 0000052D, so the rules the
person can check are tried on the new password itself, then the ones only AD knows); when a password expires."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from idp.directory.account import filetime
from idp.directory.errors import InvalidCredentials
from idp.directory.password import (
    PasswordInHistory,
    PasswordNotComplex,
    PasswordRefused,
    PasswordRules,
    PasswordTooShort,
    PasswordTooSoon,
    expires_at,
    meets_complexity,
    refusal,
    with_expiry,
)
from idp.person import Person

RULES = PasswordRules(min_length=8, complexity=True, history=24, min_age_days=1, max_age_days=42, source="domain")
WINDOWS_52D = "0000052D: AtrErr: DSID-03191083, #1: 0: 0000052D: problem 1005 (CONSTRAINT_ATT_TYPE), data 0"
SAMBA = "0000052D: Constraint violation - check_password_restrictions: "
GOOD = "Good-Passw0rd"


@pytest.mark.parametrize(
    ("message", "new", "expected"),
    [
        ("00000056: Constraint violation: The old password specified doesn't match!", GOOD, InvalidCredentials),
        (SAMBA + "the password is too short. It should be equal or longer than 8 characters!", GOOD, PasswordTooShort),
        (SAMBA + "the password does not meet the complexity criteria!", GOOD, PasswordNotComplex),
        (SAMBA + "the password was already used (in history)!", GOOD, PasswordInHistory),
        (SAMBA + "password is too young to change!", GOOD, PasswordTooSoon),
        (WINDOWS_52D, "Sh0rt!", PasswordTooShort),
        (WINDOWS_52D, "alllowercaseletters", PasswordNotComplex),
        (WINDOWS_52D, GOOD, PasswordRefused),  # history or age: only AD knows which
    ],
)
def test_refusals_name_the_rule(message: str, new: str, expected: type) -> None:
    assert type(refusal(message, RULES, new, "alice")) is expected


def test_complexity_is_three_kinds_and_not_the_account_name() -> None:
    assert meets_complexity("Passw0rd", "bob")
    assert not meets_complexity("password1", "bob")
    assert not meets_complexity("Alice-2026!", "alice")


def _person(**attributes: str) -> Person:
    return Person("alice", "CN=Alice", uuid.uuid4(), attributes={k: (v,) for k, v in attributes.items()})


def test_the_expiry_is_pwd_last_set_plus_the_policy_s_maximum_age() -> None:
    last_set = datetime(2026, 11, 1, tzinfo=UTC)
    asked: list[str | None] = []

    def max_age(pso: str | None) -> float | None:
        asked.append(pso)
        return 42 * 86400.0

    person = with_expiry(_person(pwdLastSet=str(filetime(last_set.timestamp())), userAccountControl="512"), max_age)
    assert expires_at(person) == last_set + timedelta(days=42)
    assert person.attributes["msDS-UserPasswordExpiryTimeComputed"]  # what an SP's passwordExpires is made of
    pso = "CN=pso,CN=Password Settings Container"
    with_expiry(_person(pwdLastSet="134380438239954160", **{"msDS-ResultantPSO": pso}), max_age)
    assert asked == [None, pso]


@pytest.mark.parametrize(
    "attributes",
    [
        {"pwdLastSet": "0"},  # must change now
        {"pwdLastSet": "134380438239954160", "userAccountControl": str(0x10200)},  # never expires
        {},  # not read (a session started by an older version)
    ],
)
def test_no_expiry_when_the_password_never_expires_or_is_unknown(attributes: dict[str, str]) -> None:
    assert expires_at(with_expiry(_person(**attributes), lambda pso: 42 * 86400.0)) is None
    assert expires_at(with_expiry(_person(pwdLastSet="134380438239954160"), lambda pso: None)) is None
