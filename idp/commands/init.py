"""`idp init`: a first configuration, asked for and checked step by step, written only when AD answers.

It asks for what only the admin knows (the public address, the domain controllers, where people live, the
service account and its password), checks the domain controllers with the same steps as `idp ldap test`
before writing anything, then writes the configuration file (0640), the service account's password in a
file of its own (0600, never in the configuration), and says what to run next. Every answer can be given as
an option, for scripts; what is missing is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from pydantic import ValidationError
from rich.console import Console

from idp.commands.ldap import show_report
from idp.directory.check import check_directory
from idp.settings import LdapSettings, SettingsError, load_settings, render_toml

DEFAULT_CONFIG = Path("/etc/idp/idp.toml")


@click.command()
@click.option(
    "--config-file",
    "target",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Where to write the configuration.",
)
@click.option("--base-url", prompt="Public https address of the IdP (e.g. https://sso.corp.example.com)")
@click.option(
    "--ldap-url",
    "ldap_urls",
    prompt="Domain controllers, in order of preference, comma-separated (e.g. ldaps://dc1.corp.example.com)",
)
@click.option("--base-dn", prompt="Where people live (e.g. DC=corp,DC=example,DC=com)")
@click.option("--bind-dn", prompt="The read-only service account (e.g. svc-sso@corp.example.com)")
@click.option(
    "--ca-file",
    default="",
    prompt="CA certificate of the domain controllers, PEM (empty: the system's CAs)",
    help="PEM file of the CA that signed the DCs' certificates.",
)
@click.option("--tls-valid-name", "tls_valid_names", multiple=True, help="Another name to accept in DC certificates.")
@click.option("--data-dir", default="/var/lib/idp", show_default=True, help="Database, sessions, SP metadata.")
@click.option("--allow-cleartext", is_flag=True, help="Accept a DC reached by ldap:// without StartTLS (a lab only).")
@click.option("--force", is_flag=True, help="Replace an existing configuration file.")
def init(
    target: Path,
    base_url: str,
    ldap_urls: str,
    base_dn: str,
    bind_dn: str,
    ca_file: str,
    tls_valid_names: tuple[str, ...],
    data_dir: str,
    allow_cleartext: bool,
    force: bool,
) -> None:
    """Write a first configuration after checking it against AD."""
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists; edit it, or run again with --force to replace it")
    password = click.prompt(f"Password of {bind_dn} (not shown)", hide_input=True)
    ldap: dict[str, object] = {
        "urls": [u.strip() for u in ldap_urls.split(",") if u.strip()],
        "base_dn": base_dn.strip(),
        "bind_dn": bind_dn.strip(),
        "bind_password": password,
        "tls_valid_names": list(tls_valid_names),
    }
    if ca_file.strip():
        ldap["ca_file"] = ca_file.strip()
    try:
        settings = LdapSettings.model_validate(ldap)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'ldap'}: {e['msg']}" for e in exc.errors())
        raise click.ClickException(f"these answers cannot work: {problems}") from None

    console = Console(highlight=False)
    report = check_directory(settings, allow_cleartext=allow_cleartext)
    show_report(console, report)
    if not report.ok:
        raise click.ClickException("nothing was written: no domain controller passed every step (see above)")

    config_dir = target.parent
    config_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    password_file = config_dir / "ldap-password"
    _write(password_file, password + "\n", 0o600)
    ldap.pop("bind_password")
    ldap["bind_password_file"] = password_file
    certs = config_dir / "certs"
    _write(
        target,
        render_toml(
            {
                "server": {"base_url": base_url.strip().rstrip("/"), "data_dir": Path(data_dir)},
                "idp": {
                    "key_file": certs / "idp.key",
                    "cert_file": certs / "idp.crt",
                    "persistent_id_secret_file": certs / "persistent-id.secret",
                },
                "ldap": ldap,
            }
        ),
        0o640,
    )
    try:
        load_settings(target)
    except SettingsError as exc:
        raise click.ClickException(f"{target} was written but does not load: {exc}") from None
    console.print(f"[green]Wrote {target} and {password_file}.[/green] Next:")
    console.print(f"  export IDP_CONFIG={target}")
    console.print("  idp keys init                   # the signing key and certificate")
    console.print("  idp ldap test --user <someone>  # a person's lookup, and AD's lockout policy")
    console.print("  idp serve --bind 127.0.0.1:8000")


def _write(path: Path, text: str, mode: int) -> None:
    """Create (or replace) ``path`` with ``mode`` from the start: never readable by others, not even briefly."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
