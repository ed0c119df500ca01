"""`idp mfa reset USER`: remove a person's second factors (a lost phone), audited."""

from __future__ import annotations

import click

from idp.audit import AuditTrail
from idp.cli import settings_from
from idp.mfa.factors import Factors
from idp.mfa.reset import reset_factors
from idp.mfa.sealing import Sealer
from idp.sps.service import cli_actor
from idp.store.db import Database


@click.group()
def mfa() -> None:
    """Second factors (authenticator apps, recovery codes)."""


@mfa.command()
@click.argument("user")
@click.pass_context
def reset(ctx: click.Context, user: str) -> None:
    """Remove every second factor, recovery code and remembered browser of USER (sAMAccountName); they enrol
    again at their next sign-in that needs one."""
    settings = settings_from(ctx)
    db = Database(settings.database_url)
    try:
        removed = reset_factors(Factors(db, Sealer(settings.mfa.key_file)), AuditTrail(db), user, actor=cli_actor())
    finally:
        db.dispose()
    if not removed:
        raise click.ClickException(f"{user} has no second factor")
    click.echo(f"{removed} second factor(s) of {user} removed")
