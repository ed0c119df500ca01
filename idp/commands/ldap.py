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
@click.option(
    "--allow-cleartext", is_flag=True, help="Pass a DC reached by ldap:// without StartTLS (a test lab only)."
)
@click.pass_context
def test(ctx: click.Context, user: str | None, allow_cleartext: bool) -> None:
    """Check every domain controller step by step; exit 0 when AD is usable, 1 when not.

    Passwords must travel encrypted (LDAPS, or ldap:// with start_tls = true): a DC reached in clear text
    fails the tls step unless --allow-cleartext."""
    settings = settings_from(ctx)
    report = check_directory(settings.ldap, user, login=settings.login, allow_cleartext=allow_cleartext)
    show_report(Console(highlight=False), report)
    ctx.exit(0 if report.ok else 1)


def show_report(console: Console, report: DirectoryReport) -> None:
    """The table of DCs and steps, every failure in words, the user and lockout findings, and the verdict."""
    console.print(_controllers_table(report))
    _print_steps(console, report)
    if report.user is not None:
        _print_user(console, report.user)
    if report.lockout is not None:
        _print_lockout(console, report.lockout)
    if report.ok:
        console.print("[green]Active Directory is usable.[/green]")
    else:
        console.print("[red]Active Directory is NOT usable with these settings.[/red]")


def _controllers_table(report: DirectoryReport) -> Table:
    table = Table(title="Domain controllers")
    # Folded, never cut: the URL is what the admin compares with ldap.urls.
    table.add_column("DC", overflow="fold", ratio=1)
    for name in STEPS:
        table.add_column(name, no_wrap=True)
    table.add_column("usable", no_wrap=True)
    for dc in report.controllers:
        table.add_row(escape(dc.url), *_cells(dc), "[green]yes[/green]" if dc.ok else "[red]no[/red]")
    return table


def _cells(dc: ControllerReport) -> list[str]:
    cells = []
    for step in dc.steps:
        # The tls cell names the mode used: what an admin needs to see at a glance is "clear text".
        word = dc.tls_mode if step.name == "tls" else "ok"
        cells.append(f"[green]{word}[/green] {step.ms:.0f} ms" if step.ok else f"[red]FAILED[/red] {step.ms:.0f} ms")
    return cells + ["[dim]not run[/dim]"] * (len(STEPS) - len(dc.steps))


def _print_steps(console: Console, report: DirectoryReport) -> None:
    """Below the table, in full (a sentence is too long for a cell): how each DC was reached, and every
    failure with what to change."""
    for dc in report.controllers:
        for step in dc.steps:
            if not step.ok:
                console.print(f"[red]{escape(dc.url)} {step.name}:[/red] {escape(step.message)}")
            elif step.name == "tls":
                colour = "yellow" if "NOT" in step.message or dc.tls_mode == "clear text" else "green"
                console.print(f"[{colour}]{escape(dc.url)} tls:[/{colour}] {escape(step.message)}")


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
