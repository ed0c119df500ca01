"""The `idp` command as an admin first meets it: a version, quiet output, and a missing config explained."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from idp import __version__
from idp.cli import cli
from tests.unit.sp_fixtures import write_config


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"idp {__version__}\n"


def test_info_log_lines_only_with_verbose(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    runner = CliRunner()
    # A purge writes an audit row, and the audit trail logs each row at INFO.
    quiet = runner.invoke(cli, ["--config", str(config), "audit", "purge", "--older-than", "30", "--yes"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert quiet.stdout.startswith("0 audit row(s) written before ")

    loud = runner.invoke(cli, ["--config", str(config), "-v", "audit", "purge", "--older-than", "30", "--yes"])
    assert loud.exit_code == 0, loud.output
    [line] = [line for line in loud.stderr.splitlines() if "idp.audit" in line]
    stamp, level, rest = line.split(" ", 2)
    assert stamp.endswith("Z") and level == "INFO" and rest.startswith("idp.audit: audit_purged success")
    assert "idp.audit" not in loud.stdout  # log lines never mix with a command's output


@pytest.mark.parametrize("command", [["ldap", "test"], ["sp", "list"], ["keys", "init"]])
def test_no_config_file_says_which_file_and_how_to_make_one(tmp_path: Path, monkeypatch, command) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, command, env={"IDP_CONFIG": None})
    assert result.exit_code == 1
    assert f"looked for {tmp_path / 'idp.toml'}, which does not exist" in result.output
    assert "cp idp.example.toml idp.toml" in result.output
    assert "Field required" not in result.output


def test_a_config_file_with_a_mistake_still_names_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("[ldap]", "[ldap]\nurl = 'typo'"))
    result = CliRunner().invoke(cli, ["--config", str(config), "sp", "list"])
    assert result.exit_code == 1
    assert "ldap.url" in result.output and "unknown key" in result.output
