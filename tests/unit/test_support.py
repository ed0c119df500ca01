"""The test suite's own promise: a missing component (AD, Redis, PostgreSQL, Chromium, xmlsec1) may skip a
test on a developer's machine, but fails it when CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_under_ci_any_skip_fails_the_run(tmp_path: Path) -> None:
    """Not only `require`: a plain pytest.skip, as a library would call it, fails when CI=true."""
    (tmp_path / "test_skipping.py").write_text("import pytest\n\ndef test_it():\n    pytest.skip('no frobnicator')\n")

    def run(ci: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "tests.ci_skips", "-p", "no:cacheprovider", str(tmp_path)],
            capture_output=True,
            text=True,
            env={**os.environ, "CI": ci},
            cwd=Path(__file__).parents[2],
            timeout=120,
            check=False,
        )

    in_ci = run("true")
    assert in_ci.returncode == 1, in_ci.stdout
    assert "skipped under CI=true" in in_ci.stdout and "no frobnicator" in in_ci.stdout
    elsewhere = run("false")
    assert elsewhere.returncode == 0 and "1 skipped" in elsewhere.stdout, elsewhere.stdout


def test_this_suite_runs_the_ci_hook(pytestconfig: pytest.Config) -> None:
    """The hook is active in the suite itself (tests/conftest.py), not only where a test asks for it with -p."""
    from tests import ci_skips

    impls = pytestconfig.pluginmanager.hook.pytest_runtest_makereport.get_hookimpls()
    assert ci_skips.pytest_runtest_makereport in [impl.function for impl in impls]
