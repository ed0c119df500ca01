#!/usr/bin/env bash
# Try ad-sso-bridge on a fresh Debian 12 machine: installs what it needs, then `idp demo` starts a throw-away
# Samba AD with demo users, the IdP on http://127.0.0.1:8000 and a demo webmail on http://127.0.0.1:8025.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
bootstrap_demo
exec .venv/bin/idp demo "$@"
