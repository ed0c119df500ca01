"""[kerberos] keytab: start-up wants an AES key for the service principal; an RC4-only keytab is refused with
the way to mend it. The keytabs are written by MIT's ktutil, not by us."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from idp.app import negotiate_acceptor
from idp.directory.keytab import read_keytab
from idp.settings import Settings, SettingsError, load_settings
from tests.support import require
from tests.unit.test_settings import MINIMAL, write

PRINCIPAL = "HTTP/sso.corp.example.com@CORP.EXAMPLE.COM"


def _keytab(path: Path, *enctypes: str) -> Path:
    """A keytab with one key of each enctype for PRINCIPAL (key version 2), as ktutil makes it from a password."""
    require(shutil.which("ktutil") is not None, "ktutil not installed (Debian: krb5-user)")
    commands = "".join(f"addent -password -p {PRINCIPAL} -k 2 -e {e}\nKeytab-Passw0rd\n" for e in enctypes)
    done = subprocess.run(
        ["ktutil"], input=f"{commands}wkt {path}\nquit\n", capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0 and path.exists(), done.stdout + done.stderr
    return path


def _settings(tmp_path: Path) -> Settings:
    kerberos = {"keytab": "idp.keytab", "service_principal": "HTTP/sso.corp.example.com"}
    config = {**MINIMAL, "server": {"base_url": "https://sso.corp.example.com"}, "kerberos": kerberos}
    return load_settings(write(tmp_path, config), environ={})


@pytest.fixture(autouse=True)
def _no_krb5_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No krb5.conf: the acceptor's principal carries AD's realm (CORP.EXAMPLE.COM, from the base DN)."""
    monkeypatch.setenv("KRB5_CONFIG", str(tmp_path / "no-krb5.conf"))


def test_an_rc4_only_keytab_stops_start_up_saying_how_to_mend_it(tmp_path):
    _keytab(tmp_path / "idp.keytab", "arcfour-hmac")
    assert [e.enctype_name for e in read_keytab(tmp_path / "idp.keytab")] == ["arcfour-hmac"]
    with pytest.raises(
        SettingsError,
        match=r"kerberos.keytab: .*holds no AES key for HTTP/sso.corp.example.com@CORP.EXAMPLE.COM "
        r"\(only arcfour-hmac\): "
        r"allow AES on its AD account \(msDS-SupportedEncryptionTypes\)",
    ):
        negotiate_acceptor(_settings(tmp_path))


@pytest.mark.parametrize("aes", ["aes256-cts-hmac-sha1-96", "aes128-cts-hmac-sha1-96"])
def test_a_keytab_with_an_aes_key_is_taken_with_or_without_rc4_beside_it(tmp_path, aes):
    _keytab(tmp_path / "idp.keytab", "arcfour-hmac", aes)
    acceptor = negotiate_acceptor(_settings(tmp_path))
    assert acceptor is not None and acceptor.principal == PRINCIPAL
    _keytab(tmp_path / "aes-only.keytab", aes)
    (tmp_path / "aes-only.keytab").replace(tmp_path / "idp.keytab")
    assert [e.is_aes for e in read_keytab(tmp_path / "idp.keytab")] == [True]
    assert negotiate_acceptor(_settings(tmp_path)) is not None
