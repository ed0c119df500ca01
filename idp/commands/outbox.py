"""`idp outbox run|list|retry`: the worker that finishes provisioning sign-ins could not, and its queue."""

from __future__ import annotations

import contextlib
import json
import logging
import time

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from idp.audit import AuditTrail
from idp.cli import settings_from
from idp.provisioning.outbox import Outbox, OutboxItem, OutboxWorker
from idp.provisioning.provider import Provider
from idp.provisioning.records import ProvisioningRecords
from idp.settings import ProvisioningSettings, Settings
from idp.store.db import Database

log = logging.getLogger(__name__)


def _provisioning(settings: Settings) -> ProvisioningSettings:
    if settings.provisioning is None:
        raise click.ClickException(
            'no [provisioning] section in the configuration: set provider = "alimail" or "scim" and its table'
        )
    return settings.provisioning


def make_worker(settings: ProvisioningSettings, db: Database) -> OutboxWorker:
    """A worker on the configured provider (with its normal, not sign-in, timeouts); the caller close()s it."""

    def provider() -> Provider:
        from idp.provisioning.factory import make_provider  # httpx / scim2 only when a row needs them

        return make_provider(settings)

    outbox = Outbox(db, lease_seconds=settings.outbox_lease_seconds, max_backoff=settings.outbox_max_backoff)
    return OutboxWorker(outbox, ProvisioningRecords(db), AuditTrail(db), provider)


@click.group()
def outbox() -> None:
    """The durable outbox of provisioning that sign-ins could not finish."""


@outbox.command()
@click.option("--once", is_flag=True, help="Work the rows due now, then exit (for cron or a systemd timer).")
@click.option(
    "--interval",
    type=click.FloatRange(0.5, 3600),
    default=10.0,
    show_default=True,
    help="Seconds between looks at the outbox when running continuously.",
)
@click.pass_context
def run(ctx: click.Context, once: bool, interval: float) -> None:
    """Retry queued provisioning (backing off per row) until each succeeds. Several workers may run: each
    row is leased to one of them."""
    settings = settings_from(ctx)
    db = Database(settings.database_url)
    worker = make_worker(_provisioning(settings), db)
    try:
        while True:
            report = worker.run_once()
            if report.handled or once:
                click.echo(report.summary())
            if once:
                ctx.exit(1 if report.retried or report.failed else 0)
            time.sleep(interval)
    finally:
        with contextlib.suppress(Exception):
            worker.close()
        db.dispose()


@outbox.command("list")
@click.option("--failed", is_flag=True, help="Only rows that failed at least once (and those given up).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_rows(ctx: click.Context, failed: bool, as_json: bool) -> None:
    """Rows still to do (pending, or failed for good and waiting for `idp outbox retry`)."""
    settings = settings_from(ctx)
    db = Database(settings.database_url)
    try:
        items = Outbox(db).items(failed_only=failed)
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps([_json(i) for i in items], ensure_ascii=False, indent=2))
        return
    console = Console()
    if not items:
        console.print("The outbox is empty." if not failed else "No failed rows in the outbox.")
        return
    # Five columns that fit 80: addresses and errors fold (an address is copied from here), never cut.
    table = Table(title="Provisioning outbox (times UTC)", show_lines=True)
    table.add_column("id", no_wrap=True)
    table.add_column("username / email", overflow="fold", ratio=2)
    table.add_column("state (tries)", no_wrap=True)
    table.add_column("next try", no_wrap=True)
    table.add_column("last error", overflow="fold", ratio=3)
    for i in items:
        table.add_row(
            str(i.id),
            f"{escape(i.username)}\n{escape(i.spec.email)}",
            f"{i.state} ({i.attempts})",
            f"{i.next_attempt_at:%m-%d %H:%M}",
            escape(i.last_error or ""),
        )
    console.print(table)


@outbox.command()
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every row not done.")
@click.pass_context
def retry(ctx: click.Context, ids: tuple[int, ...], everything: bool) -> None:
    """Make rows due now again (by id, or --all), e.g. after fixing what the provider rejected."""
    if not ids and not everything:
        raise click.UsageError("name the row ids (see `idp outbox list`) or pass --all")
    settings = settings_from(ctx)
    db = Database(settings.database_url)
    try:
        count = Outbox(db).requeue(None if everything else ids)
    finally:
        db.dispose()
    click.echo(f"{count} row(s) due now; `idp outbox run --once` works them")


def _json(item: OutboxItem) -> dict:
    return {
        "id": item.id,
        "username": item.username,
        "email": item.spec.email,
        "state": item.state,
        "attempts": item.attempts,
        "next_attempt_at": item.next_attempt_at.isoformat(),
        "last_error": item.last_error,
    }
