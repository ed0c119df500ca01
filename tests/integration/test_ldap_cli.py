"""`idp ldap test` as an admin runs it: a config file, the real DC, an exit code and a readable table; every
failure in words (never a traceback, never ldap3's reprs), and the TLS mode that was used."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from idp.cli import cli
from idp.demo.samba_dc import SambaDC
from idp.keys.material import init_keys
from idp.settings import render_toml
from tests.unit.sp_fixtures import sp_metadata

pytestmark = pytest.mark.ad


def run_ldap_test(tmp_path: Path, ldap: dict[str, object], *args: str) -> Result:
    config = tmp_path / "idp.toml"
    config.write_text(render_toml({"ldap": ldap}))
    # A wide terminal keeps rich from folding the URLs and messages the assertions look for.
    result = CliRunner().invoke(cli, ["--config", str(config), "ldap", "test", *args], env={"COLUMNS": "250"})
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    # ldap3's exceptions carry Python reprs (a whole certificate as a dict); none reaches the admin.
    assert "{'" not in result.output and "LDAPSocketOpenError" not in result.output
    return result


def test_a_working_dc_exits_0_and_shows_the_user(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, samba_dc.ldap_settings(), "--user", "CORP\\alice")
    assert result.exit_code == 0, result.output
    assert samba_dc.ldaps_url in result.output
    assert "LDAPS" in result.output and f"{samba_dc.ldaps_url} tls: LDAPS, certificate checked" in result.output
    assert "Active Directory is usable" in result.output
    assert "CN=Alice Wang,CN=Users,DC=corp,DC=example,DC=com" in result.output
    assert "Mail Users, Sales" in result.output


def test_one_dead_dc_of_two_is_shown_but_ad_stays_usable(tmp_path: Path, samba_dc: SambaDC) -> None:
    ldap = {**samba_dc.ldap_settings(), "urls": ["ldaps://127.0.0.99", samba_dc.ldaps_url]}
    result = run_ldap_test(tmp_path, ldap)
    assert result.exit_code == 0, result.output
    assert "ldaps://127.0.0.99 reachable: 127.0.0.99:636 refused the connection: nothing listens there" in result.output


def test_no_reachable_dc_exits_1(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, {**samba_dc.ldap_settings(), "urls": ["ldaps://127.0.0.99"]}, "--user", "alice")
    assert result.exit_code == 1, result.output
    assert "NOT usable" in result.output


def test_a_wrong_service_password_names_the_failed_step(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, {**samba_dc.ldap_settings(), "bind_password": "Not-The-Passw0rd"})
    assert result.exit_code == 1, result.output
    assert (
        "service bind: AD refused the service account svc-sso@corp.example.com: wrong password, or no such account"
        in (result.output)
    )
    assert "(AD code data 52e)" in result.output and "80090308" not in result.output


def test_a_certificate_name_mismatch_says_what_to_set(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, {**samba_dc.ldap_settings(), "tls_valid_names": []})
    assert result.exit_code == 1, result.output
    assert f"tls: the DC's certificate names ({samba_dc.cert_name}) do not include {samba_dc.ip}" in result.output
    assert "add it to ldap.tls_valid_names" in result.output


def test_an_unknown_user_is_reported_as_not_found(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, samba_dc.ldap_settings(), "--user", "nobody.here")
    assert result.exit_code == 0, result.output
    assert "nobody.here: not found" in result.output


def test_a_missing_ca_file_is_named(tmp_path: Path, samba_dc: SambaDC) -> None:
    missing = tmp_path / "no-such-ca.pem"
    result = run_ldap_test(tmp_path, {**samba_dc.ldap_settings(), "ca_file": str(missing)})
    assert result.exit_code == 1, result.output
    assert f"tls: ldap.ca_file {missing} does not exist" in result.output


def test_a_ca_that_did_not_sign_the_dc_certificate(tmp_path: Path, samba_dc: SambaDC) -> None:
    other = tmp_path / "other-ca.pem"
    init_keys(tmp_path / "other.key", other, tmp_path / "other.secret", "other-ca.example")
    result = run_ldap_test(tmp_path, {**samba_dc.ldap_settings(), "ca_file": str(other)})
    assert result.exit_code == 1, result.output
    assert "tls: the DC's certificate is not trusted" in result.output and "ldap.ca_file" in result.output


def test_a_dc_that_cannot_be_reached(tmp_path: Path, samba_dc: SambaDC) -> None:
    # 192.0.2.0/24 is reserved for documentation: no DC there.
    ldap = {**samba_dc.ldap_settings(), "urls": ["ldaps://192.0.2.1"], "connect_timeout": 1.0}
    result = run_ldap_test(tmp_path, ldap)
    assert result.exit_code == 1, result.output
    # Dropped (a timeout), refused or unroutable depends on this host's network; each is said in words.
    assert any(
        words in result.output
        for words in (
            "no answer from 192.0.2.1:636 within 1 s",
            "192.0.2.1:636 refused the connection",
            "cannot connect to 192.0.2.1:636",
        )
    )
    assert "Errno" not in result.output


def test_a_base_dn_that_does_not_exist_names_the_real_root(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, {**samba_dc.ldap_settings(), "base_dn": "OU=Nowhere,DC=corp,DC=example,DC=com"})
    assert result.exit_code == 1, result.output
    assert "base DN: ldap.base_dn OU=Nowhere,DC=corp,DC=example,DC=com does not exist in this domain" in result.output
    assert "the domain's root is DC=corp,DC=example,DC=com" in result.output


def test_clear_text_fails_unless_allowed(tmp_path: Path, samba_dc: SambaDC) -> None:
    ldap = {**samba_dc.ldap_settings(), "urls": [samba_dc.ldap_url]}
    refused = run_ldap_test(tmp_path, ldap)
    assert refused.exit_code == 1, refused.output
    assert f"{samba_dc.ldap_url} tls: clear text:" in refused.output and "--allow-cleartext" in refused.output
    assert "NOT usable" in refused.output

    allowed = run_ldap_test(tmp_path, ldap, "--allow-cleartext")
    assert allowed.exit_code == 0, allowed.output
    assert "clear text" in allowed.output and "allowed by --allow-cleartext" in allowed.output


def test_start_tls_is_shown(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, {**samba_dc.ldap_settings(), "urls": [samba_dc.ldap_url], "start_tls": True})
    assert result.exit_code == 0, result.output
    assert f"{samba_dc.ldap_url} tls: StartTLS, certificate checked" in result.output


def test_ldaps_to_the_plain_port_says_so(tmp_path: Path, samba_dc: SambaDC) -> None:
    result = run_ldap_test(tmp_path, {**samba_dc.ldap_settings(), "urls": [f"ldaps://{samba_dc.ip}:389"]})
    assert result.exit_code == 1, result.output
    assert f"{samba_dc.ip}:389 does not speak TLS: LDAPS is port 636" in result.output


def test_fits_80_columns(tmp_path: Path, samba_dc: SambaDC) -> None:
    config = tmp_path / "idp.toml"
    config.write_text(
        render_toml({"ldap": {**samba_dc.ldap_settings(), "urls": ["ldaps://127.0.0.99", samba_dc.ldaps_url]}})
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "ldap", "test"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_sp_add_checks_its_groups_in_ad(tmp_path: Path, samba_dc: SambaDC) -> None:
    config = tmp_path / "idp.toml"
    config.write_text(
        render_toml(
            {
                "server": {"data_dir": tmp_path / "var"},
                "metadata": {"dir": tmp_path / "metadata"},
                "ldap": samba_dc.ldap_settings(),
            }
        )
    )
    metadata = tmp_path / "sp.xml"
    metadata.write_bytes(sp_metadata("https://groups.sp.test/saml"))
    runner = CliRunner()

    def idp(*args: str) -> Result:
        return runner.invoke(cli, ["--config", str(config), "sp", *args], terminal_width=200)

    refused = idp("add", str(metadata), "--group", "Mail Users", "--group", "No Such Group", "--group", "Nor This")
    assert refused.exit_code == 1, refused.output
    assert "AD has no group 'No Such Group'" in refused.output and "AD has no group 'Nor This'" in refused.output
    assert "No SPs are registered" in idp("list").output

    added = idp("add", str(metadata), "--group", "Mail Users")
    assert added.exit_code == 0, added.output
    assert "CN=Mail Users" in added.output

    unchecked = idp("set", "https://groups.sp.test/saml", "--group", "Not Yet Created", "--no-check-groups")
    assert unchecked.exit_code == 0, unchecked.output
    assert "allowed_groups:" in unchecked.output and "Not Yet Created" in unchecked.output
