"""The test suite's own promise: a missing component (AD, Redis, PostgreSQL, Chromium, xmlsec1) may skip a
test on a developer's machine, but fails it when CI=true."""

from __future__ import annotations

import pytest

from tests.support import require


def test_a_missing_component_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require(False, "Redis is not reachable")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require(False, "Redis is not reachable")
    require(True, "nothing is missing")  # present: neither
