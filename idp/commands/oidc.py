"""`idp oidc client add|list|update|rotate-secret|remove`: the OpenID Connect clients employees may sign in to."""

from __future__ import annotations

from functools import partial

import click

from idp.audit import AuditTrail
from idp.cli import settings_from
from idp.commands.sp import ad_groups
from idp.directory.groups import GroupLoader
from idp.oidc.clients import SCOPES, ClientStore, OidcClient, OidcClientError
from idp.oidc.presets import PRESETS
from idp.oidc.registration import add_client, remove_client, rotate_secret, update_client
from idp.settings import Settings
from idp.sps.service import cli_actor
from idp.store.db import Database

_NO_CHECK_HELP = "Store --group as given, without looking it up in AD (when AD is unreachable on purpose)."


@click.group()
def oidc() -> None:
    """The OpenID Connect provider: its clients (relying parties)."""


@oidc.group()
def client() -> None:
    """Register, list, change and remove OpenID Connect clients, and give one a new secret."""


@client.command("add")
@click.argument("client_id")
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    help="A well-known application: fills --name and --scope and says what to set up on its side.",
)
@click.option("--name", help="What people read on the login and error pages (required without --preset).")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    required=True,
    help="Where the client receives its code, matched exactly (repeat for several).",
)
@click.option(
    "--public",
    is_flag=True,
    help="A single-page or native app that cannot keep a secret: no secret, PKCE proves its codes.",
)
@click.option(
    "--scope", "scopes", multiple=True, type=click.Choice(SCOPES), help="Scope it may ask for (repeat; default all)."
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="AD security group allowed to use the client, by name, DN or SID (repeat; default everyone); stored by "
    "its SID.",
)
@click.option("--no-check-groups", is_flag=True, help=_NO_CHECK_HELP)
@click.option(
    "--frontchannel-logout-uri",
    metavar="URI",
    help="Where the browser tells the client that the person signed out (OpenID Connect Front-Channel Logout).",
)
@click.pass_context
def add(
    ctx: click.Context,
    client_id: str,
    preset: str | None,
    name: str | None,
    redirect_uris: tuple[str, ...],
    public: bool,
    scopes: tuple[str, ...],
    groups: tuple[str, ...],
    no_check_groups: bool,
    frontchannel_logout_uri: str | None,
) -> None:
    """Register CLIENT_ID. A confidential client's secret is printed once: it is stored only as a hash."""
    chosen = PRESETS[preset] if preset else None
    name = name or (chosen.name if chosen else None)
    if not name:
        raise click.UsageError("give --name (or --preset)")
    settings = settings_from(ctx)
    db = Database(settings.database_url)
    try:
        made = add_client(
            ClientStore(db),
            AuditTrail(db),
            client_id,
            name,
            list(redirect_uris),
            public=public,
            actor=cli_actor(),
            # None (no --scope, no preset) is every scope.
            scopes=list(scopes) if scopes else (list(chosen.scopes) if chosen else None),
            allowed_groups=list(groups),
            frontchannel_logout_uri=frontchannel_logout_uri,
            ad_groups=_group_loader(settings, check=not no_check_groups, given=bool(groups)),
        )
    except OidcClientError as exc:
        raise _refused(exc) from None
    c = made.client
    click.echo(f"Added OpenID Connect client {c.client_id}")
    click.echo(f"issuer:        {settings.oidc_issuer}")
    click.echo(f"discovery:     {settings.oidc_issuer}/.well-known/openid-configuration")
    if made.secret is not None:
        click.echo(f"client secret: {made.secret}")
        click.echo("Copy the secret now: it is not stored and cannot be shown again.")
    else:
        click.echo("public client: no secret; the client must use PKCE (S256)")
    if chosen is not None:
        click.echo(f"\n{chosen.name} (from {chosen.source}):")
        for note in chosen.notes:
            click.echo("- " + note.format(entity_id=c.entity_id))


