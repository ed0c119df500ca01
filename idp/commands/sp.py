"""`idp sp add|list|remove`: register the service providers employees may sign in to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args
from urllib.parse import urlsplit, urlunsplit

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from idp.audit import AuditTrail
from idp.cli import settings_from
from idp.saml.attributes import CATALOGUE
from idp.settings import NameIdFormatName, Settings
from idp.sps.errors import SpRegistryError
from idp.sps.fetch import fetch_metadata
from idp.sps.policy import SpPolicy
from idp.sps.registry import SpEntry, SpRegistry
from idp.sps.validate import MAX_METADATA_BYTES, validate_sp_metadata
from idp.store.db import Database

SIGN_CHOICES = {"response": (True, False), "assertion": (False, True), "both": (True, True)}
"""--sign value -> (sign_response, sign_assertion)."""
SOON = timedelta(days=30)


class SourceError(SpRegistryError):
    """The FILE argument cannot be read."""

    reason = "unreadable_source"


@click.group()
def sp() -> None:
    """Register, list and remove the service providers (SPs) that may sign employees in."""


@sp.command("add")
@click.argument("source", metavar="FILE|URL")
@click.option("--replace", is_flag=True, help="Update an SP that is already registered.")
@click.option("--nameid-format", type=click.Choice(get_args(NameIdFormatName)), help="NameID issued to this SP.")
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    # Checked here, not at the first sign-in: an unknown key would fail every login to the SP.
    type=click.Choice(list(CATALOGUE)),
    help="Attribute released (repeat).",
)
@click.option(
    "--require-signed-requests/--accept-unsigned-requests",
    default=None,
    help="Refuse AuthnRequests without a valid signature.",
)
@click.option("--sign", type=click.Choice(list(SIGN_CHOICES)), help="What the IdP signs.")
@click.option("--group", "groups", multiple=True, metavar="GROUP", help="AD group allowed to use the SP (repeat).")
@click.pass_context
def add(
    ctx: click.Context,
    source: str,
    replace: bool,
    nameid_format: str | None,
    attributes: tuple[str, ...],
    require_signed_requests: bool | None,
    sign: str | None,
    groups: tuple[str, ...],
) -> None:
    """Register an SP from its metadata FILE or URL.

    Options not given keep the SP's stored policy with --replace, and take [sp_defaults] for a new SP.
    """
    settings = settings_from(ctx)
    overrides: dict[str, object] = {}
    if nameid_format:
        overrides["nameid_format"] = nameid_format
    if attributes:
        overrides["attributes"] = list(attributes)
    if require_signed_requests is not None:
        overrides["require_signed_requests"] = require_signed_requests
    if sign:
        overrides["sign_response"], overrides["sign_assertion"] = SIGN_CHOICES[sign]
    if groups:
        overrides["allowed_groups"] = list(groups)
    with _registry(settings) as (registry, audit):
        entity_id: str | None = None
        try:
            xml = _read_source(source)
            # Validated here too, only to learn the entityID whose stored policy the overrides apply to.
            entity_id = validate_sp_metadata(xml, allow_http_loopback=settings.metadata.allow_http_loopback).entity_id
            policy = None
            if overrides:
                base = registry.policy_for(entity_id) if replace else SpPolicy.from_defaults(settings.sp_defaults)
                policy = base.model_copy(update=overrides)
            entry = registry.add(xml, policy=policy, replace=replace)
        except SpRegistryError as exc:
            audit.record("sp_added", "refused", reason=exc.reason, sp=entity_id, detail=f"{_safe(source)}: {exc}")
            raise click.ClickException(str(exc)) from None
        audit.record("sp_added", "success", sp=entry.entity_id, detail=f"from {_safe(source)}, replace={replace}")
    click.echo(f"{'Updated' if replace else 'Added'} SP {entry.name!r} ({entry.entity_id})")
    click.echo(f"  metadata: {entry.path}")
    click.echo(f"  ACS: {', '.join(entry.acs_urls)}")
    click.echo(f"  NameID: {entry.policy.nameid_format}; groups: {_groups(entry.policy)}")
    for warning in entry.metadata.warnings:
        click.secho(f"Warning: {warning}", fg="yellow", err=True)


@sp.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Show every registered SP with its endpoints, certificate expiry and policy."""
    settings = settings_from(ctx)
    with _registry(settings) as (registry, _):
        try:
            entries = registry.list()
        except SpRegistryError as exc:
            raise click.ClickException(str(exc)) from None
    if not entries:
        click.echo("No SPs are registered. Add one with: idp sp add FILE|URL")
        return
    table = Table(title=f"Service providers in {settings.metadata.dir}")
    # Folded rather than cut: an admin copies the entityID from here into `idp sp remove`.
    for header in ("Entity ID", "Name", "ACS URLs", "Certificate expiry", "NameID", "Groups"):
        table.add_column(header, overflow="fold", min_width=10)
    now = datetime.now(UTC)
    for e in entries:
        # Names and URLs come from SP metadata: escaped, so that "[...]" in them is not read as markup.
        table.add_row(
            escape(e.entity_id),
            escape(e.name if e.policy.enabled else f"{e.name} (disabled)"),
            escape("\n".join(e.acs_urls)),
            _expiry(e, now),
            e.policy.nameid_format,
            escape(_groups(e.policy)),
        )
    Console(highlight=False).print(table)


