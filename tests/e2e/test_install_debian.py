"""The README's production install, run as written in a fresh Debian 12 container with systemd as init, ending with
a sign-in through nginx on https.

The commands are read from README.md itself (the service account's `samba-tool` lines, the "Install for real"
block, the nginx and systemd block of "Production"), so the documentation and this test cannot drift apart;
the unit and the nginx site are the files of deploy/. The container shares the host's network (`--network
host`) to reach the suite's Samba AD DC and the Debian mirror. What the test changes, and why:
- `samba-tool` gets `-s` (the suite's DC keeps its smb.conf in a directory of its own) and another account
  name (the DC already has the demo's `svc-sso`);
- `idp init` reads its answers from stdin, as it would from a person typing them;
- the test's copies of deploy/systemd/idp.service and deploy/nginx/idp.conf listen on free ports of 127.0.0.1
  instead of 8000, 80 and 443: the host network is shared with other test runs;
- the admin's TLS certificate, made by the test, is put where the nginx site expects it before the steps run.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idp.demo.samba_dc import BASE_DN, DEMO_USERS, HOST_NAME, REALM, SambaDC
from tests.e2e import podman as pm
from tests.e2e.browser import Browser
from tests.e2e.harness import eventually
from tests.e2e.saml_sp import IndependentSp

pytestmark = [pytest.mark.ad, pytest.mark.timeout(900)]

README = pm.REPO / "README.md"
ALICE = next(u for u in DEMO_USERS if u.username == "alice")
CHECKOUT = "/opt/ad-sso-bridge"
DC_CA = "/usr/local/share/ca-certificates/corp-dc-ca.crt"
SERVICE_ACCOUNT = "svc-install"
SERVICE_PASSWORD = "Install!Passw0rd-1"


def readme_block(heading: str, language: str = "bash", nth: int = 0) -> str:
    """The ``nth`` fenced block in ``language`` of README's section whose heading starts with ``heading``."""
    text = README.read_text()
    start = re.search(rf"^#+ {re.escape(heading)}.*$", text, re.M)
    assert start, f"README.md has no section '{heading}'"
    section = text[start.end() :]
    following = re.search(r"^#{1,3} ", section, re.M)
    section = section[: following.start()] if following else section
    blocks = re.findall(rf"^```{language}\n(.*?)^```", section, re.M | re.S)
    assert len(blocks) > nth, f"README.md's '{heading}' has no {language} block #{nth + 1}"
    return blocks[nth]


def self_signed_for_loopback() -> tuple[str, str]:
    """nginx's key and certificate, made by the test: self-signed, for the address 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Installed:
    container: str
    https_url: str
    tls_cert: Path
    root: Path
    steps_output: str
    install_seconds: float

    @property
    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls_cert))

    def run(self, command: str, *, user: str = "root", check: bool = True) -> str:
        return pm.podman("exec", "--user", user, self.container, "bash", "-c", command, check=check)


def create_service_account(samba_dc: SambaDC) -> str:
    """The README's `samba-tool` lines, run on the DC's host; returns what they printed."""
    smb_conf = samba_dc.target_dir / "etc/smb.conf"
    output = []
    for line in readme_block("The service account").splitlines():
        command = line.split("#", 1)[0].strip().replace("svc-sso", SERVICE_ACCOUNT)
        if not command:
            continue
        assert command.startswith("samba-tool "), command
        done = subprocess.run(
            [*shlex.split(command), "-s", str(smb_conf)],
            input=f"{SERVICE_PASSWORD}\n{SERVICE_PASSWORD}\n",
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=True,  # no controlling terminal: the password prompt reads stdin
        )
        assert done.returncode == 0, f"{command}:\n{done.stdout}{done.stderr}"
        output.append(done.stdout)
    return "".join(output)


def site_for_test(site: str, idp_port: int, https_port: int, http_port: int) -> str:
    """deploy/nginx/idp.conf with this run's ports on 127.0.0.1 (the host network is shared), IPv4 only."""
    site = site.replace("127.0.0.1:8000", f"127.0.0.1:{idp_port}")
    site = re.sub(r"^\s*listen\s+\[::\]:\d+[^;]*;\n", "", site, flags=re.M)
    site = re.sub(r"\blisten\s+443\b", f"listen 127.0.0.1:{https_port}", site)
    return re.sub(r"\blisten\s+80\b", f"listen 127.0.0.1:{http_port}", site)


