"""`idp init` as a new admin runs it, against the suite's Samba DC: the answers asked for, the DCs checked before
anything is written, the files written with safe modes, the password never in the configuration, and a
configuration the other commands load and use."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from idp.cli import cli
from idp.demo.samba_dc import SambaDC

pytestmark = pytest.mark.ad


def _init(tmp_path: Path, samba_dc: SambaDC, *args: str, answers: str) -> Result:
    ldap = samba_dc.ldap_settings()
    result = CliRunner().invoke(
        cli,
        [
            "init",
            "--config-file",
            str(tmp_path / "etc" / "idp.toml"),
            "--data-dir",
            str(tmp_path / "data"),
            "--ca-file",
            str(ldap["ca_file"]),
            *[f"--tls-valid-name={name}" for name in ldap["tls_valid_names"]],  # type: ignore[attr-defined]
            *args,
        ],
        input=answers,
        env={"COLUMNS": "250"},
    )
    assert "Traceback" not in result.output
    return result


def test_answers_are_checked_against_ad_then_written_with_safe_modes(tmp_path: Path, samba_dc: SambaDC) -> None:
    ldap = samba_dc.ldap_settings()
    answers = "\n".join(
        ["https://sso.corp.example.com", samba_dc.ldaps_url, str(ldap["base_dn"]), str(ldap["bind_dn"])]
    )
    result = _init(tmp_path, samba_dc, answers=f"{answers}\n{ldap['bind_password']}\n")
    assert result.exit_code == 0, result.output
    assert "Active Directory is usable" in result.output
    config = tmp_path / "etc" / "idp.toml"
    password = tmp_path / "etc" / "ldap-password"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(password.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "etc").stat().st_mode) == 0o750
    assert str(ldap["bind_password"]) not in config.read_text()
    assert str(ldap["bind_password"]) not in result.output  # the prompt does not echo it
    assert password.read_text().strip() == ldap["bind_password"]

    env = {"IDP_CONFIG": str(config), "COLUMNS": "250"}
    keys = CliRunner().invoke(cli, ["keys", "init"], env=env)
    assert keys.exit_code == 0, keys.output
    check = CliRunner().invoke(cli, ["ldap", "test", "--user", "alice"], env=env)
    assert check.exit_code == 0, check.output
    again = _init(tmp_path, samba_dc, answers=f"{answers}\n")
    assert again.exit_code != 0 and "exists" in again.output


def test_a_wrong_password_writes_nothing(tmp_path: Path, samba_dc: SambaDC) -> None:
    ldap = samba_dc.ldap_settings()
    result = _init(
        tmp_path,
        samba_dc,
        "--base-url=https://sso.corp.example.com",
        f"--ldap-url={samba_dc.ldaps_url}",
        f"--base-dn={ldap['base_dn']}",
        f"--bind-dn={ldap['bind_dn']}",
        answers="Not-The-Passw0rd\n",
    )
    assert result.exit_code == 1, result.output
    assert "wrong password" in result.output and "nothing was written" in result.output
    assert not (tmp_path / "etc").exists() or not any((tmp_path / "etc").iterdir())
