"""`idp sync`: make every mailbox in scope match Active Directory, once or on a schedule.

Exit codes: 0 everything applied, 1 some actions failed (or the run could not start), 2 the safety brake
refused the plan, 3 another runner holds the lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from idp.audit import AuditTrail
from idp.cli import settings_from
from idp.directory.errors import DirectoryError
from idp.directory.listing import DirectoryListing
from idp.provisioning.factory import ProvisioningNotConfigured, make_provider
from idp.provisioning.group_sync import GroupAction
from idp.provisioning.outbox import drain as drain_outbox
from idp.provisioning.provider import ProviderError
from idp.provisioning.records import ProvisioningRecords
from idp.provisioning.runs import RecordedRun
from idp.provisioning.sync import EXIT_FAILURES, Action, MailboxSync, Outcome, Plan, SyncReport
from idp.settings import Settings
from idp.store.db import Database
from idp.store.lease import Lease, LeaseHeld

log = logging.getLogger(__name__)

EXIT_LOCKED = 3
_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    """ "15m" -> 900.0; plain numbers are seconds."""
    match = _INTERVAL.match(text)
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(f"{text!r} is not an interval such as 30s, 15m, 1h or 1d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@click.command()
@click.option("--dry-run", is_flag=True, help="Show the plan; change nothing.")
@click.option("--incremental", is_flag=True, help="Only people changed in AD since the last complete sync.")
@click.option("--force", is_flag=True, help="Apply even when the plan freezes more than the brake allows.")
@click.option("--every", default=None, metavar="INTERVAL", help="Repeat every INTERVAL (30s, 15m, 1h).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan or the result as JSON.")
@click.option("--list-failed", is_flag=True, help="List people whose last provisioning action failed, and exit.")
@click.option("--retry-failed", is_flag=True, help="Retry only the people whose last action failed.")
@click.option("--show-skipped", is_flag=True, help="Also list the accounts given no mailbox, and why.")
@click.pass_context
def sync(
    ctx: click.Context,
    dry_run: bool,
    incremental: bool,
    force: bool,
    every: str | None,
    as_json: bool,
    list_failed: bool,
    retry_failed: bool,
    show_skipped: bool,
) -> None:
    """Create, update, freeze and unfreeze mailboxes so that they match Active Directory."""
    settings = settings_from(ctx)
    interval = parse_interval(every) if every else None
    console = Console()
    db = Database(settings.database_url)
    try:
        if list_failed:
            ctx.exit(_list_failed(ProvisioningRecords(db), console, as_json))
        while True:
            code = _run_once(settings, db, console, dry_run, incremental, force, as_json, retry_failed, show_skipped)
            if interval is None:
                ctx.exit(code)
            log.info("sync finished with exit code %d; next run in %.0f s", code, interval)
            time.sleep(interval)
    finally:
        db.dispose()


def _run_once(
    settings: Settings,
    db: Database,
    console: Console,
    dry_run: bool,
    incremental: bool,
    force: bool,
    as_json: bool,
    retry_failed: bool,
    show_skipped: bool,
) -> int:
    try:
        provider = make_provider(settings.provisioning)
    except ProvisioningNotConfigured as exc:
        raise click.ClickException(str(exc)) from None
    assert settings.provisioning is not None  # make_provider refused otherwise
    try:
        with DirectoryListing(settings.ldap) as listing, contextlib.closing(provider):
            runner = MailboxSync(settings.provisioning, listing, provider, db, AuditTrail(db))
            if dry_run:
                plan = runner.plan(incremental=incremental, only_failed=retry_failed)
                _show_plan(console, plan, runner.brake_refusal(plan), as_json, show_skipped)
                return 0
            lease = Lease(db, ttl_seconds=settings.provisioning.lease_seconds)
            # RecordedRun: this run in the console's run history (idp.provisioning.runs), from start to end.
            with lease.held(), RecordedRun.of_command(db, lease) as recorded:
                # Sign-ins' queued work first: the plan then sees those mailboxes as they now are.
                drained = drain_outbox(settings.provisioning, db, provider)
                if drained.handled:
                    log.info("%s", drained.summary())
                plan = runner.plan(incremental=incremental, only_failed=retry_failed)
                report = _apply_with_progress(runner, plan, force, console, as_json)
                recorded.finished(report)
            _show_report(console, report, as_json, show_skipped)
            return report.exit_code
    except LeaseHeld as exc:
        _say(console, as_json, {"skipped": str(exc)}, f"[yellow]Not run:[/yellow] {escape(str(exc))}")
        return EXIT_LOCKED
    except (DirectoryError, ProviderError) as exc:
        # Nothing was applied: the run could not read AD or the provider's mailboxes.
        what = "Active Directory" if isinstance(exc, DirectoryError) else "the mail provider"
        _say(console, as_json, {"error": str(exc)}, f"[red]Sync could not read {what}:[/red] {escape(str(exc))}")
        return EXIT_FAILURES


def _apply_with_progress(runner: MailboxSync, plan: Plan, force: bool, console: Console, as_json: bool) -> SyncReport:
    writes = len(plan.all_writes)
    if not console.is_terminal or as_json or not writes:
        return runner.apply(plan, force=force)
    columns = (TextColumn("provisioning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sync", total=writes)

        def done(_outcome: Outcome) -> None:
            progress.advance(task)

        return runner.apply(plan, force=force, on_done=done)


def _say(console: Console, as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        console.print(text)


def _show_plan(console: Console, plan: Plan, brake: str | None, as_json: bool, show_skipped: bool) -> None:
    if as_json:
        click.echo(json.dumps({**plan.to_json(), "brake": brake}, ensure_ascii=False, indent=2))
        return
    if brake is not None:
        # First, before a long table scrolls it away: applying this plan would be refused.
        console.print(f"[red]This plan would trip the safety brake:[/red] {escape(brake)}")
    _show_notes(console, plan)
    if plan.all_writes:
        console.print(_actions_table("Sync plan (dry run: nothing was changed)", plan.all_writes))
    _show_left_alone(console, plan, show_skipped)
    console.print(_counts_line(plan.counts()), markup=False)
    console.print(
        f"would freeze {plan.freezes} of {plan.active_mailboxes} active mailboxes ({plan.freeze_share:.0%})",
        markup=False,
    )


def _actions_table(title: str, actions: list[Action | GroupAction]) -> Table:
    rows: list[tuple[Action | GroupAction, str]] = []
    for action in actions:
        changes = ", ".join(f"{k}={_text(v)}" for k, v in action.changes.items())
        rows.append((action, f"{action.reason}: {changes}" if changes else action.reason))
    return _address_table(title, "reason / changes", rows)


def _address_table(title: str, last_column: str, rows: list[tuple[Action | GroupAction, str]]) -> Table:
    """One entry per action: the address on a line of its own, never cut at any terminal width (it is what
    an admin looks for and copies), then who and why on the lines below it."""
    table = Table(title=title, show_lines=True)
    table.add_column("action", no_wrap=True)
    table.add_column(f"email / username: {last_column}", overflow="fold", ratio=1)
    for action, text in rows:
        table.add_row(action.kind, f"{escape(action.email)}\n[dim]{escape(action.username)}:[/dim] {escape(text)}")
    return table


def _show_notes(console: Console, plan: Plan) -> None:
    for note in plan.notes:
        console.print(f"[yellow]Note:[/yellow] {escape(note)}")


def _show_left_alone(console: Console, plan: Plan, show_skipped: bool) -> None:
    """Who gets no mailbox: always those AD gives no address (an admin must act), on request the accounts
    the default scope skips (built-in, service, inactive)."""
    if plan.cannot_provision:
        table = Table(title="Cannot provision (AD gives no mail address)")
        table.add_column("username", no_wrap=True)
        table.add_column("why", overflow="fold", ratio=1)
        for action in plan.cannot_provision:
            table.add_row(escape(action.username), escape(action.reason))
        console.print(table)
    if show_skipped and plan.skipped:
        table = Table(title="Skipped (no mailbox by the default scope)")
        table.add_column("username", no_wrap=True)
        table.add_column("why", overflow="fold", ratio=1)
        for skipped in sorted(plan.skipped, key=lambda s: s.username.casefold()):
            table.add_row(escape(skipped.username), escape(skipped.reason))
        console.print(table)


def _show_report(console: Console, report: SyncReport, as_json: bool, show_skipped: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
        return
    if report.refused:
        console.print(f"[red]Refused by the safety brake:[/red] {escape(report.refused)}")
        return
    _show_notes(console, report.plan)
    if report.failed:
        console.print(_address_table("Failed", "error", [(o.action, o.error or "") for o in report.failed]))
    _show_left_alone(console, report.plan, show_skipped)
    counts = report.plan.counts()
    console.print(f"{_counts_line(counts)}; applied {report.applied}, failed {len(report.failed)}", markup=False)


def _counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return "/".join(value)
    return "(none)" if value is None else str(value)


def _list_failed(records: ProvisioningRecords, console: Console, as_json: bool) -> int:
    failed = records.failed()
    if as_json:
        rows = [
            {
                "username": r.username,
                "email": r.email,
                "action": r.failed_action,
                "error": r.last_error,
                "at": r.updated_at.isoformat(),
            }
            for r in failed
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not failed:
        console.print("No failed provisioning actions.")
        return 0
    table = Table(title="Failed provisioning actions (retry with: idp sync --retry-failed)")
    for column in ("username", "email", "action", "error", "at"):
        table.add_column(column)
    for r in failed:
        table.add_row(
            escape(r.username),
            escape(r.email),
            r.failed_action or "",
            escape(r.last_error or ""),
            f"{r.updated_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)
    return 0