@pytest.fixture(scope="module")
def installed(samba_dc: SambaDC, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    pm.require_podman()
    pm.ensure_base_image()
    root = tmp_path_factory.mktemp("install-debian")
    root.chmod(0o755)  # mounted at /test, where the service user reads the SP's metadata
    checkout = root / "checkout"
    checkout.mkdir()
    # The working tree as a release would ship it: tracked and new files, nothing ignored (no .venv, no var/).
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=pm.REPO, capture_output=True, check=True,
    ).stdout  # fmt: skip
    for name in filter(None, files.decode().split("\0")):
        if (pm.REPO / name).is_file():  # a file deleted but not yet committed is listed too
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pm.REPO / name, checkout / name)
    service_account_output = create_service_account(samba_dc)

    idp_port, https_port, http_port = pm.free_tcp_port(), pm.free_tcp_port(), pm.free_tcp_port()
    https_url = f"https://127.0.0.1:{https_port}"
    key_pem, cert_pem = self_signed_for_loopback()
    tls_cert = root / "sso.crt"
    tls_cert.write_text(cert_pem)
    (root / "sso.key").write_text(key_pem)
    (root / "sso.key").chmod(0o600)
    answers = root / "init-answers"
    answers.write_text(
        "\n".join(
            [https_url, f"ldaps://{HOST_NAME.lower()}.{REALM}", BASE_DN, f"{SERVICE_ACCOUNT}@{REALM}", DC_CA,
             SERVICE_PASSWORD, ""]
        )
    )  # fmt: skip

    # The test's copies of the shipped files get this run's ports (the host network is shared); nothing else.
    unit = checkout / "deploy/systemd/idp.service"
    unit.write_text(unit.read_text().replace("127.0.0.1:8000", f"127.0.0.1:{idp_port}"))
    site = checkout / "deploy/nginx/idp.conf"
    site.write_text(site_for_test(site.read_text(), idp_port, https_port, http_port))
    # What the admin has before starting: their certificate and key where the site expects them.
    certificate = [
        f"install -D -m 0644 /test/sso.crt {_directive(site.read_text(), 'ssl_certificate')}",
        f"install -D -m 0600 /test/sso.key {_directive(site.read_text(), 'ssl_certificate_key')}",
    ]
    install = readme_block("Install for real")
    install = re.sub(r"^idp init\b.*$", "idp init < /test/init-answers", install, flags=re.M)
    steps = ["set -euxo pipefail", "export DEBIAN_FRONTEND=noninteractive", *certificate, install]
    (root / "steps.sh").write_text("\n".join([*steps, readme_block("Production")]))

    pm.ensure_systemd_image()
    name = f"idp-install-{uuid.uuid4().hex[:8]}"
    # systemd as init, as on a Debian 12 server; privileged, so that it can set up the unit's sandbox.
    pm.podman(
        "run", "-d", "--name", name, "--network", "host", "--privileged", "--systemd", "always",
        "--add-host", f"{HOST_NAME.lower()}.{REALM}:{samba_dc.ip}",
        "-v", f"{checkout}:{CHECKOUT}", "-v", f"{root}:/test:ro", "-v", f"{samba_dc.ca_file}:{DC_CA}:ro",
        *pm.pip_passthrough(), *pm.host_ca_options(),
        pm.SYSTEMD_IMAGE, "/lib/systemd/systemd",
    )  # fmt: skip
    try:
        installed = Installed(name, https_url, tls_cert, root, service_account_output, 0.0)
        eventually(
            lambda: installed.run("systemctl is-system-running || true").strip() in ("running", "degraded"),
            within=60,
            what="systemd to start in the container",
        )
        started = time.monotonic()
        done = subprocess.run(
            [*pm.PODMAN, "exec", "-w", CHECKOUT, name, "bash", "/test/steps.sh"],
            env=pm.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=840,
        )  # fmt: skip
        installed.install_seconds = time.monotonic() - started
        installed.steps_output += done.stdout + done.stderr
        (root / "steps.log").write_text(done.stdout + done.stderr)
        assert done.returncode == 0, f"the README's steps failed:\n{(done.stdout + done.stderr)[-5000:]}"
        _wait_ready(installed)
        yield installed
    finally:
        pm.podman("rm", "-f", "-t", "0", name, check=False)


