"""[kerberos]: the service principal's default, and start-up errors that name the bad key (a keytab that is
missing, unreadable, or holds no key for the principal)."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from idp.app import negotiate_acceptor
from idp.directory.kerberos import DEFAULT_CLOCKSKEW, tolerated_skew
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


KRB5_CONF = """# written by hand
[logging]
 clockskew = 1
[realms]
 CORP.EXAMPLE.COM = {
  clockskew = 2
 }
[libdefaults]*
 default_realm = CORP.EXAMPLE.COM
 clockskew = {value}
"""


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("600", 600), ("10m", 600), ("1h 30m", 5400), ("0:15", 900), ("0:02:30", 150), ("120*", 120), ("soon", 300)],
)
def test_the_tolerated_clock_skew_is_krb5_confs(tmp_path: Path, value: str, seconds: int) -> None:
    """The console judges the clocks by the tolerance the Kerberos library applies: [libdefaults] clockskew,
    in any of krb5's duration forms; a value krb5 would not read leaves its default of five minutes."""
    conf = tmp_path / "krb5.conf"
    conf.write_text(KRB5_CONF.replace("{value}", value))
    assert tolerated_skew({"KRB5_CONFIG": f"{tmp_path / 'missing.conf'}:{conf}"}) == seconds


def test_without_a_clockskew_the_tolerance_is_five_minutes(tmp_path: Path) -> None:
    first, second = tmp_path / "first.conf", tmp_path / "second.conf"
    first.write_text("[libdefaults]\n default_realm = CORP.EXAMPLE.COM\n")
    second.write_text("[libdefaults]\n clockskew = 900\n")
    assert tolerated_skew({"KRB5_CONFIG": str(first)}) == DEFAULT_CLOCKSKEW == 300
    assert tolerated_skew({"KRB5_CONFIG": f"{first}:{second}"}) == 900  # the first file that sets it
    assert tolerated_skew({"KRB5_CONFIG": str(tmp_path / "none.conf")}) == 300
