#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs Debian packages and the project into .venv,
# starts Redis and PostgreSQL, then runs ruff, mypy, pip-audit and pytest. The Samba AD DC the tests sign in
# against is provisioned once by the test harness itself (tests/conftest.py). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
bootstrap_test
start_test_services

echo "==> ruff"
# Every Python file of the checkout (ruff skips .venv): a list of directories breaks when one is not committed yet.
.venv/bin/ruff check .
echo "==> mypy"
# Over idp/ (pyproject.toml [tool.mypy]): the audit and refusal codes are Literals, and a code used but not
# declared in idp/codes.py fails here rather than as a blank on a page.
.venv/bin/mypy
echo "==> pip-audit"
# The pinned versions, against the package index's vulnerability data. Debian's python3-lxml and
# python3-xmlsec are not in constraints.txt: Debian's security updates cover them. A known vulnerability
# fails the run; a machine that cannot reach the vulnerability data (offline) only says so.
audit_report="$(mktemp)"
if ! .venv/bin/pip-audit --requirement constraints.txt --no-deps --disable-pip --progress-spinner off \
    --format json --output "$audit_report" 2>"$audit_report.log"; then
  if grep -q '"vulns": \[{' "$audit_report" 2>/dev/null; then
    .venv/bin/pip-audit --requirement constraints.txt --no-deps --disable-pip --progress-spinner off || true
    echo "pip-audit: a pinned dependency has a known vulnerability; raise it in pyproject.toml and constraints.txt" >&2
    exit 1
  fi
  echo "pip-audit could not check (no vulnerability data reachable): $(tail -n 1 "$audit_report.log")" >&2
else
  # Say how much was really checked: an index without vulnerability data answers "not found" for everything.
  echo "pip-audit: no known vulnerability; $(grep -o '"skip_reason"' "$audit_report" | wc -l) of" \
    "$(grep -o '"name"' "$audit_report" | wc -l) pinned packages could not be looked up"
fi
rm -f "$audit_report" "$audit_report.log"
echo "==> pytest"
exec .venv/bin/pytest "$@"
