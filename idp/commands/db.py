"""`idp db upgrade|status|backup`: the database's schema revision, moving it forward, and an online backup."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import click
from sqlalchemy import make_url

from idp.cli import settings_from
from idp.store import schema
from idp.store.db import Database


@click.group()
def db() -> None:
    """The product database: schema migrations and backups."""


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Bring the schema to this version's newest revision (every `idp` command and `idp serve` also do it)."""
    db = Database(settings_from(ctx).database_url, migrate=False)
    try:
        before, after = schema.upgrade(db.engine)
    except schema.SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.dispose()
    if before == after:
        click.echo(f"schema already at revision {after}")
    else:
        click.echo(f"schema upgraded from revision {before or 'none (empty database)'} to {after}")


@db.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """The schema revision the database is at, and this version's newest; exit 1 when they differ."""
    db = Database(settings_from(ctx).database_url, migrate=False)
    try:
        at = schema.current(db.engine)
    finally:
        db.dispose()
    click.echo(f"database: {at or 'no revision recorded'}\nthis version: {schema.head()}")
    if at != schema.head():
        ctx.exit(1)


@db.command()
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def backup(ctx: click.Context, target: Path) -> None:
    """Copy a SQLite database to TARGET while the IdP runs (SQLite's online backup: a consistent copy even
    while sign-ins write). Restore by stopping the IdP and putting the copy in the database's place. For
    PostgreSQL, use pg_dump, as for any PostgreSQL database."""
    url = make_url(settings_from(ctx).database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise click.ClickException(
            f"`idp db backup` copies SQLite databases; for PostgreSQL run: pg_dump --format=custom "
            f"--file {target} --host {url.host or 'localhost'} --username {url.username or '<user>'} {url.database}"
        )
    if target.exists():
        raise click.ClickException(f"{target} exists; give a new file name")
    # The copy holds the audit trail and every policy: readable by its owner only, like the database.
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    source = sqlite3.connect(f"file:{url.database}?mode=ro", uri=True)
    copy = sqlite3.connect(target)
    try:
        with copy:
            source.backup(copy)
    finally:
        copy.close()
        source.close()
    click.echo(f"backed up {url.database} to {target}")
