#!/usr/bin/env bash
# Installs what ad-sso-bridge needs on a fresh Debian 12 machine, as root, idempotently: Debian packages, a
# virtualenv in .venv and the project itself. bootstrap_run is the product alone (a production install talks
# to an existing AD); bootstrap_demo adds the Samba AD DC of `idp demo`; bootstrap_test adds what the test
# suite needs. Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "This step installs Debian packages: run it as root (sudo $0)." >&2
    exit 1
  fi
}

# Packages for running the product.
RUN_PACKAGES=(python3 python3-venv python3-dev python3-lxml python3-xmlsec xmlsec1 libxmlsec1-openssl
  python3-gssapi ca-certificates curl procps iproute2)
# The throw-away AD of `idp demo` (and of the tests).
DEMO_PACKAGES=(samba samba-ad-dc samba-ad-provision ldb-tools winbind)
# What only the test suite needs: a browser for the login and admin page tests (with a CJK font, so the
# zh-CN screenshots show Chinese rather than boxes), Redis and PostgreSQL for the several-nodes configurations.
TEST_PACKAGES=(chromium chromium-driver fonts-wqy-microhei redis-server postgresql
  # The install and container tests: podman as root with runc, podman-compose, a Debian base image made with
  # debootstrap, name resolution between the containers of a compose network, nginx as the TLS front end.
  podman runc podman-compose debootstrap golang-github-containernetworking-plugin-dnsname nginx
  # kinit, for the Windows desktop sign-in (Kerberos) tests.
  krb5-user)

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
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [[ " ${missing[*]} " == *" samba "* ]]; then
      turn_off_samba_file_server
    fi
    if [[ " ${missing[*]} " == *" nginx "* ]] && [ -d /run/systemd/system ]; then
      # The tests start nginx with their own configuration; the package's default site would listen on port 80.
      echo "==> disabling the nginx service the package started (the tests run their own)"
      systemctl disable --now --quiet nginx
    fi
  fi
}

# Under systemd, the samba and winbind packages enable and start a file server listening on every interface
# (smbd, nmbd) and winbindd. The demo and the tests run their own `samba` with their own smb.conf and need none
# of them, so on a machine that had no Samba before we turn them off rather than leave a server exposed.
turn_off_samba_file_server() {
  if [ -d /run/systemd/system ]; then
    echo "==> disabling the smbd, nmbd and winbind services the samba packages started (the DC runs on its own)"
    systemctl disable --now --quiet smbd nmbd winbind
  fi
}

make_venv() {
  # Debian's python3-lxml and python3-xmlsec are built against the same libxml2; mixing PyPI's wheels of
  # one with the system build of the other fails at import. So the venv sees the system site-packages.
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
  fi
  # Every install takes the exact versions of constraints.txt (the ones the tests and pip-audit last passed
  # with); a change to it or to pyproject.toml installs again.
  local stamp="$VENV/.installed-$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha1sum | cut -c1-12)-$1"
  if [ ! -f "$stamp" ]; then
    echo "==> pip install -c constraints.txt -e .[$1]"
    # pip first: the one a venv starts with may be older than the pinned one, and it is itself audited.
    "$VENV/bin/pip" install -q --disable-pip-version-check -c "$ROOT/constraints.txt" pip
    "$VENV/bin/pip" install -q --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$ROOT[$1]"
    touch "$stamp"
  fi
}

bootstrap_run() {
  apt_install "${RUN_PACKAGES[@]}"
  make_venv run
}

bootstrap_demo() {
  apt_install "${RUN_PACKAGES[@]}" "${DEMO_PACKAGES[@]}"
  make_venv run
}

bootstrap_test() {
  apt_install "${RUN_PACKAGES[@]}" "${DEMO_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
  make_venv test
}

as_postgres() {
  (cd / && runuser -u postgres -- "$@")
}

# Redis and PostgreSQL back the several-nodes configurations (sessions in Redis, state in PostgreSQL);
# the tests use real ones. Started here when they are not already answering.
start_test_services() {
  if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    echo "==> starting redis-server on 127.0.0.1:6379"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/idp-tests.log
  fi
  local version port
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  # The cluster's own port: 5432, unless another server held that port when the package created the cluster.
  port=$(pg_conftool -s "$version" main show port 2>/dev/null || echo 5432)
  if ! pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null; then
    echo "==> starting PostgreSQL $version on port $port"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p "$port" -q && break; sleep 1; done
  fi
  # A role and database of our own, with a password, so the same URL works with peer, md5 or trust auth.
  # From / because the postgres user may not enter the checkout (under /root, say).
  as_postgres psql -p "$port" -qtAc "SELECT 1 FROM pg_roles WHERE rolname='idp_test'" | grep -q 1 ||
    as_postgres psql -p "$port" -qc "CREATE ROLE idp_test LOGIN PASSWORD 'idp_test'"
  as_postgres psql -p "$port" -qtAc "SELECT 1 FROM pg_database WHERE datname='idp_test'" | grep -q 1 ||
    as_postgres createdb -p "$port" -O idp_test idp_test
  export IDP_TEST_POSTGRES_URL="postgresql+psycopg://idp_test:idp_test@127.0.0.1:$port/idp_test"
  export IDP_TEST_REDIS_URL="redis://127.0.0.1:6379/15"
}
