"""[kerberos]: the service principal's default, and start-up errors that name the bad key (a keytab that is
missing, unreadable, or holds no key for the principal)."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from idp.app import negotiate_acceptor
from idp.directory.keytab import KeytabUnreadable, read_keytab
from idp.settings import SettingsError, load_settings
from tests.unit.test_settings import MINIMAL, write


def _config(tmp_path: Path, kerberos: dict, base_url: str = "https://sso.corp.example.com") -> Path:
    return write(tmp_path, {**MINIMAL, "server": {"base_url": base_url}, "kerberos": kerberos})


def test_the_principal_defaults_to_the_host_of_base_url(tmp_path):
    (tmp_path / "idp.keytab").write_bytes(b"\x05\x02")
    s = load_settings(_config(tmp_path, {"keytab": "idp.keytab", "networks": ["10.0.0.0/8"]}), environ={})
    assert s.kerberos_principal == "HTTP/sso.corp.example.com"
    assert s.kerberos is not None and s.kerberos.keytab == tmp_path / "idp.keytab"
    assert s.kerberos.networks == [ip_network("10.0.0.0/8")]
    named = {"keytab": "idp.keytab", "service_principal": "HTTP/login.corp.example.com"}
    assert load_settings(_config(tmp_path, named), environ={}).kerberos_principal == "HTTP/login.corp.example.com"


@pytest.mark.parametrize(
    ("kerberos", "named"),
    [
        ({"keytab": "missing.keytab"}, r"kerberos.keytab: .*missing.keytab does not exist"),
        ({"keytab": "idp.keytab", "service_principal": "host/sso"}, r"kerberos.service_principal"),
        ({"keytab": "idp.keytab", "service_principal": "HTTP/sso@CORP"}, r"kerberos.service_principal"),
        ({"keytab": "idp.keytab", "networks": ["10.0.0.300/8"]}, r"kerberos.networks"),
    ],
)
def test_bad_kerberos_settings_are_named(tmp_path, kerberos, named):
    (tmp_path / "idp.keytab").write_bytes(b"\x05\x02")
    with pytest.raises(SettingsError, match=named):
        load_settings(_config(tmp_path, kerberos), environ={})


def test_a_keytab_without_the_principals_key_stops_start_up(tmp_path):
    (tmp_path / "idp.keytab").write_bytes(b"\x05\x02")
    s = load_settings(_config(tmp_path, {"keytab": "idp.keytab"}), environ={})
    with pytest.raises(SettingsError, match=r"kerberos.keytab: .*holds no key for HTTP/sso.corp.example.com"):
        negotiate_acceptor(s)
    assert read_keytab(tmp_path / "idp.keytab") == []
    (tmp_path / "idp.keytab").write_bytes(b"not a keytab")
    with pytest.raises(KeytabUnreadable, match="not a version 2 keytab"):
        read_keytab(tmp_path / "idp.keytab")
