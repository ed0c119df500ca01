"""`idp demo`: everything on this machine, for a newcomer, in one command.

A throw-away Samba AD DC with demo users, a config file that points at it, signing keys, the demo webmail
SP (python3-saml) registered with the IdP, an emulator of the Alibaba Mail API (so the first sign-in
creates the person's mailbox just in time), and the IdP itself. All of it listens on loopback only and speaks
plain http: it is for trying the product, never for serving anyone.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
import flask
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from werkzeug.serving import BaseWSGIServer, make_server

from idp.settings import Settings, SettingsError, load_settings, render_toml

DEMO_ADMIN_GROUP = "SSO Admins"
"""The demo AD's admin group (anna is in it): her password opens the admin console."""

if TYPE_CHECKING:
    from idp.demo.samba_dc import DemoUser

CONFIG_HEADER = """\
# Written by `idp demo` on every start, from the demo domain controller it runs: edit a copy, not this file.
# Serve it for real with: IDP_CONFIG=this-file idp serve
"""
DEFAULT_DC_IP = "127.0.0.11"


@click.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="Where the demo keeps its domain controller, config, keys and data.",
)
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT of the IdP (loopback).")
@click.option(
    "--webmail-port",
    type=click.IntRange(1, 65535),
    default=8025,
    show_default=True,
    help="Port of the demo webmail SP, on the same host as the IdP.",
)
@click.option(
    "--dc-ip",
    default=DEFAULT_DC_IP,
    show_default=True,
    help="Loopback address of the demo AD DC (its LDAP ports are fixed, so each DC needs its own).",
)
@click.option(
    "--mail-api-port",
    type=click.IntRange(1, 65535),
    default=8026,
    show_default=True,
    help="Port of the Alibaba Mail API emulator that JIT provisioning creates mailboxes in.",
)
def demo(workdir: Path, bind: str, webmail_port: int, dc_ip: str, mail_api_port: int) -> None:
    """Run a local AD, the IdP and a demo webmail SP, and sign in to the webmail with an AD password."""
    host, port = _parse_bind(bind)
    _require_loopback(dc_ip, "--dc-ip")
    if webmail_port == port:
        raise click.BadParameter("the webmail needs a port of its own", param_hint="--webmail-port")
    if mail_api_port in (port, webmail_port):
        raise click.BadParameter("the mail API emulator needs a port of its own", param_hint="--mail-api-port")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    console = Console()
    idp_url = f"http://{host}:{port}"
    webmail_url = f"http://{host}:{webmail_port}"

    from idp.demo.samba_dc import DEMO_USERS, SambaDCError, ensure_dc

    with console.status("Starting the demo Active Directory (the first run provisions it, about 10 s)..."):
        try:
            dc = ensure_dc(workdir / "ad", ip=dc_ip)
        except SambaDCError as exc:
            raise click.ClickException(f"the demo domain controller did not start: {exc}") from None
    from idp.demo.samba_dc import REALM

    try:
        with _stop_on_sigterm(), _mail_api(host, mail_api_port, REALM) as mail_api:
            settings = _write_config(workdir, idp_url, dc.ldap_settings(), _provisioning(mail_api))
            _ensure_keys(settings, host)
            webmail = _webmail_app(workdir, webmail_url, idp_url)
            with _serve_in_background(webmail, host, webmail_port):
                _register_webmail(settings, webmail)
                from idp.app import create_app

                idp_server = _make_server(create_app(settings), host, port)
                _quiet_request_log()
                _print_welcome(console, idp_url, webmail_url, workdir, DEMO_USERS, mail_api.url)
                idp_server.serve_forever()  # returns on Ctrl-C (werkzeug swallows KeyboardInterrupt)
    finally:
        with console.status("Stopping the demo domain controller..."):
            dc.stop()
        console.print("Demo stopped. Its state is kept in", str(workdir), "for the next run.")


def _parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port_text = bind.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise click.BadParameter(f"{bind!r} is not HOST:PORT", param_hint="--bind")
    _require_loopback(host, "--bind")
    return host, int(port_text)


def _require_loopback(host: str, option: str) -> None:
    # Plain http, the Flask dev server and printed passwords: this must not be reachable from the network.
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise click.BadParameter(f"{host!r} is not a loopback address (127.x.y.z)", param_hint=option)


@contextmanager
def _mail_api(host: str, port: int, mail_domain: str) -> Iterator[Any]:
    """The Alibaba Mail API emulator on a loopback port, for as long as the demo runs."""
    from idp.demo.alimail_emulator import AlimailEmulator, RunningEmulator

    try:
        running = RunningEmulator(AlimailEmulator(mail_domain=mail_domain), host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port} ({exc.strerror}); choose another port") from None
    try:
        yield running
    finally:
        running.stop()


def _provisioning(mail_api: Any) -> dict[str, dict[str, Any]]:
    """JIT provisioning into the emulator: alice's first sign-in creates her mailbox there."""
    emu = mail_api.emulator
    return {
        "provisioning": {"provider": "alimail", "jit": True},
        "provisioning.alimail": {
            "host": mail_api.url,
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "mail_domain": emu.mail_domain,
        },
    }


