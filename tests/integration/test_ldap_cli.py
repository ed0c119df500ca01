"""`idp ldap test` as an admin runs it: a config file, the real DC, an exit code and a readable table."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from idp.cli import cli
from idp.demo.samba_dc import SambaDC
from idp.settings import render_toml

pytestmark = pytest.mark.ad


def run_ldap_test(tmp_path: Path, ldap: dict[str, object], *args: str) -> Result:
    config = tmp_path / "idp.toml"
    config.write_text(render_toml({"ldap": ldap}))
    # A wide terminal keeps rich from folding the URLs and messages the assertions look for.
    return CliRunner().invoke(cli, ["--config", str(config), "ldap", "test", *args], terminal_width=200)


def test_a_working_dc_exits_0_and_shows_the_user(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, samba_dc.ldap_settings(), "--user", "CORP\\alice")
    assert result.exit_code == 0, result.output
    assert samba_dc.ldaps_url in result.output
    assert "Active Directory is usable" in result.output
    assert "CN=Alice Wang,CN=Users,DC=corp,DC=example,DC=com" in result.output
    assert "Mail Users, Sales" in result.output


def test_one_dead_dc_of_two_is_shown_but_ad_stays_usable(tmp_path: Path, samba_dc: SambaDC) -> None:
    ldap = {**samba_dc.ldap_settings(), "urls": ["ldaps://127.0.0.99", samba_dc.ldaps_url]}
    result = run_ldap_test(tmp_path, ldap)
    assert result.exit_code == 0, result.output
    assert "ldaps://127.0.0.99 reachable: [Errno 111] Connection refused" in result.output


def test_no_reachable_dc_exits_1(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, {**samba_dc.ldap_settings(), "urls": ["ldaps://127.0.0.99"]}, "--user", "alice")
    assert result.exit_code == 1, result.output
    assert "NOT usable" in result.output


def test_a_wrong_service_password_names_the_failed_step(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, {**samba_dc.ldap_settings(), "bind_password": "Not-The-Passw0rd"})
    assert result.exit_code == 1, result.output
    assert "service bind:" in result.output and "data 52e" in result.output


def test_a_certificate_name_mismatch_says_what_to_set(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, {**samba_dc.ldap_settings(), "tls_valid_names": []})
    assert result.exit_code == 1, result.output
    assert "tls:" in result.output and "tls_valid_names" in result.output


def test_an_unknown_user_is_reported_as_not_found(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, samba_dc.ldap_settings(), "--user", "nobody.here")
    assert result.exit_code == 0, result.output
    assert "nobody.here: not found" in result.output
