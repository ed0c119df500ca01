"""The SimpleSAMLphp yardstick: Debian's simplesamlphp (1.19) under apache2 + mod_php (prefork), signing in
against the benchmark's own DC, answering the benchmark's SP.

Everything lives under one directory of the benchmark's temporary root: apache's own configuration file, pid
file, logs and port, SimpleSAMLphp's configuration, metadata, keys and PHP session files. Nothing in /etc is
changed and the system's apache2 service is neither used nor needed.
"""

from __future__ import annotations

import base64
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from bench.flows import Pages
from bench.machine import cpu_seconds_of_session
from idp.demo.samba_dc import BASE_DN, SERVICE_ACCOUNT, SambaDC
from idp.keys.material import new_key_and_certificate
from tests.e2e.saml_sp import IndependentSp

PACKAGES = ("apache2", "libapache2-mod-php", "php-ldap", "php-xml", "php-mbstring", "simplesamlphp")
"""php-xml and php-mbstring are needed by SimpleSAMLphp (DOM, mbstring) but are only recommended through the
`php` metapackage, so an install without recommends lacks them."""
SSP_ROOT = Path("/usr/share/simplesamlphp")
APACHE_MODULES = Path("/usr/lib/apache2/modules")
RELEASED_ATTRIBUTES = ("mail", "givenName", "sn", "displayName")
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
APACHE_CHILDREN = 40
"""prefork children started at once and kept: more than the 16 clients' kept-alive connections plus the
warm-up's, so that apache neither forks nor kills children during a step."""
_RUN_AS = "www-data"
_START_TIMEOUT = 30


PAGES = Pages("AuthState", 'name="SAMLResponse"', None)
"""SimpleSAMLphp's pages for bench.flows' browsers: SSOService.php redirects to core/loginuserpass.php, whose
form carries AuthState; the auto-POST page is the answer to the password and, in a session, to SSOService.php."""


class PhpIdpError(RuntimeError):
    """The SimpleSAMLphp yardstick could not be installed or started; the message says why."""


def missing_packages() -> list[str]:
    missing = []
    for name in PACKAGES:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${db:Status-Status}", name], capture_output=True, text=True, check=False
        )
        if done.stdout.strip() != "installed":
            missing.append(name)
    return missing


def ensure_packages(log: Callable[[str], None]) -> None:
    """Install what is missing with apt-get. If the install starts the system's apache2 service (postinst,
    where no policy-rc.d forbids it), it is stopped again: the yardstick runs its own apache."""
    try:
        missing = missing_packages()
        if missing:
            log(f"installing {' '.join(missing)} for the SimpleSAMLphp yardstick (apt-get, no recommends)")
            _install(missing, log)
    except (OSError, subprocess.SubprocessError) as exc:
        raise PhpIdpError(f"could not check or install {' '.join(PACKAGES)}: {exc}") from exc


def _install(missing: list[str], log: Callable[[str], None]) -> None:
    running_before = _system_apache_running()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        # A machine that never fetched the package lists knows no candidate yet.
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise PhpIdpError(f"apt-get install {' '.join(missing)} failed:\n{(done.stdout + done.stderr)[-2000:]}")
    if not running_before and _system_apache_running():
        log("the install started the system's apache2 service; stopping it (the yardstick runs its own)")
        subprocess.run(["service", "apache2", "stop"], capture_output=True, timeout=60, check=False)


