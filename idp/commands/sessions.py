"""`idp sessions list|revoke`: the live SSO sessions of every node, and ending a person's at once."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from idp.audit import AuditTrail
from idp.cli import settings_from
from idp.signin.sessions import LiveSession, SsoSessionIndex
from idp.sps.service import cli_actor
from idp.store.db import Database


@click.group()
def sessions() -> None:
    """Single sign-on sessions: who is signed in, and revoking them."""


@sessions.command("list")
@click.option("--user", default=None, help="Only this person's sessions (sAMAccountName).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_sessions(ctx: click.Context, user: str | None, as_json: bool) -> None:
    """Sessions not expired and not revoked, newest first."""
    db = Database(settings_from(ctx).database_url)
    try:
        live = SsoSessionIndex(db, AuditTrail(db)).live(user)
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps([_json(s) for s in live], ensure_ascii=False, indent=2))
        return
    # emoji=False: an IPv6 address such as 2001:db8::1234:5678 holds ":1234:", which rich would draw as one.
    console = Console(emoji=False, highlight=False)
    if not live:
        console.print("Nobody is signed in." if user is None else f"{escape(user)} has no live session.")
        return
    table = Table(title="Live SSO sessions (UTC)")
    table.add_column("user", overflow="fold")
    for column in ("signed in", "AD checked", "expires"):
        table.add_column(column, no_wrap=True)
    table.add_column("address", overflow="fold")
    table.add_column("SPs", overflow="fold", ratio=1)
    for s in live:
        table.add_row(
            escape(s.username),
            f"{s.started_at:%m-%d %H:%M}",
            f"{s.checked_at:%H:%M:%S}",
            f"{s.expires_at:%m-%d %H:%M}",
            escape(s.client_ip or ""),
            escape("\n".join(s.sps)),
        )
    console.print(table)


@sessions.command()
@click.argument("user")
@click.pass_context
def revoke(ctx: click.Context, user: str) -> None:
    """End every live session of USER at its next use, on every node; they must type their password again."""
    db = Database(settings_from(ctx).database_url)
    try:
        count = SsoSessionIndex(db, AuditTrail(db)).revoke(user, actor=cli_actor())
    finally:
        db.dispose()
    click.echo(f"{count} session(s) of {user} revoked" if count else f"{user} has no live session")


def _json(s: LiveSession) -> dict:
    return {
        "session_index": s.session_index,
        "user": s.username,
        "started_at": s.started_at.isoformat(),
        "checked_at": s.checked_at.isoformat(),
        "expires_at": s.expires_at.isoformat(),
        "client_ip": s.client_ip,
        "sps": list(s.sps),
    }
