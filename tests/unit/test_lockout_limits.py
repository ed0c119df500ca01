"""What the throttle allows per account: always below the lockout threshold AD applies to the person."""

from __future__ import annotations

import pytest

from idp.directory.lockout import LockoutPolicies, LockoutPolicy, filetime_seconds, interval_seconds
from idp.settings import LoginSettings
from idp.signin.throttle import AccountLimit, account_limit
from tests.support import FakeClock

DOMAIN = "DC=corp,DC=example,DC=com"
PSO = f"CN=strict,CN=Password Settings Container,CN=System,{DOMAIN}"


@pytest.mark.parametrize(
    ("configured", "threshold", "expected"),
    [
        (5, 0, 5),  # AD never locks: our own limit
        (5, 3, 2),  # a PSO of 3: one below it, whatever the configuration says
        (5, 10, 5),
        (0, 3, 2),  # no limit of ours: still below AD's
        (5, None, 2),  # a PSO we may not read: the assumed threshold (3)
        (5, 1, 0),  # one wrong password locks: no attempt is safe
    ],
)
def test_the_limit_stays_below_ads_threshold(configured: int, threshold: int | None, expected: int) -> None:
    settings = LoginSettings(max_failures_per_user=configured, failure_window=300)
    limit = account_limit(settings, LockoutPolicy(threshold, 1800, "x"))
    assert limit == AccountLimit(expected, 1800)


def test_no_limit_at_all_when_neither_we_nor_ad_limit() -> None:
    assert account_limit(LoginSettings(max_failures_per_user=0), LockoutPolicy(0, 0, "domain")) is None


def test_the_window_is_never_shorter_than_ads() -> None:
    settings = LoginSettings(failure_window=600)
    assert account_limit(settings, LockoutPolicy(3, 60, "x")) == AccountLimit(2, 600)
    assert account_limit(settings, LockoutPolicy(3, 3600, "x")) == AccountLimit(2, 3600)


def test_policies_come_from_the_pso_when_readable_else_are_unknown() -> None:
    objects = {
        DOMAIN: {"lockoutThreshold": "0", "lockOutObservationWindow": "-18000000000"},
        PSO: {"msDS-LockoutThreshold": "3", "msDS-LockoutObservationWindow": "-600000000"},
    }
    reads: list[str] = []

    def read(dn: str, attributes: tuple[str, ...]) -> dict[str, str] | None:
        reads.append(dn)
        return objects.get(dn)

    clock = FakeClock()
    policies = LockoutPolicies(read, DOMAIN, ttl=300, clock=clock)
    assert policies.domain() == LockoutPolicy(0, 1800.0, "domain")
    assert policies.for_pso(PSO) == LockoutPolicy(3, 60.0, PSO)
    hidden = f"CN=hidden,CN=Password Settings Container,CN=System,{DOMAIN}"
    assert policies.for_pso(hidden) == LockoutPolicy(None, 1800.0, hidden)
    count = len(reads)
    assert policies.for_pso(PSO).threshold == 3 and len(reads) == count  # cached
    clock.advance(301)
    policies.for_pso(PSO)
    assert len(reads) == count + 1


def test_ad_times() -> None:
    assert interval_seconds("-18000000000") == 1800
    assert interval_seconds("-9223372036854775808") == 0  # "never"
    assert filetime_seconds("0") is None
    assert filetime_seconds("116444736000000000") == 0  # 1970-01-01 in FILETIME