@client.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Every registered client, its kind, redirect URIs, scopes, allowed groups and front-channel logout URI."""
    settings = settings_from(ctx)
    clients = ClientStore(Database(settings.database_url)).all()
    if not clients:
        click.echo("No OpenID Connect client is registered.")
        return
    for c in clients:
        _show(c)


@client.command("update")
@click.argument("client_id")
@click.option("--name", help="What people read on the login and error pages.")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    help="Where the client receives its code, matched exactly (repeat; replaces every registered one).",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    help="Scope it may ask for (repeat; replaces the registered ones; openid is required).",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="AD security group allowed to use the client, by name, DN or SID (repeat; replaces the registered ones); "
    "stored by its SID.",
)
@click.option("--no-groups", is_flag=True, help="Let everyone use the client (clears the allowed groups).")
@click.option("--no-check-groups", is_flag=True, help=_NO_CHECK_HELP)
@click.option(
    "--frontchannel-logout-uri",
    metavar="URI",
    help='Where the browser tells the client that the person signed out; "" removes it.',
)
@click.pass_context
def update(
    ctx: click.Context,
    client_id: str,
    name: str | None,
    redirect_uris: tuple[str, ...],
    scopes: tuple[str, ...],
    groups: tuple[str, ...],
    no_groups: bool,
    no_check_groups: bool,
    frontchannel_logout_uri: str | None,
) -> None:
    """Change CLIENT_ID after registration. Options not given keep their value; a repeatable option given
    replaces the whole list. The id, the kind and the secret stay (see rotate-secret for a new secret)."""
    if groups and no_groups:
        raise click.UsageError("give --group or --no-groups, not both")
    if name is None and not (redirect_uris or scopes or groups or no_groups) and frontchannel_logout_uri is None:
        raise click.UsageError(
            "nothing to change: give --name, --redirect-uri, --scope, --group, --no-groups or --frontchannel-logout-uri"
        )
    settings = settings_from(ctx)
    db = Database(settings.database_url)
    store = ClientStore(db)
    # Unknown, the client is refused (and audited) by update_client: these are only its kept values.
    current = store.get(client_id) or OidcClient(client_id, "", ())
    try:
        changed = update_client(
            store,
            AuditTrail(db),
            client_id,
            name if name is not None else current.name,
            list(redirect_uris or current.redirect_uris),
            actor=cli_actor(),
            scopes=list(scopes or current.scopes),
            allowed_groups=[] if no_groups else list(groups or current.allowed_groups),
            frontchannel_logout_uri=(
                frontchannel_logout_uri if frontchannel_logout_uri is not None else current.frontchannel_logout_uri
            ),
            ad_groups=_group_loader(settings, check=not no_check_groups, given=bool(groups)),
        )
    except OidcClientError as exc:
        raise _refused(exc) from None
    click.echo(f"Changed OpenID Connect client {client_id}")
    _show(changed)


@client.command("rotate-secret")
@click.argument("client_id")
@click.pass_context
def rotate_secret_(ctx: click.Context, client_id: str) -> None:
    """Give confidential client CLIENT_ID a new secret, printed once; the old one is refused at once."""
    settings = settings_from(ctx)
    db = Database(settings.database_url)
    try:
        made = rotate_secret(ClientStore(db), AuditTrail(db), client_id, actor=cli_actor())
    except OidcClientError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"New secret for OpenID Connect client {client_id}; the previous one is refused from now on.")
    click.echo(f"client secret: {made.secret}")
    click.echo("Copy the secret now: it is not stored and cannot be shown again.")


@client.command("remove")
@click.argument("client_id")
@click.pass_context
def remove(ctx: click.Context, client_id: str) -> None:
    """Unregister CLIENT_ID: it can no longer get codes, and its tokens are no longer accepted."""
    settings = settings_from(ctx)
    db = Database(settings.database_url)
    try:
        remove_client(ClientStore(db), AuditTrail(db), client_id, actor=cli_actor())
    except OidcClientError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Removed OpenID Connect client {client_id}")


def _show(c: OidcClient) -> None:
    kind = "public" if c.public else "confidential"
    click.echo(f"{c.client_id}  {c.name}  ({kind})")
    for uri in c.redirect_uris:
        click.echo(f"  redirect: {uri}")
    click.echo(f"  scopes:   {' '.join(c.scopes)}")
    click.echo(f"  groups:   {'; '.join(c.group_labels) or 'everyone'}")
    click.echo(f"  front-channel logout: {c.frontchannel_logout_uri or 'none'}")


def _refused(exc: OidcClientError) -> click.ClickException:
    hint = "\n(--no-check-groups stores them without checking)" if exc.code == "groups_unchecked" else ""
    return click.ClickException(str(exc) + hint)


def _group_loader(settings: Settings, *, check: bool, given: bool) -> GroupLoader | None:
    """What reads AD's groups to resolve --group (asked only when a group needs it); None with
    --no-check-groups, which stores the groups as given, as `idp sp add --no-check-groups` does."""
    if check:
        return partial(ad_groups, settings)
    if given:
        click.secho(
            "Warning: groups stored without checking them in AD; a name that matches no security group lets nobody in",
            fg="yellow",
            err=True,
        )
    return None
