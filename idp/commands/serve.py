"""`idp serve`: the production server, gunicorn with the app built once per worker.

``kill -HUP <master pid>`` reloads without dropping a request: the master reads the configuration file again
(a file that does not validate is refused, and the workers keep the previous settings), starts new workers,
which build the app afresh (configuration, signing keys, SP metadata), and lets the old ones finish the
requests they hold before they exit.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import click
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from idp.cli import settings_from
from idp.logs import logging_config, skip_unused_record_fields
from idp.settings import Settings, SettingsError, load_settings
from idp.store.db import Database

log = logging.getLogger(__name__)


class IdpGunicorn(BaseApplication):
    def __init__(
        self, settings: Settings, config_path: str | None, options: dict[str, Any], *, debug: bool = False
    ) -> None:
        self._settings = settings
        self._config_path = config_path
        self._options = options
        self._debug = debug
        self._started = False
        super().__init__()

    def load_config(self) -> None:
        # Called once at start, and in the master at every HUP, before the new workers fork.
        if self._started:
            self._reread()
        self._started = True
        for key, value in {**self._options, **_settings_options(self._settings, self._options, self._debug)}.items():
            self.cfg.set(key, value)

    def _reread(self) -> None:
        try:
            self._settings = load_settings(self._config_path)
        except SettingsError as exc:
            log.error("configuration NOT reloaded; the new workers keep the previous one: %s", exc)
            return
        log.info("configuration reloaded; new workers start with it and re-read the signing keys")

    def load(self):  # type: ignore[no-untyped-def]
        # Called in each worker after the fork: LDAP connections, DB engines and the pysaml2 server are
        # per worker and never shared across a fork.
        from idp.app import create_app

        return create_app(self._settings)


def _settings_options(settings: Settings, options: dict[str, Any], debug: bool) -> dict[str, Any]:
    """The gunicorn settings that follow the configuration file, and so change at a reload."""
    return {
        "logconfig_dict": logging_config(
            settings.log.format,
            "DEBUG" if debug else settings.log.level,
            access_log=bool(options.get("accesslog")),
            syslog=settings.log.syslog,
        ),
        "forwarded_allow_ips": "*" if settings.server.trusted_proxy_count else "127.0.0.1",
    }


class _QuietAccessLogger(Logger):
    """gunicorn formats every access-log line (a dozen atoms per request) before asking the logger whether it
    wants it, and with a logging configuration it always asks: a few percent of an SSO response's CPU spent
    on a line that is then dropped. Format it only when the access log is on."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


@click.command()
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT to listen on.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: 2 x CPU cores).")
@click.option("--threads", type=int, default=4, show_default=True, help="Threads per worker (LDAP binds wait on AD).")
@click.option("--access-log/--no-access-log", default=False, help="Log every request (never query strings).")
@click.pass_context
def serve(ctx: click.Context, bind: str, workers: int | None, threads: int, access_log: bool) -> None:
    """Serve the IdP with gunicorn. Put a TLS-terminating proxy in front (see README)."""
    settings = settings_from(ctx)
    _check_keys(settings)
    skip_unused_record_fields()  # before the workers fork: they inherit it
    # The schema is made once here, before the workers fork, instead of by every worker at once.
    Database(settings.database_url).dispose()
    metrics_dir = metrics_directory(settings.server.data_dir / "prometheus")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # gunicorn listens before its workers have loaded the app: a connection accepted then waits (nginx
    # cannot tell it from a slow answer). Importing the app's modules here, before the socket is bound,
    # leaves the workers only create_app to do after the fork: the port then answered 0.2-0.7 s after it
    # was bound instead of 3.9-4.8 s (bench/README.md, "Several nodes under faults"). Nothing is opened here.
    import idp.app  # noqa: F401

    options: dict[str, Any] = {
        "bind": bind,
        "workers": workers or 2 * multiprocessing.cpu_count(),
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 60,
        "graceful_timeout": 20,
        "keepalive": 5,
        "child_exit": _child_exit,
        "logger_class": _QuietAccessLogger,
        # gunicorn's control socket (gunicornc) sits at one path per user, so two servers on a host would
        # take it from each other, and it is a management door nothing here uses: HUP reloads.
        "control_socket_disable": True,
        "on_exit": lambda _arbiter: shutil.rmtree(metrics_dir, ignore_errors=True),
        # A SAMLRequest on the Redirect binding travels in the query string.
        "limit_request_line": 8190,
    }
    if access_log:
        # %(U)s is the path without the query string: SAMLRequest and RelayState stay out of the logs.
        options.update(accesslog="-", access_log_format='%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms')
    ctx_obj = ctx.obj or {}
    IdpGunicorn(settings, ctx_obj.get("config_path"), options, debug=ctx_obj.get("verbose", 0) >= 2).run()


def metrics_directory(root: Path) -> Path:
    """This server's own folder under ``root`` for prometheus_client's multiprocess files, made empty.

    Here and not in idp.metrics: prometheus_client picks its single- or multi-process counters when it is
    first imported, so nothing that imports it may run before PROMETHEUS_MULTIPROC_DIR is set.

    Several nodes may share one data directory (a shared volume): each gets ``<host>-<master pid>`` so that a
    node starting never wipes the files of a neighbour's live workers, and each node's /metrics counts its own
    workers only (a folder shared by two nodes would report their sum from both). Folders left by servers of
    this host that no longer run are removed; another host's are left to that host."""
    root.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    for folder in root.glob(f"{host}-*"):
        pid = folder.name.removeprefix(f"{host}-")
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    mine = root / f"{host}-{os.getpid()}"
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir()
    return mine


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _check_keys(settings: Settings) -> None:
    from idp.keys.keyring import Keyring

    active = Keyring.for_settings(settings).state().active  # after a rollover, no longer the configured files
    missing = [p for p in (active.key_file, active.cert_file) if not p.exists()]
    if missing:
        raise click.ClickException(f"no signing key at {', '.join(map(str, missing))}: run `idp keys init` first")
