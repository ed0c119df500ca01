"""Podman for the container tests: the runtime flags this kind of host needs, a Debian bookworm base image made
once with debootstrap from the machine's own Debian mirror, and the host's pip configuration lent to builds.

Podman runs as root with runc and cgroupfs (no systemd inside the test machine's containers), and with a
containers.conf that sets no default ulimits (a container may not raise what the host caps). There is no image
registry: the base image is made from the mirror apt already uses, read from apt's sources at run time, and is
kept under a tag so that every later run reuses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support import require

BASE_IMAGE = "localhost/debian:bookworm"
# The same image under the name `FROM debian:bookworm` resolves to, so that builds (podman-compose's too)
# find it locally instead of asking a registry.
BASE_ALIASES = ("docker.io/library/debian:bookworm",)
IDP_IMAGE = "localhost/ad-sso-bridge:latest"
REPO = Path(__file__).resolve().parents[2]
_CONF = Path(tempfile.gettempdir()) / "idp-tests-containers.conf"


class PodmanError(RuntimeError):
    """A podman command failed; carries the command and what it printed."""


def require_podman() -> None:
    require(
        all(shutil.which(tool) for tool in ("podman", "runc", "debootstrap")),
        "podman, runc and debootstrap are not installed (Debian: podman runc debootstrap)",
    )
    require(os.geteuid() == 0, "the container tests run podman as root")


def env() -> dict[str, str]:
    if not _CONF.exists():
        # runc and cgroupfs here rather than as flags, so that podman-compose's own podman calls use them too.
        _CONF.write_text(
            '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
        )
    return {**os.environ, "CONTAINERS_CONF": str(_CONF)}


PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs")


def podman(*args: str, check: bool = True, timeout: float = 600, input: str | None = None) -> str:
    """Run ``podman ARGS`` and return its stdout; raise PodmanError (with its output) when it fails."""
    done = subprocess.run([*PODMAN, *args], env=env(), capture_output=True, text=True, timeout=timeout, input=input)
    if check and done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        raise PodmanError(f"podman {' '.join(args[:3])} ... exited {done.returncode}:\n{output}")
    return done.stdout


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (bookworm's main archive, not the security one)."""
    apt = Path("/etc/apt")
    sources = [
        *sorted(apt.glob("sources.list.d/*.sources")),
        apt / "sources.list",
        *sorted(apt.glob("sources.list.d/*.list")),
    ]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text()
        for stanza in re.split(r"\n\s*\n", text):  # deb822: URIs and Suites in one stanza
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:(.*)$", stanza, re.M)
            if uris and suites and "bookworm" in suites.group(1).split():
                return uris.group(1)
        for line in text.splitlines():  # one-line format: deb [options] URI SUITE COMPONENTS
            match = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
            if match:
                return match.group(1)
    raise PodmanError("no Debian bookworm mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/")


def ensure_base_image() -> float:
    """Make the bookworm base image unless a previous run did; return the seconds it took (0 when reused)."""
    if subprocess.run([*PODMAN, "image", "exists", BASE_IMAGE], env=env()).returncode == 0:
        return 0.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bookworm-root-") as root:
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", root, debian_mirror()],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise PodmanError(f"debootstrap failed:\n{(done.stdout + done.stderr)[-3000:]}")
        # As in Debian's own container images: packages installed later do not start their services
        # (nginx's would listen on port 80 of the host network).
        policy = Path(root) / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        shutil.rmtree(Path(root) / "var/lib/apt/lists", ignore_errors=True)
        (Path(root) / "var/lib/apt/lists/partial").mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [*PODMAN, "import", "-", BASE_IMAGE],
            env=env(),
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
        )
        tar.wait()
        if imported.returncode != 0:
            raise PodmanError(f"podman import failed:\n{imported.stderr[-3000:]}")
    for alias in BASE_ALIASES:
        podman("tag", BASE_IMAGE, alias)
    return time.monotonic() - started


SYSTEMD_IMAGE = "localhost/debian-systemd:bookworm"


def ensure_systemd_image() -> float:
    """Debian bookworm as a server comes, with systemd as init, made once from the base image; the seconds it
    took (0 when reused). Run it with ``--systemd=always`` and ``/lib/systemd/systemd`` as the command."""
    ensure_base_image()
    if subprocess.run([*PODMAN, "image", "exists", SYSTEMD_IMAGE], env=env()).returncode == 0:
        return 0.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="systemd-image-") as context:
        (Path(context) / "Containerfile").write_text(
            f"FROM {BASE_IMAGE}\n"
            "RUN apt-get update && apt-get install -y --no-install-recommends systemd systemd-sysv dbus"
            " && rm -rf /var/lib/apt/lists/*\n"
        )
        podman("build", "--network", "host", "-t", SYSTEMD_IMAGE, context, timeout=900)
    return time.monotonic() - started


