"""The `idp` console script: a click group whose sub-commands live in idp/commands/."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import click

from idp import __version__
from idp.logs import configure_logging
from idp.settings import Settings, SettingsError, config_file, load_settings

# name -> "module:attribute"; imported only when used so that `idp --help` stays fast.
COMMANDS = {
    "serve": "idp.commands.serve:serve",
    "demo": "idp.commands.demo:demo",
    "keys": "idp.commands.keys:keys",
    "sp": "idp.commands.sp:sp",
    "alimail": "idp.commands.alimail:alimail",
    "ldap": "idp.commands.ldap:ldap",
    "sync": "idp.commands.sync:sync",
    "outbox": "idp.commands.outbox:outbox",
    "mfa": "idp.commands.mfa:mfa",
    "sessions": "idp.commands.sessions:sessions",
    "audit": "idp.commands.audit:audit",
    "db": "idp.commands.db:db",
    "init": "idp.commands.init:init",
    "oidc": "idp.commands.oidc:oidc",
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
@click.option(
    "-v", "--verbose", count=True, help="Also log what is being done (-v: info, -vv: debug); warnings always show."
)
@click.version_option(__version__, "--version", prog_name="idp", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """ad-sso-bridge: sign in to SAML service providers with an Active Directory password."""
    # Log lines go to stderr, away from a command's output; `idp serve` sets its own level from [log].
    configure_logging("text", ("WARNING", "INFO", "DEBUG")[min(verbose, 2)])
    ctx.obj = {"config_path": config_path, "verbose": verbose}


def settings_from(ctx: click.Context) -> Settings:
    """Load settings for a sub-command, turning a bad configuration into a clean exit with the message."""
    path = (ctx.obj or {}).get("config_path")
    try:
        return load_settings(path)
    except SettingsError as exc:
        looked_for = config_file(path)
        if not looked_for.exists():
            # "ldap: Field required" would send the admin hunting for a key in a file that is not there.
            raise click.ClickException(_no_config_file(looked_for)) from None
        raise click.ClickException(str(exc)) from None


def _no_config_file(path: Path) -> str:
    return (
        f"no configuration file: looked for {path.absolute()}, which does not exist\n"
        "Create it from idp.example.toml (shipped with the project, every key commented):\n"
        f"  cp idp.example.toml {path}\n"
        "then set [ldap] urls, base_dn, bind_dn and bind_password_file; or point --config or IDP_CONFIG at "
        "the file you have."
    )


def main() -> None:
    # pysaml2 touches a cipher mode that cryptography moved; the warning means nothing to an admin.
    warnings.filterwarnings("ignore", message="CFB has been moved", module="saml2")
    cli(prog_name="idp")


if __name__ == "__main__":
    main()  # click exits with the command's status itself
