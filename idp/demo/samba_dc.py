"""A throw-away Samba 4 Active Directory domain controller on its own loopback address.

`idp demo` uses it so a newcomer can sign in without a real domain, and the test suite uses it so the
directory code is tested against the real thing (Samba returns Windows AD's exact bind diagnostics).
It holds one demo user per account state AD can refuse a sign-in for; each state is made the way an
admin would really reach it (disabled flag, expiry date, lockout by bad passwords, logon hours, ...).

Samba needs root, listens on fixed ports (389/636), and so gets a loopback address of its own.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ldap3 import NONE, Connection, Server, Tls

REALM = "corp.example.com"
NETBIOS = "CORP"
BASE_DN = "DC=corp,DC=example,DC=com"
HOST_NAME = "DC1"

_USERS_DN = f"CN=Users,{BASE_DN}"
_PSO_DN = f"CN=Password Settings Container,CN=System,{BASE_DN}"
# Marker written last: a workdir without it holds a half-finished provision and is redone.
_READY_MARKER = "demo-users.ready"
_LOCKOUT_THRESHOLD = 3


class SambaDCError(RuntimeError):
    """The demo domain controller could not be provisioned or started; the message says why."""


class AddressInUse(SambaDCError):
    """Something else already serves LDAPS on the address asked for (another DC, perhaps another run's)."""


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    given_name: str
    surname: str
    mail: str | None
    department: str | None
    title: str | None
    groups: tuple[str, ...]
    """Direct groups only; "Mail Users" is reached through "Sales" and "Engineering"."""
    state: str
    """"normal", "disabled", "expired", "must_change", "password_expired", "locked", "logon_hours",
    "workstation" or "service"."""

    @property
    def upn(self) -> str:
        return f"{self.username}@{REALM}"

    @property
    def dn(self) -> str:
        return f"CN={self.given_name} {self.surname},{_USERS_DN}"


def _user(
    username: str,
    given: str,
    surname: str,
    state: str = "normal",
    *,
    groups: tuple[str, ...] = ("Sales",),
    department: str | None = None,
    title: str | None = None,
    mailbox: str | None = None,
) -> DemoUser:
    return DemoUser(
        username=username,
        password=f"Passw0rd!{given}",
        given_name=given,
        surname=surname,
        mail=f"{mailbox or username}@{REALM}",
        department=department,
        title=title,
        groups=groups,
        state=state,
    )


DEMO_USERS: tuple[DemoUser, ...] = (
    _user("alice", "Alice", "Wang", department="Sales", title="Account Manager"),
    # Bob's mail address differs from his UPN, so sign-in by mail address is tested for real.
    _user(
        "bob",
        "Bob",
        "Li",
        groups=("Engineering",),
        department="Engineering",
        title="Software Engineer",
        mailbox="bob.li",
    ),
    _user("carol", "Carol", "Chen", groups=()),
    _user("anna", "Anna", "Admin", groups=("SSO Admins",), department="IT", title="Systems Administrator"),
    # The refusal states are in "Sales" (so in "Mail Users") on purpose: AD, not group policy, refuses them.
    _user("dave.disabled", "Dave", "Disabled", "disabled"),
    _user("erin.expired", "Erin", "Expired", "expired"),
    _user("frank.mustchange", "Frank", "Mustchange", "must_change"),
    _user("grace.pwexpired", "Grace", "Pwexpired", "password_expired"),
    _user("henry.locked", "Henry", "Locked", "locked"),
    _user("ivan.hours", "Ivan", "Hours", "logon_hours"),
    _user("judy.workstation", "Judy", "Workstation", "workstation"),
)

SERVICE_ACCOUNT = DemoUser(
    username="svc-sso",
    password="Svc-Sso!Passw0rd1",  # noqa: S106 - a demo password, printed on purpose by `idp demo`
    given_name="SSO",
    surname="Service",
    mail=None,
    department=None,
    title=None,
    groups=(),
    state="service",
)

# group -> member groups; users join groups through DemoUser.groups.
_GROUPS: dict[str, tuple[str, ...]] = {
    "Sales": (),
    "Engineering": (),
    "SSO Admins": (),
    "Mail Users": ("Sales", "Engineering"),
}

_UF_NORMAL_ACCOUNT = 0x200
_UF_ACCOUNTDISABLE = 0x2
_UF_DONT_EXPIRE_PASSWD = 0x10000
_FILETIME_EPOCH_OFFSET = 11644473600  # seconds from 1601-01-01 (AD's epoch) to 1970-01-01
_DAY = 24 * 3600 * 10**7  # AD intervals are in 100 ns units


def _filetime(unix_seconds: float) -> int:
    return int((unix_seconds + _FILETIME_EPOCH_OFFSET) * 10**7)


def _unicode_pwd(password: str) -> str:
    # AD takes a password only as the UTF-16LE encoding of the quoted string.
    return base64.b64encode(f'"{password}"'.encode("utf-16-le")).decode()


@dataclass
class SambaDC:
    workdir: Path
    ip: str
    admin_password: str = field(repr=False)

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.ip}"

    @property
    def ldap_url(self) -> str:
        return f"ldap://{self.ip}"

    @property
    def target_dir(self) -> Path:
        return self.workdir / "samba"

    @property
    def ca_file(self) -> Path:
        return self.target_dir / "private" / "tls" / "ca.pem"

    @property
    def cert_name(self) -> str:
        return f"{HOST_NAME}.{REALM}"

    @property
    def _smb_conf(self) -> Path:
        return self.target_dir / "etc" / "smb.conf"

    @property
    def _pid_file(self) -> Path:
        return self.target_dir / "run" / "samba.pid"

    @property
    def log_file(self) -> Path:
        return self.target_dir / "log.samba"

    def ldap_settings(self) -> dict[str, object]:
        return {
            "urls": [self.ldaps_url],
            "base_dn": BASE_DN,
            "bind_dn": SERVICE_ACCOUNT.upn,
            "bind_password": SERVICE_ACCOUNT.password,
            "domain": NETBIOS,
            "upn_suffix": REALM,
            "ca_file": self.ca_file,
            "tls_valid_names": [self.cert_name],
        }

    def _pid(self) -> int | None:
        try:
            pid = int(self._pid_file.read_text().strip())
            executable = Path(f"/proc/{pid}/exe").resolve()
        except (OSError, ValueError):
            return None
        # The pid file may outlive the process and the pid be reused by something else. (Samba rewrites
        # its command line to "samba: root process", so the executable is what identifies it.)
        return pid if executable.name == "samba" else None

    def is_running(self) -> bool:
        return self._pid() is not None

    def start(self, timeout: float = 60) -> None:
        if self.is_running():
            if self._configured_ip() == self.ip:
                self._wait_for_ldaps(timeout)
                return
            self.stop()  # running on another address than asked for now: move it
        if _port_open(self.ip, 636):
            raise AddressInUse(f"another server already listens on {self.ip}:636; give this DC another address")
        self._listen_on(self.ip)
        self._pid_file.parent.mkdir(parents=True, exist_ok=True)
        # A pid file left by a killed run would make samba believe it is already running.
        self._pid_file.unlink(missing_ok=True)
        _run(["samba", "-s", str(self._smb_conf), "-D", "-M", "single"], "start samba")
        self._wait_for_ldaps(timeout)

    def stop(self) -> None:
        pid = self._pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)

    def _configured_ip(self) -> str | None:
        for line in self._smb_conf.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "interfaces":
                return value.strip().split("/")[0]
        return None

    def _listen_on(self, ip: str) -> None:
        lines = self._smb_conf.read_text().splitlines()
        fixed = [f"\tinterfaces = {ip}/8" if line.strip().startswith("interfaces =") else line for line in lines]
        self._smb_conf.write_text("\n".join(fixed) + "\n")

    def _wait_for_ldaps(self, timeout: float) -> None:
        # Samba writes its TLS certificate on first start, so "answers" means a verified handshake.
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        seen_running = False
        while time.monotonic() < deadline:
            # The daemonised samba writes its pid file a moment after `samba -D` returns.
            running = self.is_running()
            seen_running = seen_running or running
            if seen_running and not running:
                log_tail = _tail(self.log_file)
                # Another DC took the address between our check and samba's bind (two runs starting at once).
                error = AddressInUse if "ADDRESS_ALREADY_ASSOCIATED" in log_tail else SambaDCError
                raise error(f"samba exited while starting; see {self.log_file}:\n{log_tail}")
            if self.ca_file.exists():
                try:
                    _tls_handshake(self.ip, self.ca_file, self.cert_name)
                    return
                except OSError as exc:
                    last_error = str(exc)
            time.sleep(0.2)
        raise SambaDCError(f"LDAPS on {self.ip}:636 did not answer within {timeout:.0f} s ({last_error})")