def pip_passthrough() -> list[str]:
    """`podman run`/`build` options that lend a container this host's pip configuration: its PIP_* variables,
    its pip.conf files and the local directories and CA bundle they name, read-only. A test machine may reach
    its package index only that way; the product's files assume nothing of it."""
    options: list[str] = []
    values: list[str] = []
    for name, value in os.environ.items():
        if name.startswith("PIP_") and name != "PIP_CERT":
            options += ["-e", f"{name}={value}"]
            values.append(value)
    for conf in (Path("/etc/pip.conf"), Path.home() / ".config/pip/pip.conf", Path.home() / ".pip/pip.conf"):
        if conf.is_file():
            target = "/etc/pip.conf" if conf == Path("/etc/pip.conf") else f"/root/{conf.relative_to(Path.home())}"
            options += ["-v", f"{conf}:{target}:ro"]
            values += re.findall(r"=\s*(.+)", conf.read_text())
    mounted: set[str] = set()
    for value in values:
        for word in value.split():
            path = word.removeprefix("file://").rstrip("/")
            if path.endswith("/simple"):  # a local index links to files beside its simple/ pages
                path = path.removesuffix("/simple")
            # The CA bundle goes in by host_ca_options: the container's own ca-certificates package owns its path.
            ours = path.startswith("/") and not path.startswith("/etc/ssl/")
            if ours and Path(path).exists() and path not in mounted:
                mounted.add(path)
                options += ["-v", f"{path}:{path}:ro"]
    return options


def host_ca_options() -> list[str]:
    """The host's CA bundle for pip inside a build or container (a network that inspects TLS needs it)."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    return ["-v", f"{bundle}:/etc/ssl/host-ca.crt:ro", "-e", "PIP_CERT=/etc/ssl/host-ca.crt"] if bundle.exists() else []


def build(target: str, tag: str) -> None:
    """``podman build`` of docker/Dockerfile's ``target`` from the repository root, with the host's pip
    configuration and CA bundle lent to the build (the build argument PIP_CERT does not stay in the image)."""
    lent = pip_passthrough()
    volumes = [lent[i + 1] for i, option in enumerate(lent) if option == "-v"]
    # --format docker: the OCI format has no HEALTHCHECK, and podman would drop the image's.
    args = [
        "build",
        "--format",
        "docker",
        "--network",
        "host",
        "-f",
        "docker/Dockerfile",
        "--target",
        target,
        "-t",
        tag,
    ]
    for volume in volumes:
        args += ["-v", volume]
    if Path("/etc/ssl/certs/ca-certificates.crt").exists():
        args += ["-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/host-ca.crt:ro"]
        args += ["--build-arg", "PIP_CERT=/etc/ssl/host-ca.crt"]
    podman(*args, str(REPO), timeout=1200)


@contextlib.contextmanager
def network_reaching(name: str, target: tuple[str, int]) -> Iterator[str]:
    """A bridge network ``name`` of its own whose containers reach ``target`` (an address and port of the host's
    loopback) at the network's gateway, on the same port; yields the gateway. Removed afterwards."""
    podman("network", "create", name)
    try:
        gateway = str(json.loads(podman("network", "inspect", name))[0]["subnets"][0]["gateway"])
        relay = TcpRelay((gateway, target[1]), target)
        try:
            yield gateway
        finally:
            relay.close()
    finally:
        podman("network", "rm", "-f", name, check=False)


class TcpRelay:
    """Forwards TCP connections made to ``listen`` to ``target``: containers on a bridge network reach the suite's
    AD DC, which listens on a loopback address of the host, through the network's gateway address.

    The gateway address exists only once a container is attached, so the socket binds with IP_FREEBIND."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self._target = target
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
        self._server.bind(listen)
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        # shutdown wakes the thread blocked in accept(); close alone would leave the port listening meanwhile.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()


_IP_FREEBIND = 15  # from linux/in.h; the socket module does not name it


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def free_tcp_port() -> int:
    """A loopback port free now, for podman to publish (it binds the port itself, so none can be held open)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def logs(container: str, lines: int = 25) -> str:
    """The last lines a container printed (stdout and stderr), for a failing test's report."""
    done = subprocess.run(
        [*PODMAN, "logs", "--tail", str(lines), container], env=env(), capture_output=True, text=True, timeout=60
    )
    return done.stdout + done.stderr
