"""`idp sp add|list|remove`: register the service providers employees may sign in to."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
from idp.commands.columns import column_widths, shorten_middle
from idp.connectors.direct_app import ENTITY_ID as DIRECT_APP
from idp.directory import groups as directory_groups
from idp.directory.client import Directory
from idp.directory.errors import DirectoryError
from idp.directory.groups import Group, GroupsNotResolved
from idp.person import GroupRef
from idp.settings import AlimailDirectSettings, NameIdFormatName, Settings
from idp.sps.errors import SpRegistryError, UnknownSpError
from idp.sps.fetch import redacted
from idp.sps.origins import file_name_of
from idp.sps.policy import SpPolicy
from idp.sps.registry import SpEntry, SpRegistry
from idp.sps.service import SpService, cli_actor
from idp.sps.validate import MAX_METADATA_BYTES
from idp.sps.vocabulary import CATALOGUE
from idp.store.db import Database

SIGN_CHOICES = {"response": (True, False), "assertion": (False, True), "both": (True, True)}
"""--sign value -> (sign_response, sign_assertion)."""
SOON = timedelta(days=30)
EXPIRY_WIDTH = 15
"""Room for "cert 2027-01-31" on one line, "metadata until" and its date on two more."""


class SourceError(SpRegistryError):
    """The FILE argument cannot be read."""

    reason = "unreadable_source"


@click.group()
def sp() -> None:
    """Register, list, change and remove the service providers (SPs) that may sign employees in."""


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
    "--no-check-groups",
    is_flag=True,
    help="Store --group as given, without looking it up in AD (when AD is unreachable on purpose).",
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
    no_check_groups: bool,
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
        overrides["allowed_groups"] = resolve_groups(settings, groups, check=not no_check_groups)
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
                entry = service.add(
                    xml,
                    actor=cli_actor(),
                    policy_overrides=overrides,
                    replace=replace,
                    source=source,
                    origin="file",
                    file_name=file_name_of(source),
                )
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
        _echo_direct_app(settings.alimail_direct)
        return
    console = Console(highlight=False)
    # Four columns and their borders (13 characters); the widths leave the entityID the most room.
    acs_width, policy_width = column_widths(console.width - 13 - EXPIRY_WIDTH, (4, 3, 2), (16, 12))
    table = Table(title=f"Service providers in {settings.metadata.dir}", show_lines=True)
    # The entityID is folded, never cut: an admin copies it from here into `idp sp set` or `idp sp remove`.
    table.add_column("Name / entity ID", overflow="fold", ratio=1)
    table.add_column("ACS URLs", width=acs_width, overflow="fold")
    table.add_column("Expiry", width=EXPIRY_WIDTH)
    table.add_column("NameID / groups", width=policy_width, overflow="fold")
    now = datetime.now(UTC)
    for e in entries:
        # Names and URLs come from SP metadata: escaped, so that "[...]" in them is not read as markup.
        name = "" if e.name == e.entity_id else e.name
        if not e.policy.enabled:
            name = f"{name} (disabled)".strip()
        table.add_row(
            f"[bold]{escape(name)}[/bold]\n{escape(e.entity_id)}" if name else escape(e.entity_id),
            escape("\n".join(shorten_middle(url, acs_width) for url in e.acs_urls)),
            _expiry(e, now),
            f"{e.policy.nameid_format}\n{escape(_groups(e.policy))}",
        )
    console.print(table)
    _echo_direct_app(settings.alimail_direct)


def _echo_direct_app(direct: AlimailDirectSettings | None) -> None:
    """Alibaba Mail (direct) is an application beside the SPs, configured in the file rather than registered."""
    if direct is None:
        return
    groups = ", ".join(direct.allowed_groups) or "everyone"
    click.echo(
        f"\nAlibaba Mail (direct) {DIRECT_APP}: logon server {direct.host}, App ID {direct.app_code}, "
        f"allowed groups: {groups} (set in [alimail_direct]; check it with: idp alimail test)"
    )


@sp.command("set", epilog=f"KEY is an attribute of the catalogue: {', '.join(CATALOGUE)}.")
@click.argument("entity_id")
@click.option("--display-name", metavar="TEXT", help="Name shown in the console and the app launcher ('' clears it).")
@click.option("--nameid-format", type=click.Choice(get_args(NameIdFormatName)), help="NameID issued to this SP.")
@click.option(
    "--nameid-attribute",
    type=click.Choice(list(CATALOGUE)),
    metavar="KEY",
    help="Attribute the emailAddress / unspecified NameID comes from.",
)
@click.option(
    "--nameid-domain", metavar="DOMAIN", help="NameID = the attribute's part before @, then @DOMAIN ('' clears)."
)
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    type=click.Choice(list(CATALOGUE)),
    metavar="KEY",
    help="Released attribute (repeat; replaces the list).",
)
@click.option("--no-attributes", is_flag=True, help="Release no attribute.")
@click.option(
    "--attribute-name-format", type=click.Choice(["uri", "basic"]), help="Release under urn:oid or friendly names."
)
@click.option(
    "--attribute-name",
    "attribute_names",
    multiple=True,
    metavar="KEY=NAME",
    help="The SAML Name this SP expects for an attribute, e.g. mail=email (repeat; replaces the list).",
)
@click.option("--sign", type=click.Choice(list(SIGN_CHOICES)), help="What the IdP signs.")
@click.option("--encrypt-assertion/--no-encrypt-assertion", default=None, help="Encrypt assertions to the SP's key.")
@click.option(
    "--require-signed-requests/--accept-unsigned-requests", default=None, help="Refuse unsigned AuthnRequests."
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="AD security group allowed to use the SP (repeat; replaces the list).",
)
@click.option("--everyone", is_flag=True, help="Allow everyone (clear the allowed groups).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="GROUP=ROLE_ARN,PROVIDER_ARN",
    help="Alibaba Cloud role for the members of GROUP (repeat; replaces the list).",
)
@click.option("--no-roles", is_flag=True, help="Remove every role mapping.")
@click.option(
    "--role-session-name-attribute",
    type=click.Choice(list(CATALOGUE)),
    metavar="KEY",
    help="Attribute sent as RoleSessionName.",
)
@click.option("--no-check-groups", is_flag=True, help="Store groups as given, without looking them up in AD.")
@click.option("--assertion-lifetime", type=click.IntRange(30, 3600), help="Seconds an assertion is valid for this SP.")
@click.option("--default-assertion-lifetime", is_flag=True, help="Use [idp] assertion_lifetime again.")
@click.option("--idp-initiated/--no-idp-initiated", default=None, help="Allow sign-in started at the IdP (launcher).")
@click.option("--default-relay-state", metavar="VALUE", help="RelayState of IdP-initiated sign-ins ('' clears).")
@click.option(
    "--allow-relay-state",
    "relay_states",
    multiple=True,
    metavar="VALUE",
    help="Further RelayState allowed (repeat; replaces).",
)
@click.option(
    "--mfa",
    type=click.Choice(["required", "optional"]),
    help="required: a second factor for everyone at this SP; optional: only as [mfa] or the SP's request asks.",
)
@click.option("--enable/--disable", "enabled", default=None, help="Switch sign-in to this SP on or off.")
@click.pass_context
def set_(ctx: click.Context, entity_id: str, **options: Any) -> None:
    """Change the policy of the registered SP ENTITY_ID: only the options given change.

    Each change is checked like the console's policy page (unknown attributes, groups AD does not know, an SP
    left unsigned are refused, nothing stored) and written to the audit trail with the policy before and after.
    """
    settings = settings_from(ctx)
    changes = _policy_changes(settings, options)
    enabled: bool | None = options["enabled"]
    if not changes and enabled is None:
        raise click.UsageError("nothing to change: give at least one option (see idp sp set --help)")
    with _service(settings) as service:
        try:
            if service.registry.get(entity_id) is None:
                unknown = UnknownSpError(entity_id)
                service.refused("sp_policy_changed", unknown, actor=cli_actor(), sp=entity_id)
                raise unknown
            before = service.registry.current_policy(entity_id)
            policy = before
            if changes:
                policy = service.update_policy(entity_id, {**before.model_dump(), **changes}, actor=cli_actor())
            if enabled is not None and enabled != policy.enabled:
                policy = service.set_enabled(entity_id, enabled, actor=cli_actor())
        except SpRegistryError as exc:
            raise click.ClickException(str(exc)) from None
    _print_changes(entity_id, before, policy)


def _policy_changes(settings: Settings, options: dict[str, Any]) -> dict[str, object]:
    """The policy fields the options set, checked (groups in AD) but not yet stored."""
    for given, cleared in EXCLUSIVE:
        if options[given] and options[cleared]:
            raise click.UsageError(f"give {_flag(given)} or {_flag(cleared)}, not both")
    changes: dict[str, object] = {}
    for field in ("nameid_format", "nameid_attribute", "attribute_name_format", "role_session_name_attribute", "mfa"):
        if options[field] is not None:
            changes[field] = options[field]
    for field in ("display_name", "nameid_domain", "default_relay_state"):
        if options[field] is not None:
            changes[field] = options[field] or None  # '' clears
    for field in ("encrypt_assertion", "require_signed_requests", "idp_initiated"):
        if options[field] is not None:
            changes[field] = options[field]
    if options["attributes"] or options["no_attributes"]:
        changes["attributes"] = list(options["attributes"])
    if options["attribute_names"]:
        changes["attribute_names"] = dict(
            _pair(text, "=", "--attribute-name", "KEY=NAME") for text in options["attribute_names"]
        )
    if options["sign"]:
        changes["sign_response"], changes["sign_assertion"] = SIGN_CHOICES[options["sign"]]
    if options["relay_states"]:
        changes["relay_state_allowed"] = list(options["relay_states"])
    if options["assertion_lifetime"] or options["default_assertion_lifetime"]:
        changes["assertion_lifetime"] = options["assertion_lifetime"]  # None: [idp] assertion_lifetime
    check = not options["no_check_groups"]
    if options["groups"] or options["everyone"]:
        changes["allowed_groups"] = (
            resolve_groups(settings, options["groups"], check=check) if options["groups"] else []
        )
    if options["roles"]:
        pairs = [_pair(text, "=", "--role", "GROUP=ROLE_ARN,PROVIDER_ARN") for text in options["roles"]]
        groups = resolve_groups(settings, [group for group, _ in pairs], check=check, option="--role")
        arns = [_pair(value, ",", "--role", "GROUP=ROLE_ARN,PROVIDER_ARN") for _, value in pairs]
        changes["roles"] = [
            {"group": group, "role_arn": role, "provider_arn": provider}
            for group, (role, provider) in zip(groups, arns, strict=True)
        ]
    elif options["no_roles"]:
        changes["roles"] = []
    return changes


EXCLUSIVE = (
    ("attributes", "no_attributes"),
    ("groups", "everyone"),
    ("roles", "no_roles"),
    ("assertion_lifetime", "default_assertion_lifetime"),
)
"""`idp sp set` options that set and clear the same field: giving both is a mistake."""


def _flag(option: str) -> str:
    return "--" + {"attributes": "attribute", "groups": "group", "roles": "role"}.get(option, option).replace("_", "-")


def _pair(text: str, separator: str, option: str, shape: str) -> tuple[str, str]:
    left, found, right = text.partition(separator)
    if not found or not left.strip() or not right.strip():
        raise click.BadParameter(f"{text!r} is not {shape}", param_hint=option)
    return left.strip(), right.strip()


def _print_changes(entity_id: str, before: SpPolicy, after: SpPolicy) -> None:
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    changed = [name for name in new if old.get(name) != new[name]]
    if not changed:
        click.echo(f"SP {entity_id}: the policy already says so; nothing changed")
        return
    click.echo(f"SP {entity_id}: policy changed")
    for name in changed:
        click.echo(f"  {name}: {_shown(old.get(name))} -> {_shown(new[name])}")


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return "(none)" if value is None or value == {} else str(value)


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


def resolve_groups(settings: Settings, names: Sequence[str], *, check: bool, option: str = "--group") -> list[str]:
    """Each --group (or --role group) as the one security group it means, in its stored form, before
    anything is stored; every name AD does not know is named in one refusal. Unchecked (``check`` false),
    the names are stored as given, and a name then counts only while it names exactly one security group."""
    if not check:
        click.secho(
            "Warning: groups stored without checking them in AD; a name that matches no security group lets nobody in",
            fg="yellow",
            err=True,
        )
        return [str(GroupRef.parse(name)) for name in names]
    try:
        known = ad_groups(settings)
    except DirectoryError as exc:
        raise click.ClickException(
            f"cannot check the groups in Active Directory: {exc.detail or exc.reason}\n"
            "(--no-check-groups stores them without checking)"
        ) from None
    try:
        return [str(ref) for ref in directory_groups.resolve_groups(names, known)]
    except GroupsNotResolved as exc:
        raise click.ClickException(f"{option} refused, nothing stored: {exc}") from None


def ad_groups(settings: Settings) -> list[Group]:
    with Directory(settings.ldap) as directory:
        return directory.groups()


def _groups(policy: SpPolicy) -> str:
    return ", ".join(GroupRef.parse(g).label for g in policy.allowed_groups) or "everyone"


def _expiry(entry: SpEntry, now: datetime) -> str:
    lines = []
    if entry.cert_expiry is not None:
        lines.append(f"cert {_dated(entry.cert_expiry, now)}")
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
