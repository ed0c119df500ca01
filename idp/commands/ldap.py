"""`idp ldap test [--user NAME]`: can the IdP use Active Directory with the current settings?"""

from __future__ import annotations

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from idp.cli import settings_from
from idp.directory.check import STEPS, ControllerReport, DirectoryReport, LockoutReport, UserReport, check_directory


@click.group()
def ldap() -> None:
    """Active Directory connection tools."""


@ldap.command("test")
@click.option("--user", default=None, help="Also look this person up: alice, alice@corp.example.com or CORP\\alice.")
@click.pass_context
def test(ctx: click.Context, user: str | None) -> None:
    """Check every domain controller step by step; exit 0 when AD is usable, 1 when not."""
    settings = settings_from(ctx)
    report = check_directory(settings.ldap, user, login=settings.login)
    console = Console()
    console.print(_controllers_table(report))
    _print_failures(console, report)
    if report.user is not None:
        _print_user(console, report.user)
    if report.lockout is not None:
        _print_lockout(console, report.lockout)
    if report.ok:
        console.print("[green]Active Directory is usable.[/green]")
    else:
        console.print("[red]Active Directory is NOT usable with these settings.[/red]")
    ctx.exit(0 if report.ok else 1)


def _controllers_table(report: DirectoryReport) -> Table:
    table = Table(title="Domain controllers")
    table.add_column("DC", no_wrap=True, min_width=max(len(dc.url) for dc in report.controllers))
    for name in STEPS:
        table.add_column(name)
    table.add_column("usable")
    for dc in report.controllers:
        table.add_row(dc.url, *_cells(dc), "[green]yes[/green]" if dc.ok else "[red]no[/red]")
    return table


def _cells(dc: ControllerReport) -> list[str]:
    cells = [
        f"[green]ok[/green] {step.ms:.0f} ms" if step.ok else f"[red]FAILED[/red] {step.ms:.0f} ms" for step in dc.steps
    ]
    return cells + ["[dim]not run[/dim]"] * (len(STEPS) - len(dc.steps))


def _print_failures(console: Console, report: DirectoryReport) -> None:
    # Printed in full below the table: an error such as a certificate mismatch is too long for a cell.
    for dc in report.controllers:
        for step in dc.steps:
            if not step.ok:
                console.print(f"[red]{escape(dc.url)} {step.name}:[/red] {escape(step.message)}")


def _print_user(console: Console, user: UserReport) -> None:
    name = escape(user.name)
    if user.error is not None:
        console.print(f"[red]User {name}: lookup failed:[/red] {escape(user.error)}")
    elif not user.found:
        console.print(f"[yellow]User {name}: not found[/yellow] ({user.ms:.0f} ms; user_filter applies)")
    else:
        console.print(f"User {name}: found in {user.ms:.0f} ms")
        console.print(f"  DN:     {user.dn}", markup=False)
        console.print(f"  mail:   {user.mail or '(none)'}", markup=False)
        console.print(f"  groups: {', '.join(user.groups) or '(none)'}", markup=False)


def _print_lockout(console: Console, lockout: LockoutReport) -> None:
    threshold = str(lockout.domain_threshold) if lockout.domain_threshold else "never (0)"
    console.print(
        f"Account lockout: the domain locks after {threshold} wrong passwords, forgotten after "
        f"{lockout.domain_window / 60:.0f} min; {lockout.visible_psos} fine-grained policies readable"
    )
    for warning in lockout.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