def ensure_dc(workdir: Path, ip: str = "127.0.0.11") -> SambaDC:
    """Provision (only when workdir holds no provisioned DC yet), add demo users in every state, start it,
    and return it. Idempotent and safe to call again on an existing workdir (reuses it, restarts if needed).
    """
    _check_prerequisites()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    password_file = workdir / "admin-password"
    if not (workdir / _READY_MARKER).exists():
        admin_password = f"Adm1n!{secrets.token_urlsafe(12)}"
        dc = SambaDC(workdir, ip, admin_password)
        _provision(dc)
        password_file.write_text(admin_password)
        password_file.chmod(0o600)
        (workdir / _READY_MARKER).write_text("provisioned\n")
    else:
        dc = SambaDC(workdir, ip, password_file.read_text().strip())
    dc.start()
    _lock_out(dc, next(u for u in DEMO_USERS if u.state == "locked"))
    return dc


def _check_prerequisites() -> None:
    missing = [tool for tool in ("samba", "samba-tool", "ldbadd", "ldbmodify") if shutil.which(tool) is None]
    if missing:
        raise SambaDCError(
            f"{', '.join(missing)} not found; install Debian's samba, samba-ad-dc and ldb-tools packages"
        )
    if os.geteuid() != 0:
        raise SambaDCError("a Samba AD DC must run as root (it binds ports 389 and 636)")


