#!/bin/sh
# Container entrypoint.
#   (default)  exec the command; before `idp serve`, check that the config and the signing key exist.
#   samba-dc   provision (first start) and run the demo AD DC of `idp demo`, for docker/compose.yaml.
set -eu

run_samba_dc() {
  # The DC listens on the container's own address so that other containers reach it; its CA certificate
  # goes to /shared, readable by the IdP container (Samba keeps its private/ directory root-only).
  ip="$(hostname -i | tr ' ' '\n' | grep -m1 -E '^[0-9]+(\.[0-9]+){3}$' || true)"
  if [ -z "$ip" ]; then
    echo "cannot find this container's IPv4 address (hostname -i: $(hostname -i))" >&2
    exit 1
  fi
  python3 - "$ip" <<'PY'
import shutil, sys
from pathlib import Path
from idp.demo.samba_dc import ensure_dc

dc = ensure_dc(Path("/var/lib/samba-demo"), ip=sys.argv[1])
shutil.copyfile(dc.ca_file, "/shared/dc-ca.pem")
Path("/shared/dc-ca.pem").chmod(0o644)
print(f"Samba AD DC ready on {dc.ldaps_url} (certificate name {dc.cert_name})", flush=True)
PY
  pid_file=/var/lib/samba-demo/samba/run/samba.pid
  trap 'kill -TERM "$(cat "$pid_file")" 2>/dev/null; exit 0' TERM INT
  # samba daemonised itself; the container lives as long as it does.
  while kill -0 "$(cat "$pid_file")" 2>/dev/null; do sleep 5 & wait $!; done
  echo "samba exited; see /var/lib/samba-demo/samba/log.samba" >&2
  exit 1
}

if [ "${1:-}" = "samba-dc" ]; then
  run_samba_dc
fi

# Before serving, fail fast with what to do; other commands (`idp keys init`, `idp sp add`) check for
# themselves and must stay usable to fix what is missing.
if [ "${1:-}" = "idp" ] && [ "${2:-}" = "serve" ]; then
  config="${IDP_CONFIG:-/etc/idp/idp.toml}"
  if [ ! -f "$config" ]; then
    echo "No configuration at $config: mount your idp.toml there (or set IDP_CONFIG)." >&2
    exit 64
  fi
  # The signing key is generated only when asked to: every SP trusts the current certificate, and a
  # silently new one would break them all.
  if ! keys="$(idp keys show 2>&1)"; then
    if [ "${IDP_GENERATE_KEYS:-false}" = "true" ]; then
      echo "No usable signing key ($keys): generating one because IDP_GENERATE_KEYS=true." >&2
      # Nodes that share the keys volume start together: the first makes the key, the others then find it.
      flock /etc/idp/certs sh -c 'idp keys show >/dev/null 2>&1 || idp keys init'
    else
      echo "$keys" >&2
      echo "Run 'idp keys init' once with the certs volume mounted, or set IDP_GENERATE_KEYS=true." >&2
      exit 65
    fi
  fi
fi

exec "$@"
