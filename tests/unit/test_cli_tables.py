"""The list commands' tables in an 80-column terminal: nothing cut that an admin copies, nothing too wide."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from idp.audit import AuditTrail
from idp.cli import cli
from idp.commands.columns import shorten_middle
from idp.provisioning.outbox import Outbox
from idp.provisioning.provider import MailboxSpec
from idp.settings import load_settings
from idp.signin.sessions import LiveSession, SsoSessionIndex
from idp.store.db import Database
from tests.unit.sp_fixtures import write_config

LONG_SP = "https://login.a-very-long-saas-vendor-name.example.com/tenants/8f14e45fceea167a5a36dedd4bea2543/saml2"
EMAIL = "maximilian.van-der-berghe-lindqvist@subsidiary-europe.example.com"


def test_outbox_list_fits_80_columns(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = Database(load_settings(config).database_url)
    try:
        error = "the provider answered 400: detailErrorCode=InvalidParameter.Department the department path is too deep"
        Outbox(db).enqueue("guid-max", "max.vdb", MailboxSpec(email=EMAIL, display_name="Max"), error)
    finally:
        db.dispose()
    result = CliRunner().invoke(cli, ["--config", str(config), "outbox", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80
    folded = "".join(line.split("│")[2].strip() for line in lines if line.startswith("│"))
    assert EMAIL in folded


def test_shorten_middle_keeps_both_ends() -> None:
    assert shorten_middle("https://short.test/acs", 40) == "https://short.test/acs"
    assert shorten_middle("https://sp.example.test/saml/acs", 30) == "sp.example.test/saml/acs"
    cut = shorten_middle("https://login.vendor.example.com/tenants/0123456789abcdef/acs/post", 24)
    assert len(cut) == 24 and cut.startswith("login.vend") and cut.endswith("acs/post") and "…" in cut
    assert shorten_middle("http://plain.example.test/a/very/long/path/acs", 20).startswith("http://")


def test_sessions_list_fits_80_columns(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = Database(load_settings(config).database_url)
    now = datetime.now(UTC)
    sps = (LONG_SP, "https://webmail.example.test/saml/metadata")
    try:
        live = LiveSession("s1", "maximilian.vdb", now, now, now + timedelta(hours=8), "2001:db8::1234:5678", sps)
        db.write(SsoSessionIndex(db, AuditTrail(db)).starting(live))
    finally:
        db.dispose()
    result = CliRunner().invoke(cli, ["--config", str(config), "sessions", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80
    folded = "".join(line.split("│")[6].strip() for line in lines if line.startswith("│"))
    assert LONG_SP in folded
