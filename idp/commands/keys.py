"""`idp keys`: create, inspect and roll over the IdP's signing key and certificate (never prints the key)."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import click

from idp.cli import settings_from
from idp.keys.keyring import Keyring, KeyringState, Step
from idp.keys.material import KeyInfo, KeysError, init_keys
from idp.mfa.sealing import SealError, ensure_key


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
    """Create an RSA-2048 key, a self-signed certificate, the persistent-NameID secret and the MFA key."""
    settings = settings_from(ctx)
    keyring = Keyring.for_settings(settings)
    if keyring.manifest.exists():
        # The manifest, not the configured files, says which key signs: replacing those files would either
        # do nothing or pull the ground from under a rollover in progress.
        raise click.ClickException(
            f"{keyring.manifest} manages the signing keys since the first rollover; "
            "replace the key with `idp keys rotate add`, then `switch` and `retire`"
        )
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
    try:
        # Made now rather than at the first enrolment, so that a copy of certs/ for a second node carries it:
        # a node with a key of its own could not open the factors people enrolled on the first. Never replaced.
        ensure_key(settings.mfa.key_file)
    except SealError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {settings.idp.key_file} (mode 0600) and {settings.idp.cert_file}")
    _print(info, settings.idp.key_file)
    click.echo(f"nameid secret: {settings.idp.persistent_id_secret_file}")
    click.echo(f"MFA key: {settings.mfa.key_file} (mode 0600; kept if it existed)")


@keys.command("show")
@click.pass_context
def show(ctx: click.Context) -> None:
    """Every published certificate with its role, expiry and SHA-256 fingerprint, and the next rollover step."""
    settings = settings_from(ctx)
    try:
        state = Keyring.for_settings(settings).state()
        described = state.describe()
    except KeysError as exc:
        raise click.ClickException(str(exc)) from None
    for role, pair in state.published():
        click.echo(f"[{role}] {_ROLES[role]}")
        _print(described[role], pair.key_file)
        click.echo("")
    click.echo(f"nameid secret: {settings.idp.persistent_id_secret_file}")
    click.echo(f"next rollover step: idp keys rotate {state.possible_step}  ({_NEXT_STEP[state.possible_step]})")


_ROLES = {
    "active": "signs every response, logout response and our metadata",
    "next": "published in our metadata, not signing yet",
    "previous": "signed until the last switch; still published until retired",
}
_NEXT_STEP = {
    "add": "publishes a new key beside the active one",
    "switch": "only after every SP has re-imported our metadata",
    "retire": "once no SP needs the old certificate any more",
}


@keys.group("rotate")
def rotate() -> None:
    """Replace the signing key without breaking any SP, in three steps: add, switch, retire.

    \b
    1. add     a next key is published in our metadata beside the active one;
               have every SP re-import our metadata (or wait for SPs that refresh it by URL).
    2. switch  responses are signed with the next key; the old one stays published.
    3. retire  the old certificate leaves our metadata and its private key is deleted.
    """


@rotate.command("add")
@click.option(
    "--days", type=click.IntRange(min=1, max=36500), default=3650, show_default=True, help="Validity of the new key."
)
@click.pass_context
def rotate_add(ctx: click.Context, days: int) -> None:
    """Publish a new key beside the active one (nothing signs with it yet)."""
    state = _step(ctx, "add", days=days)
    click.echo("next key added and published in our metadata; it does not sign yet.")
    click.echo("now: have every SP re-import our metadata, then run `idp keys rotate switch`.")
    _print_published(state)


@rotate.command("switch")
@click.pass_context
def rotate_switch(ctx: click.Context) -> None:
    """Sign with the next key from now on (every SP must have re-imported our metadata)."""
    state = _step(ctx, "switch")
    click.echo("signing switched to the new key; the old certificate stays published.")
    click.echo("now: once every SP signs in fine, run `idp keys rotate retire`.")
    _print_published(state)


@rotate.command("retire")
@click.pass_context
def rotate_retire(ctx: click.Context) -> None:
    """Stop publishing the previous certificate and delete its private key."""
    state = _step(ctx, "retire")
    click.echo("previous key retired: no longer published, its private key deleted.")
    _print_published(state)


def _step(ctx: click.Context, step: Step, *, days: int = 3650) -> KeyringState:
    from idp.audit import AuditTrail
    from idp.keys.rollover import take_step
    from idp.store.db import Database

    settings = settings_from(ctx)
    db = Database(settings.database_url)
    try:
        result = take_step(settings, step, AuditTrail(db), actor=f"cli:{getpass.getuser()}", days=days)
    except KeysError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.dispose()
    return result.after


def _print_published(state: KeyringState) -> None:
    for role, info in state.describe().items():
        click.echo(f"  {role:<9} sha256 {info.sha256_fingerprint}  expires {info.not_after:%Y-%m-%d}")


def _print(info: KeyInfo, key_file: object) -> None:
    days_left = (info.not_after - datetime.now(UTC)).days
    click.echo(f"subject:     {info.subject}")
    click.echo(f"valid from:  {info.not_before:%Y-%m-%d %H:%M} UTC")
    unit = "day" if days_left == 1 else "days"
    click.echo(f"expires:     {info.not_after:%Y-%m-%d %H:%M} UTC ({days_left} {unit} left)")
    click.echo(f"sha256:      {info.sha256_fingerprint}")
    click.echo(f"certificate: {info.cert_file}")
    click.echo(f"key:         {key_file}")