@sp.command("remove")
@click.argument("entity_id")
@click.pass_context
def remove(ctx: click.Context, entity_id: str) -> None:
    """Unregister the SP with ENTITY_ID: delete its metadata file and its stored policy."""
    settings = settings_from(ctx)
    with _registry(settings) as (registry, audit):
        try:
            registry.remove(entity_id)
        except SpRegistryError as exc:
            audit.record("sp_removed", "refused", reason=exc.reason, sp=entity_id, detail=str(exc))
            raise click.ClickException(str(exc)) from None
        audit.record("sp_removed", "success", sp=entity_id)
    click.echo(f"Removed SP {entity_id}")


@contextmanager
def _registry(settings: Settings) -> Iterator[tuple[SpRegistry, AuditTrail]]:
    try:
        db = Database(settings.database_url)
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"cannot open the database: {exc.__class__.__name__}: {getattr(exc, 'orig', exc)}"
        ) from None
    try:
        registry = SpRegistry(
            settings.metadata.dir,
            db,
            settings.sp_defaults,
            allow_http_loopback=settings.metadata.allow_http_loopback,
        )
        yield registry, AuditTrail(db)
    except SQLAlchemyError as exc:
        raise click.ClickException(f"database error: {exc.__class__.__name__}: {getattr(exc, 'orig', exc)}") from None
    finally:
        db.dispose()


def _read_source(source: str) -> bytes:
    if source.startswith(("http://", "https://")):
        return fetch_metadata(source, max_bytes=MAX_METADATA_BYTES)
    path = Path(source)
    try:
        if path.stat().st_size > MAX_METADATA_BYTES:
            raise SourceError(f"{path} is larger than {MAX_METADATA_BYTES} bytes; that is not one SP's metadata")
        return path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def _safe(source: str) -> str:
    """The source as the audit trail may keep it: a URL loses user info and query, which can hold secrets."""
    if not source.startswith(("http://", "https://")):
        return source
    parts = urlsplit(source)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _groups(policy: SpPolicy) -> str:
    return ", ".join(policy.allowed_groups) or "everyone"


def _expiry(entry: SpEntry, now: datetime) -> str:
    lines = []
    if entry.cert_expiry is not None:
        lines.append(_dated(entry.cert_expiry, now))
    else:
        lines.append("no certificate")
    if entry.valid_until is not None:
        lines.append(f"metadata until {_dated(entry.valid_until, now)}")
    return "\n".join(lines)


def _dated(moment: datetime, now: datetime) -> str:
    text = f"{moment:%Y-%m-%d}"
    if moment <= now:
        return f"[red]{text} (expired)[/red]"
    if moment - now < SOON:
        return f"[yellow]{text} (soon)[/yellow]"
    return text
