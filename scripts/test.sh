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
# The pinned versions, against the package index's vulnerability data (needs the network). Debian's
# python3-lxml and python3-xmlsec are not in constraints.txt: Debian's security updates cover them.
.venv/bin/pip-audit --requirement constraints.txt --no-deps --disable-pip --progress-spinner off
echo "==> pytest"
exec .venv/bin/pytest "$@"