def _provision(dc: SambaDC) -> None:
    shutil.rmtree(dc.target_dir, ignore_errors=True)
    dc.target_dir.mkdir(parents=True)
    _run(
        [
            "samba-tool",
            "domain",
            "provision",
            f"--targetdir={dc.target_dir}",
            f"--realm={REALM.upper()}",
            f"--domain={NETBIOS}",
            f"--host-name={HOST_NAME}",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--use-rfc2307",
            f"--adminpass={dc.admin_password}",
            f"--option=interfaces={dc.ip}/8",
            "--option=bind interfaces only=yes",
            f"--option=pid directory={dc.target_dir / 'run'}",
            f"--option=log file={dc.log_file}",
            # LDAP for the directory, the KDC for Windows sign-in (Kerberos); fewer services start faster
            # and claim fewer ports.
            "--option=server services=ldap cldap kdc",
        ],
        "provision the domain",
    )
    # Provision drops this option, and without it Samba refuses simple binds on plain port 389.
    strong_auth_off = "[global]\n\tldap server require strong auth = no\n"
    conf = dc._smb_conf.read_text().replace("[global]\n", strong_auth_off, 1)
    dc._smb_conf.write_text(conf)
    sam = dc.target_dir / "private" / "sam.ldb"
    _ldb("ldbadd", sam, _directory_ldif(time.time()))
    _ldb("ldbmodify", sam, _domain_policy_ldif())
    _let_read_password_policies(sam, SERVICE_ACCOUNT.username)
    _let_list_deleted_objects(sam, SERVICE_ACCOUNT.username)
    # Samba's password_hash module accepts only 0 or -1 for pwdLastSet, even with the relax control, so a
    # password set long ago is written to the domain partition directly, below the module stack.
    partition = dc.target_dir / "private" / "sam.ldb.d" / f"{BASE_DN.upper()}.ldb"
    _ldb("ldbmodify", partition, _password_set_long_ago_ldif(time.time()))


