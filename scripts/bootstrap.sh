#!/usr/bin/env bash
# Installs everything ad-sso-bridge needs on a fresh Debian 12 machine, as root, idempotently:
# Debian packages (Samba AD DC for the demo and tests, xmlsec, Chromium for browser tests),
# a virtualenv in .venv and the project itself. Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "This step installs Debian packages and starts a Samba AD DC: run it as root (sudo $0)." >&2
    exit 1
  fi
}

# Packages for running the product (with the throw-away AD of `idp demo`).
RUN_PACKAGES=(python3 python3-venv python3-dev python3-lxml python3-xmlsec xmlsec1 libxmlsec1-openssl
  samba samba-ad-dc ldb-tools winbind ca-certificates curl procps iproute2)
# What only the test suite needs: a browser for the login page test, Redis and PostgreSQL for the
# several-nodes configurations.
TEST_PACKAGES=(chromium chromium-driver redis-server postgresql)

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    need_root
    echo "==> apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # samba's postinst wants to start smbd under systemd; with policy-rc.d we keep services we do not use off.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

make_venv() {
  # Debian's python3-lxml and python3-xmlsec are built against the same libxml2; mixing PyPI's wheels of
  # one with the system build of the other fails at import. So the venv sees the system site-packages.
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
  fi
  local stamp="$VENV/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)-$1"
  if [ ! -f "$stamp" ]; then
    echo "==> pip install -e .[$1]"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[$1]"
    touch "$stamp"
  fi
}

bootstrap_run() {
  apt_install "${RUN_PACKAGES[@]}"
  make_venv run
}

bootstrap_test() {
  apt_install "${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
  make_venv test
}
