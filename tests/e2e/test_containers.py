"""The images of docker/ built and run with podman: the IdP image alone (non-root, read-only root filesystem,
volumes for keys and data, configuration from the environment, its health check) and compose.yaml (two IdP
nodes behind nginx, PostgreSQL, Redis with a password), each ending with a sign-in against the suite's AD.

The containers sit on a bridge network of their own; the suite's Samba DC listens on a loopback address of the
host, so a relay on the network's gateway address forwards LDAPS to it (the IdP checks the DC's certificate by
its name, as in production).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from idp.demo.samba_dc import BASE_DN, DEMO_USERS, NETBIOS, REALM, SERVICE_ACCOUNT, SambaDC
from tests.e2e import podman as pm
from tests.e2e.browser import Browser
from tests.e2e.harness import eventually
from tests.e2e.saml_sp import IndependentSp

pytestmark = [pytest.mark.ad, pytest.mark.timeout(900)]

ALICE = next(u for u in DEMO_USERS if u.username == "alice")
IMAGES = {
    "idp": pm.IDP_IMAGE,
    "nginx": "localhost/ad-sso-bridge-nginx:latest",
    "redis": "localhost/ad-sso-bridge-redis:latest",
    "postgres": "localhost/ad-sso-bridge-postgres:latest",
}


@pytest.fixture(scope="module")
def images() -> dict[str, float]:
    """Every image of compose.yaml, built once per run from docker/Dockerfile; the seconds each build took."""
    pm.require_podman()
    timings = {"debian base": pm.ensure_base_image()}
    for target, tag in IMAGES.items():
        started = time.monotonic()
        pm.build(target, tag)
        timings[target] = time.monotonic() - started
    return timings


def _sign_in(base_url: str, register: Callable[[bytes], None]) -> tuple[Browser, IndependentSp]:
    """A sign-in by alice from an independent SP, registered with ``register(its metadata)``; the browser, signed
    in, and the SP."""
    metadata = httpx.get(base_url + "/saml/metadata", timeout=10)
    assert metadata.status_code == 200, metadata.text[:300]
    sp = IndependentSp(
        entity_id=f"https://mail-{uuid.uuid4().hex[:6]}.container.test/saml",
        acs_url="http://127.0.0.1:9701/acs",
        sign_requests=False,
        idp_metadata_xml=metadata.text,
    )
    register(sp.metadata_xml())
    browser = Browser()
    page = browser.get(sp.redirect_login_url())
    assert page.url.startswith(base_url + "/"), page.url
    result = sp.consume(*browser.saml_post(browser.login(page, "alice", ALICE.password)))
    assert result.nameid == ALICE.mail
    return browser, sp


@pytest.fixture
def network(samba_dc: SambaDC) -> Iterator[tuple[str, str]]:
    """A bridge network of its own with the DC relayed on its gateway: (network name, gateway address)."""
    name = f"idp-test-{uuid.uuid4().hex[:8]}"
    with pm.network_reaching(name, (samba_dc.ip, 636)) as gateway:
        yield name, gateway


def test_the_image_runs_read_only_as_a_user_configured_from_the_environment(
    images: dict[str, float], network: tuple[str, str], samba_dc: SambaDC, tmp_path: Path
) -> None:
    net, gateway = network
    port = pm.free_tcp_port()
    base_url = f"http://127.0.0.1:{port}"
    name = f"idp-image-{uuid.uuid4().hex[:8]}"
    sp_dir = tmp_path / "sp"
    sp_dir.mkdir()
    sp_dir.chmod(0o755)
    settings = {
        "IDP_SERVER__BASE_URL": base_url,
        "IDP_LDAP__URLS": json.dumps([f"ldaps://{gateway}"]),
        "IDP_LDAP__BASE_DN": BASE_DN,
        "IDP_LDAP__BIND_DN": SERVICE_ACCOUNT.upn,
        "IDP_LDAP__BIND_PASSWORD": SERVICE_ACCOUNT.password,
        "IDP_LDAP__DOMAIN": NETBIOS,
        "IDP_LDAP__UPN_SUFFIX": REALM,
        "IDP_LDAP__CA_FILE": "/run/dc-ca.pem",
        "IDP_LDAP__TLS_VALID_NAMES": json.dumps([samba_dc.cert_name]),
        "IDP_GENERATE_KEYS": "true",
    }
    volumes = {f"{name}-certs": "/etc/idp/certs", f"{name}-data": "/var/lib/idp/data",
               f"{name}-metadata": "/var/lib/idp/metadata"}  # fmt: skip
    pm.podman(
        "run", "-d", "--name", name, "--network", net, "-p", f"127.0.0.1:{port}:8000", "--read-only",
        *(f"-v={volume}:{path}" for volume, path in volumes.items()),
        "-v", f"{samba_dc.ca_file}:/run/dc-ca.pem:ro", "-v", f"{sp_dir}:/sp:ro",
        *(f"-e={key}={value}" for key, value in settings.items()),
        pm.IDP_IMAGE,
    )  # fmt: skip
    try:
        eventually(lambda: _healthy(name), within=90, what="the image's health check to pass")
        assert pm.podman("exec", name, "id", "-un").strip() == "idp"
        assert pm.podman("top", name, "user").split()[1:] and set(pm.podman("top", name, "user").split()[1:]) == {"idp"}
        refused = subprocess.run(
            [*pm.PODMAN, "exec", name, "touch", "/opt/idp/x"], env=pm.env(), capture_output=True, text=True
        )
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr
        # The keys it made are the volume's, private to the service user.
        assert pm.podman("exec", name, "stat", "-c", "%U %a", "/etc/idp/certs/idp.key").split() == ["idp", "600"]

        def register(metadata: bytes) -> None:
            (sp_dir / "sp.xml").write_bytes(metadata)
            (sp_dir / "sp.xml").chmod(0o644)
            pm.podman("exec", name, "idp", "sp", "add", "/sp/sp.xml")

        _sign_in(base_url, register)
    finally:
        print(pm.logs(name))  # shown when the test fails
        pm.podman("rm", "-f", "-t", "0", name, check=False)
        pm.podman("volume", "rm", "-f", *volumes, check=False)


def _healthy(name: str) -> bool:
    return subprocess.run([*pm.PODMAN, "healthcheck", "run", name], env=pm.env(), capture_output=True).returncode == 0


def test_compose_two_nodes_behind_nginx_with_postgres_and_redis(
    images: dict[str, float], samba_dc: SambaDC, tmp_path: Path
) -> None:
    project = f"idptest{uuid.uuid4().hex[:6]}"
    # compose.yaml's own network, made first so that the DC's relay can sit on its gateway.
    with pm.network_reaching(f"{project}_default", (samba_dc.ip, 636)) as gateway:
        _run_compose(project, gateway, samba_dc, tmp_path)


def _run_compose(project: str, gateway: str, samba_dc: SambaDC, tmp_path: Path) -> None:
    port = pm.free_tcp_port()
    base_url = f"http://127.0.0.1:{port}"
    # The shipped settings, with this run's DC and address instead of the demo DC's.
    config = (pm.REPO / "docker/compose.idp.toml").read_text()
    config = config.replace('urls = ["ldaps://samba-dc"]', f'urls = ["ldaps://{gateway}"]')
    config = config.replace('base_url = "http://127.0.0.1:8080"', f'base_url = "{base_url}"')
    assert gateway in config and base_url in config
    (tmp_path / "idp.toml").write_text(config)
    (tmp_path / "idp.toml").chmod(0o644)
    mount = f"{samba_dc.ca_file}:/shared/dc-ca.pem:ro"
    (tmp_path / "compose.test.yaml").write_text(
        f"services:\n  idp1:\n    volumes: ['{mount}']\n  idp2:\n    volumes: ['{mount}']\n"
    )
    redis_password = f"testRedis{uuid.uuid4().hex[:10]}"
    env = {
        **pm.env(),
        "IDP_CONFIG_FILE": str(tmp_path / "idp.toml"),
        "IDP_HTTP_PORT": str(port),
        "REDIS_PASSWORD": redis_password,
        "POSTGRES_PASSWORD": f"testPg{uuid.uuid4().hex[:10]}",
    }
    compose = ["podman-compose", "-p", project, "-f", "docker/compose.yaml", "-f", str(tmp_path / "compose.test.yaml")]

    def up(*services: str) -> None:
        done = subprocess.run(
            [*compose, "up", "-d", *services], cwd=pm.REPO, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]

    def container(service: str) -> str:
        return f"{project}_{service}_1"

    try:
        # podman-compose starts services in order but does not wait for health: the state services first.
        up("postgres", "redis")
        for service in ("postgres", "redis"):
            eventually(lambda s=service: _healthy(container(s)), within=60, what=f"{service} to be healthy")
        up()
        eventually(lambda: _answers(base_url + "/healthz"), within=120, what="nginx to reach an IdP node")
        for node in ("idp1", "idp2"):
            eventually(lambda n=node: _healthy(container(n)), within=60, what=f"{node} to be healthy")

        # Redis asks for its password.
        unauthenticated = pm.podman(
            "exec", "-e", "REDISCLI_AUTH=", container("redis"), "redis-cli", "ping", check=False
        )
        assert "NOAUTH" in unauthenticated
        # Both nodes sign with the one key the first of them made.
        fingerprints = {
            pm.podman("exec", container(n), "sha256sum", "/etc/idp/certs/idp.crt") for n in ("idp1", "idp2")
        }
        assert len(fingerprints) == 1

        def register(metadata: bytes) -> None:
            pm.podman(
                "exec",
                "-i",
                container("idp1"),
                "sh",
                "-c",
                "cat > /tmp/sp.xml && idp sp add /tmp/sp.xml",
                input=metadata.decode(),
            )

        browser, sp = _sign_in(base_url, register)
        # The session is in Redis and the forms' secret key is shared: with idp1 gone, idp2 carries on.
        pm.podman("stop", "-t", "5", container("idp1"))
        page = browser.get(sp.redirect_login_url())
        assert page.is_auto_post, f"expected single sign-on without a password, got {page.status} {page.url}"
        assert sp.consume(*browser.saml_post(page)).nameid == ALICE.mail
    finally:
        for service in ("nginx", "idp1", "idp2", "postgres", "redis"):  # shown when the test fails
            print(f"--- {service}\n{pm.logs(container(service))}")
        subprocess.run([*compose, "down", "-v", "-t", "0"], cwd=pm.REPO, env=env, capture_output=True, timeout=300)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