def _directory_ldif(now: float) -> str:
    entries = [_user_entry(SERVICE_ACCOUNT, now)]
    entries += [_user_entry(user, now) for user in DEMO_USERS]
    for group, member_groups in _GROUPS.items():
        members = [f"CN={g},{_USERS_DN}" for g in member_groups]
        members += [u.dn for u in DEMO_USERS if group in u.groups]
        lines = [
            f"dn: CN={group},{_USERS_DN}",
            "objectClass: group",
            f"sAMAccountName: {group}",
            *[f"member: {m}" for m in members],
        ]
        entries.append("\n".join(lines))
    entries += _password_policies()
    return "\n\n".join(entries) + "\n"


def _user_entry(user: DemoUser, now: float) -> str:
    uac = _UF_NORMAL_ACCOUNT
    if user.state == "disabled":
        uac |= _UF_ACCOUNTDISABLE
    if user.state == "service":
        uac |= _UF_DONT_EXPIRE_PASSWD
    lines = [
        f"dn: {user.dn}",
        "objectClass: user",
        f"sAMAccountName: {user.username}",
        f"userPrincipalName: {user.upn}",
        f"givenName: {user.given_name}",
        f"sn: {user.surname}",
        f"displayName: {user.given_name} {user.surname}",
        f"unicodePwd:: {_unicode_pwd(user.password)}",
        f"userAccountControl: {uac}",
    ]
    lines += [
        f"{attr}: {value}"
        for attr, value in (("mail", user.mail), ("department", user.department), ("title", user.title))
        if value
    ]
    if user.state == "expired":
        lines.append(f"accountExpires: {_filetime(now - 30 * 86400)}")
    if user.state == "must_change":
        lines.append("pwdLastSet: 0")
    if user.state == "logon_hours":
        # 168 bits, one per hour of the week, all zero: no hour is allowed.
        lines.append(f"logonHours:: {base64.b64encode(bytes(21)).decode()}")
    if user.state == "workstation":
        lines.append("userWorkstations: OTHERPC")
    return "\n".join(lines)


def _password_policies() -> list[str]:
    """Fine-grained policies, so expiry and lockout touch one demo user each and nobody else."""
    grace = next(u for u in DEMO_USERS if u.state == "password_expired")
    henry = next(u for u in DEMO_USERS if u.state == "locked")
    ten_years = 3650 * _DAY
    common = [
        "objectClass: msDS-PasswordSettings",
        "msDS-PasswordReversibleEncryptionEnabled: FALSE",
        "msDS-PasswordHistoryLength: 0",
        "msDS-PasswordComplexityEnabled: TRUE",
        "msDS-MinimumPasswordLength: 7",
        "msDS-MinimumPasswordAge: 0",
    ]
    expiring = [
        f"dn: CN=demo-password-expires,{_PSO_DN}",
        *common,
        "msDS-PasswordSettingsPrecedence: 10",
        # Samba treats a maximum age of one day or less as "never expires", hence two days.
        f"msDS-MaximumPasswordAge: -{2 * _DAY}",
        "msDS-LockoutThreshold: 0",
        "msDS-LockoutObservationWindow: -18000000000",
        "msDS-LockoutDuration: -18000000000",
        f"msDS-PSOAppliesTo: {grace.dn}",
    ]
    lockout = [
        f"dn: CN=demo-lockout,{_PSO_DN}",
        *common,
        "msDS-PasswordSettingsPrecedence: 20",
        f"msDS-MaximumPasswordAge: -{ten_years}",
        f"msDS-LockoutThreshold: {_LOCKOUT_THRESHOLD}",
        "msDS-LockoutObservationWindow: -18000000000",
        # Long enough that the account stays locked for as long as a workdir is reused.
        f"msDS-LockoutDuration: -{ten_years}",
        f"msDS-PSOAppliesTo: {henry.dn}",
    ]
    return ["\n".join(expiring), "\n".join(lockout)]


def _domain_policy_ldif() -> str:
    # Demo passwords must not expire while a demo workdir is reused for months; grace's PSO overrides this.
    return (
        "\n".join(
            [
                f"dn: {BASE_DN}",
                "changetype: modify",
                "replace: maxPwdAge",
                "maxPwdAge: -9223372036854775808",
            ]
        )
        + "\n"
    )