def _write_config(
    workdir: Path, idp_url: str, ldap: dict[str, Any], extra: dict[str, dict[str, Any]] | None = None
) -> Settings:
    """Write DIR/idp.toml and read it back the way `idp serve` would, so a bad value stops us here."""
    config: dict[str, dict[str, Any]] = {
        "server": {"base_url": idp_url, "data_dir": "data"},
        "idp": {
            "key_file": "certs/idp.key",
            "cert_file": "certs/idp.crt",
            "persistent_id_secret_file": "certs/persistent-id.secret",
        },
        "metadata": {"dir": "metadata"},
        "ldap": ldap,
        "admin": {"groups": [DEMO_ADMIN_GROUP]},
        **(extra or {}),
    }
    path = workdir / "idp.toml"
    path.write_text(CONFIG_HEADER + render_toml(config), encoding="utf-8")
    path.chmod(0o600)  # it holds the demo service account's password
    try:
        # No environment overrides: an IDP_* variable left in the shell must not point the demo elsewhere.
        return load_settings(path, environ={})
    except SettingsError as exc:
        raise click.ClickException(f"the demo wrote a config it cannot use:\n{exc}") from None


def _ensure_keys(settings: Settings, host: str) -> None:
    from idp.keys.keyring import Keyring
    from idp.keys.material import init_keys

    idp = settings.idp
    if not Keyring.for_settings(settings).active_files_exist():
        init_keys(idp.key_file, idp.cert_file, idp.persistent_id_secret_file, common_name=host)


def _webmail_app(workdir: Path, webmail_url: str, idp_url: str) -> flask.Flask:
    from idp.demo.webmail import create_webmail_app

    return create_webmail_app(
        base_url=webmail_url, idp_metadata_url=f"{idp_url}/saml/metadata", state_dir=workdir / "webmail"
    )


def _register_webmail(settings: Settings, webmail: flask.Flask) -> None:
    from idp.demo.webmail import sp_metadata_xml
    from idp.sps.errors import SpRegistryError
    from idp.sps.policy import SpPolicy
    from idp.sps.registry import SpRegistry
    from idp.sps.validate import inspect_sp_metadata
    from idp.store.db import Database

    settings.metadata.dir.mkdir(parents=True, exist_ok=True)
    registry = SpRegistry(
        settings.metadata.dir,
        Database(settings.database_url),
        settings.sp_defaults,
        allow_http_loopback=settings.metadata.allow_http_loopback,
    )
    xml = sp_metadata_xml(webmail).encode()
    try:
        # Every run registers it again: replace=True makes that a no-op rather than a duplicate error. Only a
        # first registration sets the policy, so what an admin changed in the console survives a restart.
        first = registry.get(inspect_sp_metadata(xml).entity_id) is None
        policy = (
            SpPolicy.from_defaults(settings.sp_defaults).model_copy(
                update={"display_name": "Webmail", "idp_initiated": True, "default_relay_state": "/"}
            )
            if first
            else None
        )
        registry.add(xml, policy=policy, replace=True)
    except SpRegistryError as exc:
        raise click.ClickException(f"the IdP refused the demo webmail's metadata: {exc}") from None


def _make_server(app: Any, host: str, port: int) -> BaseWSGIServer:
    try:
        return make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port} ({exc.strerror}); choose another port") from None


@contextmanager
def _serve_in_background(app: Any, host: str, port: int) -> Iterator[BaseWSGIServer]:
    server = _make_server(app, host, port)
    thread = threading.Thread(target=server.serve_forever, name=f"webmail-{port}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so that `kill` also stops the domain controller we started."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _quiet_request_log() -> None:
    # One line per request, each with a SAMLRequest in it, would scroll the users table away; -v keeps them.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)


def _print_welcome(
    console: Console, idp_url: str, webmail_url: str, workdir: Path, users: Iterable[DemoUser], mail_api_url: str
) -> None:
    # Credentials must never be cut short, whatever the terminal width: they fold instead.
    table = Table(title="Demo Active Directory users", title_justify="left")
    table.add_column("username", no_wrap=True, overflow="fold")
    table.add_column("password", no_wrap=True, overflow="fold")
    table.add_column("groups")
    table.add_column("signs in?")
    for user in users:
        verdict = "[green]yes[/green]" if user.state == "normal" else f"[red]no[/red] ({user.state})"
        table.add_row(user.username, user.password, ", ".join(user.groups), verdict)
    console.print(
        Panel.fit(
            f"Open [bold link={webmail_url}/]{webmail_url}/[/] and sign in as one of the users below.\n\n"
            f"Admin console: {idp_url}/admin (members of {DEMO_ADMIN_GROUP}: anna)\n"
            f"App launcher: {idp_url}/apps\n"
            f"IdP metadata: {idp_url}/saml/metadata\n"
            f"Config:       {workdir / 'idp.toml'}\n"
            f"Mail API:     {mail_api_url} (Alibaba Mail emulator; a first sign-in creates the mailbox)\n"
            f"Mailboxes:    IDP_CONFIG={workdir / 'idp.toml'} idp sync --dry-run\n"
            "Stop:         Ctrl-C (stops the IdP, the webmail and the domain controller)",
            title="ad-sso-bridge demo",
        )
    )
    console.print(table)
    console.print("[dim]The users marked [red]no[/red] show how each Active Directory refusal looks.[/dim]")
