"""`idp audit export|purge`: the audit trail as CSV or JSON lines, and deleting rows past their retention.

Both are admin actions and leave a row of their own: an export says who took a copy of which part of the
trail (the console's CSV export writes the same row), a purge says who deleted what was older than when.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import IO, get_args

import click
from sqlalchemy.exc import SQLAlchemyError

from idp.audit import AuditRecord, AuditTrail
from idp.audit_report import RESULTS, AuditFilter, AuditFilterError, csv_lines, export_rows, parse_filter
from idp.cli import settings_from
from idp.codes import AuditEvent
from idp.sps.service import cli_actor
from idp.store.db import Database

CSV_HEADER = ("id", "time_utc", "event", "result", "reason", "user", "sp", "ip", "detail", "request_id")


@click.group()
def audit() -> None:
    """The audit trail: export it, and purge rows past their retention."""


@audit.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="CSV (opens in a spreadsheet, formula-safe) or one JSON object a line.",
)
@click.option("--since", metavar="YYYY-MM-DD", help="First day, UTC, included.")
@click.option("--until", metavar="YYYY-MM-DD", help="Last day, UTC, included.")
@click.option("--event", type=click.Choice(get_args(AuditEvent)), help="Only this event.")
@click.option("--result", type=click.Choice(RESULTS), help="Only this result.")
@click.option("--user", metavar="NAME", help="Only rows about this username.")
@click.option("--sp", metavar="ENTITY_ID", help="Only rows about this SP.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write to this file (created mode 0600), not stdout."
)
@click.pass_context
def export(
    ctx: click.Context,
    fmt: str,
    since: str | None,
    until: str | None,
    event: str | None,
    result: str | None,
    user: str | None,
    sp: str | None,
    output: str | None,
) -> None:
    """Every matching row, newest first, as CSV or JSON lines."""
    args = {"from": since, "to": until, "event": event, "result": result, "user": user, "sp": sp}
    with _trail(ctx) as (db, trail):
        try:
            flt = parse_filter({name: value for name, value in args.items() if value})
        except AuditFilterError as exc:
            trail.record_change(
                "admin_activity_export", actor=cli_actor(), result="refused", reason="bad_filter", note=str(exc)
            )
            option = {"from": "--since", "to": "--until"}.get(exc.field, f"--{exc.field}")
            raise click.BadParameter(str(exc).partition(": ")[2], param_hint=option) from None
        # Recorded before the first row: who took a copy of the trail, and of which part of it.
        trail.record_change("admin_activity_export", actor=cli_actor(), after={**flt.query_args(), "format": fmt})
        with _opened(output) as out:
            for line in _lines(db, flt, fmt):
                out.write(line)


def _lines(db: Database, flt: AuditFilter, fmt: str) -> Iterator[str]:
    rows = export_rows(db, flt)
    if fmt == "csv":
        return csv_lines(rows, CSV_HEADER)
    return (json.dumps(_json(r), ensure_ascii=False) + "\n" for r in rows)


def _json(r: AuditRecord) -> dict[str, object]:
    return {
        "id": r.id,
        "at": r.at.isoformat(),
        "event": r.event,
        "result": r.result,
        "reason": r.reason,
        "user": r.username,
        "sp": r.sp_entity_id,
        "ip": r.client_ip,
        "detail": r.detail,
        "request_id": r.request_id,
    }


@contextmanager
def _opened(output: str | None) -> Iterator[IO[str]]:
    if output is None:
        yield sys.stdout
        return
    try:
        # The trail names people, addresses and what they did: readable by its owner only.
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
        yield out


@audit.command()
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=1),
    required=True,
    metavar="DAYS",
    help="Delete rows written more than DAYS days ago.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for cron or a systemd timer).")
@click.pass_context
def purge(ctx: click.Context, days: int, yes: bool) -> None:
    """Delete audit rows older than DAYS days (the purge itself is recorded)."""
    before = datetime.now(UTC) - timedelta(days=days)
    if not yes:
        click.confirm(f"Delete every audit row written before {before:%Y-%m-%d %H:%M} UTC?", abort=True)
    with _trail(ctx) as (_db, trail):
        deleted = trail.purge(before)
        trail.record_change(
            "audit_purged",
            actor=cli_actor(),
            after={"older_than_days": days, "before": before.isoformat(timespec="seconds"), "deleted": deleted},
        )
    click.echo(f"{deleted} audit row(s) written before {before:%Y-%m-%d %H:%M} UTC deleted")


@contextmanager
def _trail(ctx: click.Context) -> Iterator[tuple[Database, AuditTrail]]:
    settings = settings_from(ctx)
    try:
        db = Database(settings.database_url)
    except SQLAlchemyError as exc:
        raise click.ClickException(f"cannot open the database: {getattr(exc, 'orig', exc)}") from None
    try:
        yield db, AuditTrail(db)
    except SQLAlchemyError as exc:
        raise click.ClickException(f"database error: {getattr(exc, 'orig', exc)}") from None
    finally:
        db.dispose()
