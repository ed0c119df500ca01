"""`idp sp add|list|remove`: register the service providers employees may sign in to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from idp.audit import AuditTrail
from idp.cli import settings_from
from idp.directory.client import Directory
from idp.directory.errors import DirectoryError
from idp.directory.groups import Group, GroupNotResolved, resolve_group
from idp.person import GroupRef
from idp.settings import NameIdFormatName, Settings
from idp.sps.errors import SpRegistryError
from idp.sps.fetch import redacted
from idp.sps.policy import SpPolicy
from idp.sps.registry import SpEntry, SpRegistry
from idp.sps.service import SpService, cli_actor
from idp.sps.validate import MAX_METADATA_BYTES
from idp.sps.vocabulary import CATALOGUE
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
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="AD security group allowed to use the SP, by name, DN or SID (repeat); stored by its SID.",
)
@click.option(
    "--allow-relay-state",
    "relay_states",
    multiple=True,
    metavar="VALUE",
    help="RelayState an IdP-initiated link may ask for, besides the default (repeat).",
)
@click.option(
    "--pin-cert",
    type=click.Path(dir_okay=False),
    help="PEM certificate: accept metadata from the URL only when signed with its key.",
)
@click.option(
    "--allow-http",
    is_flag=True,
    help="For testing: accept plain http and this machine's loopback addresses for this URL (kept for refreshes).",
)
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
    relay_states: tuple[str, ...],
    pin_cert: str | None,
    allow_http: bool,
) -> None:
    """Register an SP from its metadata FILE or URL.

    Options not given keep the SP's stored policy with --replace, and take [sp_defaults] for a new SP. An SP
    added from a URL is downloaded again on a schedule (see [metadata] refresh_* and `idp sp refresh`).
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
        overrides["allowed_groups"] = [str(ref) for ref in _resolve_groups(settings, groups)]
    if relay_states:
        overrides["relay_state_allowed"] = list(relay_states)
    is_url = source.startswith(("http://", "https://"))
    if pin_cert and not is_url:
        raise click.UsageError("--pin-cert only applies to a metadata URL")
    if allow_http and not is_url:
        raise click.UsageError("--allow-http only applies to a metadata URL")
    with _service(settings) as service:
        try:
            try:
                pinned = _read_text(Path(pin_cert)) if pin_cert else None
                xml = None if is_url else _read_text(Path(source), binary=True)
            except SourceError as exc:
                service.refused("sp_added", exc, actor=cli_actor(), note=redacted(source))
                raise
            if xml is None:
                entry = service.add_from_url(
                    source,
                    actor=cli_actor(),
                    pinned_cert=pinned,
                    allow_http=allow_http,
                    policy_overrides=overrides,
                    replace=replace,
                )
            else:
                entry = service.add(xml, actor=cli_actor(), policy_overrides=overrides, replace=replace, source=source)
        except SpRegistryError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{'Updated' if replace else 'Added'} SP {entry.name!r} ({entry.entity_id})")
    click.echo(f"  metadata: {entry.path}")
    click.echo(f"  ACS: {', '.join(entry.acs_urls)}")
    click.echo(f"  NameID: {entry.policy.nameid_format}; groups: {_groups(entry.policy)}")
    if source.startswith(("http://", "https://")):
        click.echo("  refreshed from its URL on a schedule (idp sp refresh to do it now)")
    for warning in entry.metadata.warnings:
        click.secho(f"Warning: {warning}", fg="yellow", err=True)


@sp.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Show every registered SP with its endpoints, certificate expiry and policy."""
    settings = settings_from(ctx)
    with _service(settings) as service:
        try:
            entries = service.registry.list()
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
    with _service(settings) as service:
        try:
            service.remove(entity_id, actor=cli_actor())
        except SpRegistryError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"Removed SP {entity_id}")


@sp.command("refresh")
@click.argument("entity_id", required=False)
@click.option("--all", "all_", is_flag=True, help="Every SP registered from a metadata URL, due or not.")
@click.pass_context
def refresh(ctx: click.Context, entity_id: str | None, all_: bool) -> None:
    """Download the metadata of SPs registered from a URL again, now.

    Without arguments only those whose refresh is due; a failed download keeps the last good copy.
    """
    if entity_id and all_:
        raise click.UsageError("give ENTITY_ID or --all, not both")
    settings = settings_from(ctx)
    with _service(settings) as service:
        try:
            if entity_id:
                results = [service.refresh(entity_id, actor=cli_actor())]
            elif all_:
                results = service.refresh_all(actor=cli_actor())
            else:
                results = service.refresh_due(actor=cli_actor())
        except SpRegistryError as exc:
            raise click.ClickException(str(exc)) from None
    if not results:
        click.echo("Nothing to refresh.")
    for r in results:
        when = f"next refresh {r.next_refresh_at:%Y-%m-%d %H:%M} UTC"
        if r.error is None:
            click.echo(f"{r.entity_id}: {'changed, saved' if r.changed else 'unchanged'}; {when}")
        else:
            click.secho(f"{r.entity_id}: kept the last good copy: {r.error}; {when}", fg="yellow", err=True)
        if r.expired_since is not None:
            click.secho(
                f"{r.entity_id}: its metadata expired on {r.expired_since:%Y-%m-%d %H:%M} UTC; sign-in is refused",
                fg="red",
                err=True,
            )
    if any(r.error is not None for r in results):
        ctx.exit(1)


@contextmanager
def _service(settings: Settings) -> Iterator[SpService]:
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
        yield SpService(settings, db, registry, AuditTrail(db))
    except SQLAlchemyError as exc:
        raise click.ClickException(f"database error: {exc.__class__.__name__}: {getattr(exc, 'orig', exc)}") from None
    finally:
        db.dispose()


def _read_text(path: Path, *, binary: bool = False) -> Any:
    """A metadata file (bytes) or a pinned certificate (text), within the size one SP's metadata may have."""
    try:
        if path.stat().st_size > MAX_METADATA_BYTES:
            raise SourceError(f"{path} is larger than {MAX_METADATA_BYTES} bytes; that is not one SP's metadata")
        return path.read_bytes() if binary else path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def _resolve_groups(settings: Settings, names: tuple[str, ...]) -> list[GroupRef]:
    """Each --group as the one security group it means, before anything is stored."""
    try:
        known = ad_groups(settings)
    except DirectoryError as exc:
        raise click.ClickException(f"cannot check --group in Active Directory: {exc.detail or exc.reason}") from None
    try:
        return [resolve_group(name, known) for name in names]
    except GroupNotResolved as exc:
        raise click.ClickException(f"--group: {exc}") from None


def ad_groups(settings: Settings) -> list[Group]:
    with Directory(settings.ldap) as directory:
        return directory.groups()


def _groups(policy: SpPolicy) -> str:
    return ", ".join(GroupRef.parse(g).label for g in policy.allowed_groups) or "everyone"


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
