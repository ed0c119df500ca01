"""The `idp` console script: a click group whose sub-commands live in idp/commands/."""

from __future__ import annotations

import importlib
import logging
import warnings

import click

from idp.settings import Settings, SettingsError, load_settings

# name -> "module:attribute"; imported only when used so that `idp --help` stays fast.
COMMANDS = {
    "serve": "idp.commands.serve:serve",
    "demo": "idp.commands.demo:demo",
    "keys": "idp.commands.keys:keys",
    "sp": "idp.commands.sp:sp",
    "ldap": "idp.commands.ldap:ldap",
    "sync": "idp.commands.sync:sync",
    "outbox": "idp.commands.outbox:outbox",
    "sessions": "idp.commands.sessions:sessions",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup)
@click.option(
    "--config", "config_path", envvar="IDP_CONFIG", default=None, help="TOML settings file (default ./idp.toml)"
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """ad-sso-bridge: sign in to SAML service providers with an Active Directory password."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = {"config_path": config_path}


def settings_from(ctx: click.Context) -> Settings:
    """Load settings for a sub-command, turning a bad configuration into a clean exit with the message."""
    try:
        return load_settings((ctx.obj or {}).get("config_path"))
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def main() -> None:
    # pysaml2 touches a cipher mode that cryptography moved; the warning means nothing to an admin.
    warnings.filterwarnings("ignore", message="CFB has been moved", module="saml2")
    cli(prog_name="idp")


if __name__ == "__main__":
    main()  # click exits with the command's status itself
