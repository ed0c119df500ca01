"""`idp keys`: create and inspect the IdP's signing key and certificate (never prints the key)."""

from __future__ import annotations

from urllib.parse import urlsplit

import click

from idp.cli import settings_from
from idp.saml.keys import KeyInfo, KeysError, init_keys, load_key_info


@click.group()
def keys() -> None:
    """The signing key and certificate that SPs trust through our metadata."""


@keys.command("init")
@click.option(
    "--force", is_flag=True, help="Replace an existing key and certificate (every SP must re-import our metadata)."
)
@click.option(
    "--days",
    type=click.IntRange(min=1, max=36500),
    default=3650,
    show_default=True,
    help="How long the certificate is valid.",
)
@click.pass_context
def init(ctx: click.Context, force: bool, days: int) -> None:
    """Create an RSA-2048 key, a self-signed certificate and the persistent-NameID secret."""
    settings = settings_from(ctx)
    common_name = urlsplit(settings.server.base_url).hostname or "localhost"
    try:
        info = init_keys(
            settings.idp.key_file,
            settings.idp.cert_file,
            settings.idp.persistent_id_secret_file,
            common_name,
            days=days,
            force=force,
        )
    except KeysError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {settings.idp.key_file} (mode 0600) and {settings.idp.cert_file}")
    _print(info, settings.idp.key_file, settings.idp.persistent_id_secret_file)


@keys.command("show")
@click.pass_context
def show(ctx: click.Context) -> None:
    """Print the certificate's subject, expiry and SHA-256 fingerprint, and where the files are."""
    settings = settings_from(ctx)
    try:
        info = load_key_info(settings.idp.cert_file)
    except KeysError as exc:
        raise click.ClickException(str(exc)) from None
    _print(info, settings.idp.key_file, settings.idp.persistent_id_secret_file)


def _print(info: KeyInfo, key_file: object, secret_file: object) -> None:
    click.echo(f"subject:     {info.subject}")
    click.echo(f"valid from:  {info.not_before:%Y-%m-%d %H:%M} UTC")
    click.echo(f"expires:     {info.not_after:%Y-%m-%d %H:%M} UTC")
    click.echo(f"sha256:      {info.sha256_fingerprint}")
    click.echo(f"certificate: {info.cert_file}")
    click.echo(f"key:         {key_file}")
    click.echo(f"nameid secret: {secret_file}")