def _directive(site: str, name: str) -> str:
    found = re.findall(rf"^\s*{name}\s+(\S+);", site, re.M)
    assert found, f"deploy/nginx/idp.conf has no {name} line"
    return found[0]


def _wait_ready(installed: Installed) -> None:
    deadline = time.monotonic() + 90
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(installed.https_url + "/healthz", verify=installed.tls, timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    log = installed.run("systemctl status --no-pager idp nginx; journalctl -u idp --no-pager | tail -n 30", check=False)
    pytest.fail(f"the IdP behind nginx did not answer /healthz within 90 s ({last}):\n{log}")


def test_the_files_have_the_owners_and_modes_the_readme_gives(installed: Installed) -> None:
    listing = installed.run(
        "stat -c '%U:%G %a %n' /etc/idp /etc/idp/idp.toml /etc/idp/ldap-password /etc/idp/certs"
        " /etc/idp/certs/idp.key /etc/idp/metadata /var/lib/idp"
    )
    modes = {line.split()[2]: tuple(line.split()[:2]) for line in listing.splitlines()}
    assert modes == {
        "/etc/idp": ("root:idp", "750"),
        "/etc/idp/idp.toml": ("root:idp", "640"),
        "/etc/idp/ldap-password": ("root:idp", "640"),
        "/etc/idp/certs": ("idp:idp", "700"),
        "/etc/idp/certs/idp.key": ("idp:idp", "600"),
        "/etc/idp/metadata": ("idp:idp", "700"),
        "/var/lib/idp": ("idp:idp", "700"),
    }
    assert SERVICE_PASSWORD not in installed.run("cat /etc/idp/idp.toml")
    assert SERVICE_PASSWORD not in installed.steps_output
    # No demo AD on a production install.
    assert installed.run("dpkg-query -W -f='${db:Status-Status}' samba samba-ad-dc 2>/dev/null || true") == ""
    # The service runs as idp, not root.
    assert installed.run("ps -o user= -C gunicorn,idp | sort -u").split() == ["idp"]


def test_the_unit_reloads_and_keeps_its_sandbox(installed: Installed) -> None:
    main_pid = installed.run("systemctl show -p MainPID --value idp").strip()
    hups = "journalctl -u idp --no-pager | grep -c 'Handling signal: hup' || true"
    before = int(installed.run(hups))
    installed.run("systemctl reload idp")
    eventually(lambda: int(installed.run(hups)) > before, within=30, what="gunicorn to take the reload's HUP")
    assert installed.run("systemctl show -p MainPID --value idp").strip() == main_pid  # reloaded, not restarted
    assert httpx.get(installed.https_url + "/healthz", verify=installed.tls, timeout=10).status_code == 200
    exposure = installed.run("systemd-analyze security --no-pager idp | tail -n 1")
    score = float(re.search(r"exposure level for idp.service: (\d+\.\d)", exposure).group(1))  # type: ignore[union-attr]
    assert score <= 2.0, exposure


def test_a_sign_in_through_nginx_on_https(installed: Installed) -> None:
    sp = IndependentSp(
        entity_id="https://mail.install.test/saml",
        acs_url="http://127.0.0.1:9700/acs",
        sign_requests=False,
        idp_metadata_xml=httpx.get(installed.https_url + "/saml/metadata", verify=installed.tls, timeout=10).text,
    )
    (installed.root / "sp.xml").write_bytes(sp.metadata_xml())
    (installed.root / "sp.xml").chmod(0o644)
    installed.run(f"IDP_CONFIG=/etc/idp/idp.toml {CHECKOUT}/.venv/bin/idp sp add /test/sp.xml", user="idp")

    browser = Browser()
    browser.http = httpx.Client(follow_redirects=True, verify=installed.tls)
    page = browser.get(sp.redirect_login_url())
    assert page.url.startswith(installed.https_url + "/"), page.url
    result = sp.consume(*browser.saml_post(browser.login(page, "alice", ALICE.password)))
    assert result.nameid == ALICE.mail
    # Behind nginx with trusted_proxy_count = 1 the session cookie is Secure and HSTS is sent.
    cookies = [c for c in browser.http.cookies.jar if c.domain.startswith("127.0.0.1")]
    assert cookies and all(c.secure for c in cookies)
    assert (
        "strict-transport-security"
        in httpx.get(installed.https_url + "/healthz", verify=installed.tls, timeout=10).headers
    )
