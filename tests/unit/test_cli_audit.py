"""`idp audit export|purge` on a real database: the console's Activity export and retention, from the shell."""

from __future__ import annotations

import csv
import io
import json
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import update

from idp.audit import AuditRecord, AuditTrail
from idp.cli import cli
from idp.settings import load_settings
from idp.store.db import Database
from idp.store.models import AuditEvent
from tests.unit.sp_fixtures import write_config

NOW = datetime.now(UTC)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    config = write_config(tmp_path)
    db = Database(load_settings(config).database_url)
    trail = AuditTrail(db)
    try:
        # Three sign-ins: 400 days, 40 days and 1 day old; one admin action today.
        for username, days in (("old", 400), ("middle", 40), ("recent", 1)):
            trail.record("signin", "success", reason="password", username=username, sp="https://sp.test", ip="10.0.0.1")
            with db.engine.begin() as conn:
                conn.execute(
                    update(AuditEvent).where(AuditEvent.username == username).values(at=NOW - timedelta(days=days))
                )
        trail.record("signin", "failure", reason="invalid_credentials", username="=cmd|' /C calc'!A0", ip="10.0.0.2")
    finally:
        db.dispose()
    return config


@pytest.fixture
def idp(config: Path) -> Callable[..., Result]:
    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), "audit", *args], input=input)

    return run


def rows(config: Path, event: str | None = None) -> list[AuditRecord]:
    db = Database(load_settings(config).database_url)
    try:
        return AuditTrail(db).recent(1000, event=event)  # type: ignore[arg-type]
    finally:
        db.dispose()


def test_export_jsonl_with_filters(idp, config: Path) -> None:
    since = (NOW - timedelta(days=41)).date().isoformat()
    result = idp("export", "--format", "jsonl", "--event", "signin", "--result", "success", "--since", since)
    assert result.exit_code == 0, result.output
    exported = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["user"] for r in exported] == ["recent", "middle"]  # newest first; "old" is before --since
    assert exported[0]["sp"] == "https://sp.test" and exported[0]["reason"] == "password"
    assert datetime.fromisoformat(exported[0]["at"]).tzinfo is not None
    [recorded] = rows(config, "admin_activity_export")
    assert recorded.username.startswith("cli:")
    assert json.loads(recorded.detail or "")["after"] == {
        "event": "signin", "result": "success", "from": since, "format": "jsonl"
    }  # fmt: skip


def test_export_csv_to_a_private_file_is_formula_safe(idp, tmp_path: Path) -> None:
    until = (NOW - timedelta(days=2)).date().isoformat()
    target = tmp_path / "trail.csv"
    result = idp("export", "--until", until, "-o", str(target))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    table = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8-sig"))))
    assert table[0] == ["id", "time_utc", "event", "result", "reason", "user", "sp", "ip", "detail", "request_id"]
    assert [r[5] for r in table[1:]] == ["middle", "old"]
    everything = list(csv.reader(io.StringIO(idp("export").stdout.lstrip("\ufeff"))))
    assert "'=cmd|' /C calc'!A0" in [r[5] for r in everything]


def test_a_bad_date_is_refused_and_audited(idp, config: Path) -> None:
    result = idp("export", "--since", "2026-02-30")
    assert result.exit_code == 2
    assert "--since" in result.output and "is not a date" in result.output
    [refused] = rows(config, "admin_activity_export")
    assert (refused.result, refused.reason) == ("refused", "bad_filter")


def test_purge_deletes_only_older_rows_and_is_audited(idp, config: Path) -> None:
    asked = idp("purge", "--older-than", "30", input="n\n")
    assert asked.exit_code == 1 and "Aborted" in asked.output
    assert len(rows(config, "signin")) == 4

    result = idp("purge", "--older-than", "30", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("2 audit row(s) written before")
    assert sorted(r.username or "" for r in rows(config, "signin")) == ["=cmd|' /C calc'!A0", "recent"]
    [purged] = rows(config, "audit_purged")
    assert json.loads(purged.detail or "")["after"]["deleted"] == 2
    assert json.loads(purged.detail or "")["after"]["older_than_days"] == 30


def test_purge_goes_in_batches(config: Path) -> None:
    db = Database(load_settings(config).database_url)
    try:
        assert AuditTrail(db).purge(NOW - timedelta(days=30), batch=1) == 2
        assert AuditTrail(db).purge(NOW - timedelta(days=30), batch=1) == 0
    finally:
        db.dispose()


def test_purge_needs_a_positive_age(idp) -> None:
    result = idp("purge", "--older-than", "0", "--yes")
    assert result.exit_code == 2 and "--older-than" in result.output