def _password_set_long_ago_ldif(now: float) -> str:
    grace = next(u for u in DEMO_USERS if u.state == "password_expired")
    return (
        "\n".join(
            [
                f"dn: {grace.dn}",
                "changetype: modify",
                "replace: pwdLastSet",
                f"pwdLastSet: {_filetime(now - 30 * 86400)}",
            ]
        )
        + "\n"
    )


def _lock_out(dc: SambaDC, user: DemoUser) -> None:
    """Lock the account the way it happens in real life: enough wrong passwords in a row.

    Repeating this on an already locked account changes nothing, so it runs on every ensure_dc().
    """
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(dc.ca_file), valid_names=[dc.cert_name])
    server = Server(dc.ldaps_url, tls=tls, get_info=NONE, connect_timeout=5)
    for attempt in range(_LOCKOUT_THRESHOLD):
        # Distinct wrong passwords: Samba does not count a repeat of a recent wrong password.
        conn = Connection(server, user.upn, f"Wrong-{attempt}-{secrets.token_hex(4)}", receive_timeout=10)
        try:
            conn.bind()
        finally:
            conn.unbind()


def _let_read_password_policies(sam: Path, username: str) -> None:
    """AD hides fine-grained password policies from everyone but admins; the sign-in throttle wants their
    lockout thresholds, so the demo does what the README asks an admin to do: let the service account read
    the Password Settings Container (the ACE is inherited by every PSO in it)."""
    sid = _sid_of(sam, username)
    _run(
        ["samba-tool", "dsacl", "set", "-H", str(sam), f"--objectdn={_PSO_DN}", f"--sddl=(A;CI;RPLCLORC;;;{sid})"],
        "let the service account read password policies",
    )


def _let_list_deleted_objects(sam: Path, username: str) -> None:
    """The incremental sync reads deletions from the Deleted Objects container, which AD lets only
    administrators list; the demo grants the service account List Contents and Read Property there, as the
    README asks an admin to do with dsacls. (samba-tool dsacl cannot see the container: it is itself a
    deleted object, found only with the show-deleted control.)"""
    dn = f"CN=Deleted Objects,{BASE_DN}"
    found = subprocess.run(
        ["ldbsearch", "-H", str(sam), "--controls=show_deleted:1", "-s", "base", "-b", dn, "nTSecurityDescriptor"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    unfolded = found.replace("\n ", "")  # LDIF folds long values onto lines that start with a space
    sddl = next(line.split(":", 1)[1].strip() for line in unfolded.splitlines() if line.startswith("nTSec"))
    dacl_end = sddl.find("S:") if "S:" in sddl else len(sddl)  # the new entry goes last in the DACL
    granted = f"{sddl[:dacl_end]}(A;;RPLC;;;{_sid_of(sam, username)}){sddl[dacl_end:]}"
    ldif = f"dn: {dn}\nchangetype: modify\nreplace: nTSecurityDescriptor\nnTSecurityDescriptor: {granted}\n"
    _run(
        ["ldbmodify", "-H", str(sam), "--controls=show_deleted:1"],
        "let the service account list deleted objects",
        stdin=ldif,
    )


def _sid_of(sam: Path, username: str) -> str:
    found = subprocess.run(
        ["ldbsearch", "-H", str(sam), f"(sAMAccountName={username})", "objectSid"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return next(line.split(":", 1)[1].strip() for line in found.splitlines() if line.startswith("objectSid:"))


def _ldb(tool: str, url: Path, ldif: str) -> None:
    _run([tool, "-H", str(url)], f"{tool} on {url.name}", stdin=ldif)


def _run(cmd: list[str], what: str, stdin: str | None = None) -> None:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()[-2000:]
        raise SambaDCError(f"could not {what} (exit {proc.returncode}):\n{output}")


def _port_open(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1):
            return True
    except OSError:
        return False


def _tls_handshake(ip: str, ca_file: Path, cert_name: str) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection((ip, 636), timeout=2) as sock:
        context.wrap_socket(sock, server_hostname=cert_name).close()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
