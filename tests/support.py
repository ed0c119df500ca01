"""Helpers every test directory may import (conftest files hold fixtures only)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest


def require(available: bool, what: str) -> None:
    """Skip a test whose component is missing, except in CI, where a missing component is a failure."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: a missing component fails the run)", pytrace=False)
    pytest.skip(what)


class FakeClock:
    """Time that moves only when the test says so, for the product's injectable clocks.

    Call it where a ``clock`` (monotonic seconds) is wanted, pass ``clock.now`` where a ``now`` (an aware
    UTC datetime) is wanted: both move together with ``advance``, so a test waits out a cache or a lease
    in no time, and a stall of a busy machine cannot change what the test sees.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime.now(UTC)
        self._elapsed = 0.0

    def __call__(self) -> float:
        # Far from zero: code that treats 0.0 as "never" must not mistake the start for it.
        return 1_000_000.0 + self._elapsed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        self._elapsed += seconds