def _system_apache_running() -> bool:
    try:
        pid = int(Path("/run/apache2/apache2.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    return Path(f"/proc/{pid}").exists()


def simplesamlphp_version() -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "simplesamlphp"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "?"


class PhpIdp:
    """``start`` runs apache (in a session of its own, so that its master and every child can be counted),
    ``close`` stops it; the directory is removed with the benchmark's root."""

    def __init__(self, root: Path, dc: SambaDC, sp: IndependentSp, *, log: Callable[[str], None] = print) -> None:
        self.dir = root / "simplesamlphp"
        self._root = root
        self._dc = dc
        self._sp = sp
        self._log = log
        self._apache: subprocess.Popen | None = None
        self.base_url = ""
        self.metadata_xml = ""
        self.ldap_tls = ""
        """How SimpleSAMLphp's LDAP library checks the DC's certificate (said in the report)."""

    @property
    def entity_id(self) -> str:
        return f"{self.base_url}/simplesaml/saml2/idp/metadata.php"

    @property
    def _error_log(self) -> Path:
        return self.dir / "log" / "apache-error.log"

    @property
    def _ssp_log(self) -> Path:
        return self.dir / "log" / "simplesamlphp.log"

    def start(self) -> None:
        started = time.monotonic()
        self.base_url = f"http://127.0.0.1:{_free_port()}"
        self._write_files()
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C", **self._ldap_env()}
        self._apache = subprocess.Popen(
            ["apache2", "-f", str(self.dir / "apache2.conf"), "-DFOREGROUND"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "log" / "apache-stderr.log").open("w"),
            start_new_session=True,
        )
        self.metadata_xml = self._wait_for_metadata()
        self._warm_up()
        self._log(
            f"SimpleSAMLphp {simplesamlphp_version()} (apache2 prefork + mod_php, {len(self.children())} children) on "
            f"{self.base_url} in {time.monotonic() - started:.1f} s; LDAPS to the DC: {self.ldap_tls}"
        )

    def close(self) -> None:
        if self._apache is None:
            return
        if self._apache.poll() is None:
            # SIGTERM is apache's "stop now": the master kills its children and exits.
            self._apache.send_signal(signal.SIGTERM)
            try:
                self._apache.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self._apache.pid, signal.SIGKILL)
                self._apache.wait(timeout=10)
        self._apache = None

    def cpu_seconds(self) -> float:
        """CPU used so far by apache: the master and every child, those it already reaped included (apache
        leads a session of its own)."""
        return 0.0 if self._apache is None else cpu_seconds_of_session(self._apache.pid)

    def children(self) -> list[int]:
        if self._apache is None:
            return []
        pid = self._apache.pid
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def log_tail(self, chars: int = 2000) -> str:
        parts = []
        for path in (self._error_log, self._ssp_log, self.dir / "log" / "apache-stderr.log"):
            try:
                text = path.read_text(errors="replace")[-chars:]
            except OSError:
                continue
            if text.strip():
                parts.append(f"--- {path.name}\n{text}")
        return "\n".join(parts) or "(no log)"

    # --- set-up ----------------------------------------------------------------------------------------------

    def _write_files(self) -> None:
        for sub in ("config", "metadata", "cert", "log", "sessions", "temp", "data", "run", "htdocs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        key_pem, cert_pem = new_key_and_certificate("simplesamlphp.bench.test")
        (self.dir / "cert" / "idp.key").write_text(key_pem)
        (self.dir / "cert" / "idp.crt").write_text(cert_pem)
        shutil.copyfile(self._dc.ca_file, self.dir / "cert" / "dc-ca.pem")
        (self.dir / "apache2.conf").write_text(self._apache_conf())
        (self.dir / "config" / "config.php").write_text(self._config_php())
        (self.dir / "config" / "authsources.php").write_text(self._authsources_php())
        (self.dir / "metadata" / "saml20-idp-hosted.php").write_text(self._idp_hosted_php())
        (self.dir / "metadata" / "saml20-sp-remote.php").write_text(self._sp_remote_php())
        # apache's children run as www-data: they read the configuration and keys, and write sessions and logs.
        # The benchmark's root is private to root (mkdtemp); www-data may pass through it, not list it.
        self._root.chmod(0o711)
        user = pwd.getpwnam(_RUN_AS)
        for path in [self.dir, *self.dir.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)

    def _ldap_env(self) -> dict[str, str]:
        """libldap reads its TLS settings from the process environment when PHP first uses it; apache's SetEnv
        does not reach it, the environment apache starts with does.

        The DC's certificate names the DC's host name (DC1.corp.example.com) but the benchmark reaches the DC by
        its loopback address, and libldap has no setting for the name to expect (our IdP has tls_valid_names).
        So libldap is given the DC's CA but told to go on when the name does not match ("allow"): the
        handshake and the chain check cost what they cost a verifying client, the name is not enforced."""
        self.ldap_tls = "LDAPTLS_CACERT=the DC's CA, LDAPTLS_REQCERT=allow (host name not enforced)"
        return {"LDAPTLS_CACERT": str(self.dir / "cert" / "dc-ca.pem"), "LDAPTLS_REQCERT": "allow"}

    def _apache_conf(self) -> str:
        d = self.dir
        port = self.base_url.rsplit(":", 1)[1]
        modules = "\n".join(
            f"LoadModule {name}_module {APACHE_MODULES / f'mod_{name}.so'}"
            for name in ("mpm_prefork", "authz_core", "alias", "env", "mime")
        )
        php = next(APACHE_MODULES.glob("libphp*.so"), APACHE_MODULES / "libphp.so")
        return f"""# The SimpleSAMLphp yardstick's own apache: nothing here is read from or written to /etc/apache2.
ServerRoot {d}
PidFile {d}/run/apache2.pid
DefaultRuntimeDir {d}/run
Mutex file:{d}/run default
Listen 127.0.0.1:{port}
ServerName 127.0.0.1
User {_RUN_AS}
Group {_RUN_AS}
ErrorLog {d}/log/apache-error.log
LogLevel warn
# No access log and no compression: `idp serve` writes no access log and compresses nothing by default.

{modules}
LoadModule php_module {php}

# Debian's apache2.conf defaults.
Timeout 300
KeepAlive On
MaxKeepAliveRequests 100
KeepAliveTimeout 5
HostnameLookups Off
AccessFileName .htaccess
TypesConfig /etc/mime.types

# prefork sized so that no child is forked or killed during a step (Debian's: 5 / 5 / 10 / 150).
StartServers {APACHE_CHILDREN}
MinSpareServers 1
MaxSpareServers {APACHE_CHILDREN}
ServerLimit {APACHE_CHILDREN}
MaxRequestWorkers {APACHE_CHILDREN}
MaxConnectionsPerChild 0

# Debian's php8.2.conf.
<FilesMatch ".+\\.ph(?:ar|p|tml)$">
    SetHandler application/x-httpd-php
</FilesMatch>

<Directory />
    AllowOverride None
    Require all denied
</Directory>

# An empty document root that may be read, as Debian's /var/www/html: mod_php maps the path info of
# module.php/core/... to a file below it (PATH_TRANSLATED) on every such request, and a denied lookup there
# would write an error line each time.
DocumentRoot {d}/htdocs
<Directory {d}/htdocs/>
    Require all granted
</Directory>

# Debian's /etc/simplesamlphp/apache.conf, under SimpleSAMLphp's usual path.
Alias /simplesaml {SSP_ROOT}/www
<Directory {SSP_ROOT}/www/>
    Require all granted
</Directory>

SetEnv SIMPLESAMLPHP_CONFIG_DIR {d}/config
php_admin_value session.save_path {d}/sessions
php_admin_value error_log {d}/log/php-error.log
"""

    def _config_php(self) -> str:
        d = self.dir
        # The values of Debian's /etc/simplesamlphp/config.php, except: the paths, the URL, the secrets,
        # logging (errors only, to a file, instead of notices to syslog), statistics (none, instead of the
        # log and /var/log/stats), the IdP switched on, the ldap module, and cookies without the secure flag
        # (the benchmark speaks plain HTTP on loopback, as to `idp serve`).
        config = {
            "baseurlpath": f"{self.base_url}/simplesaml/",
            "certdir": f"{d}/cert/",
            "loggingdir": f"{d}/log/",
            "datadir": f"{d}/data/",
            "tempdir": f"{d}/temp",
            "metadatadir": f"{d}/metadata/",
            "technicalcontact_name": "Administrator",
            "technicalcontact_email": "na@example.org",
            "timezone": "UTC",
            "secretsalt": secrets.token_urlsafe(24),
            "auth.adminpassword": secrets.token_urlsafe(12),
            "admin.protectindexpage": False,
            "admin.protectmetadata": False,
            "admin.checkforupdates": False,
            "enable.http_post": False,
            "showerrors": True,
            "errorreporting": False,
            "logging.handler": "file",
            "logging.logfile": "simplesamlphp.log",
            "statistics.out": [],
            "enable.saml20-idp": True,
            "module.enable": {"exampleauth": False, "core": True, "saml": True, "ldap": True},
            "session.duration": 8 * 3600,
            "session.cookie.secure": False,
            "language.cookie.secure": False,
            "template.auto_reload": False,
            "production": True,
            "authproc.idp": {
                30: "core:LanguageAdaptor",
                45: {"class": "core:StatisticsWithAttribute", "attributename": "realm", "type": "saml20-idp-SSO"},
                50: "core:AttributeLimit",
                99: "core:LanguageAdaptor",
            },
            "metadata.sources": [{"type": "flatfile"}],
            "store.type": "phpsession",
        }
        return f"<?php\n$config = {_php(config)};\n$config['logging.level'] = SimpleSAML\\Logger::ERR;\n"

    def _authsources_php(self) -> str:
        ldap = self._dc.ldap_settings()
        sources = {
            "ad": {
                0: "ldap:LDAP",
                "hostname": self._dc.ldaps_url,
                "port": 636,
                "enable_tls": False,
                # AD answers searches at the domain's root with referrals to its application partitions.
                "referrals": False,
                "timeout": 10,
                "attributes": list(RELEASED_ATTRIBUTES),
                "search.enable": True,
                "search.base": BASE_DN,
                "search.attributes": ["sAMAccountName"],
                "search.username": str(ldap["bind_dn"]),
                "search.password": SERVICE_ACCOUNT.password,
            },
        }
        return f"<?php\n$config = {_php(sources)};\n"

    def _idp_hosted_php(self) -> str:
        idp = {
            "host": "__DEFAULT__",
            "privatekey": "idp.key",
            "certificate": "idp.crt",
            "auth": "ad",
            "saml20.sign.response": True,
            "saml20.sign.assertion": True,
            "signature.algorithm": RSA_SHA256,
            "redirect.validate": True,
            "NameIDFormat": NAMEID_EMAIL,
            "simplesaml.nameidattribute": "mail",
        }
        return f"<?php\n$metadata[{_php(self.entity_id)}] = {_php(idp)};\n"

    def _sp_remote_php(self) -> str:
        cert = x509.load_pem_x509_certificate(self._sp.cert_pem.encode())
        sp = {
            "AssertionConsumerService": [
                {"Binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST", "Location": self._sp.acs_url}
            ],
            "certData": base64.b64encode(cert.public_bytes(Encoding.DER)).decode(),
            "validate.authnrequest": True,
            "NameIDFormat": NAMEID_EMAIL,
            "simplesaml.nameidattribute": "mail",
            "attributes": list(RELEASED_ATTRIBUTES),
            "signature.algorithm": RSA_SHA256,
            "saml20.sign.response": True,
            "saml20.sign.assertion": True,
        }
        return f"<?php\n$metadata[{_php(self._sp.entity_id)}] = {_php(sp)};\n"

    def _wait_for_metadata(self) -> str:
        assert self._apache is not None
        deadline = time.monotonic() + _START_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self._apache.poll() is not None:
                raise PhpIdpError(f"apache2 exited with {self._apache.returncode}:\n{self.log_tail()}")
            try:
                r = httpx.get(self.entity_id, timeout=10)
                if r.status_code == 200 and "IDPSSODescriptor" in r.text:
                    return r.text
                last = f"HTTP {r.status_code}: {' '.join(r.text.split())[:300]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.3)
        raise PhpIdpError(f"SimpleSAMLphp's metadata did not answer in {_START_TIMEOUT} s ({last}):\n{self.log_tail()}")

    def _warm_up(self) -> None:
        """opcache is shared by the children, but each child fills its own realpath and stat caches on its first
        requests: give every child a few before the first timed step, as bench.environment does for gunicorn's
        workers (the clients' own first sign-in, before the start signal, then runs the sign-in code)."""

        def fetch(_: int) -> None:
            # A new connection per request, so that apache hands them to different children.
            httpx.get(self.entity_id, timeout=30, headers={"Connection": "close"}).raise_for_status()

        with ThreadPoolExecutor(APACHE_CHILDREN) as pool:
            list(pool.map(fetch, range(4 * APACHE_CHILDREN)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _php(value: object) -> str:
    """A PHP literal for a configuration value (str, bool, int, list, dict)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, dict):
        return "[" + ", ".join(f"{_php(k)} => {_php(v)}" for k, v in value.items()) + "]"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_php(v) for v in value) + "]"
    raise TypeError(f"no PHP literal for {value!r}")
