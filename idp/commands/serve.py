"""`idp serve`: the production server, gunicorn with the app built once per worker."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from typing import Any

import click
from gunicorn.app.base import BaseApplication

from idp.cli import settings_from
from idp.settings import Settings
from idp.store.db import Database


class IdpGunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):  # type: ignore[no-untyped-def]
        # Called in each worker after the fork: LDAP connections, DB engines and the pysaml2 server are
        # per worker and never shared across a fork.
        from idp.app import create_app

        return create_app(self._settings)


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
    # The schema is made once here, before the workers fork, instead of by every worker at once.
    Database(settings.database_url).dispose()
    metrics_dir = settings.server.data_dir / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    options: dict[str, Any] = {
        "bind": bind,
        "workers": workers or 2 * multiprocessing.cpu_count(),
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 60,
        "graceful_timeout": 20,
        "keepalive": 5,
        "child_exit": _child_exit,
        # A SAMLRequest on the Redirect binding travels in the query string.
        "limit_request_line": 8190,
        "forwarded_allow_ips": "*" if settings.server.trusted_proxy_count else "127.0.0.1",
    }
    if access_log:
        # %(U)s is the path without the query string: SAMLRequest and RelayState stay out of the logs.
        options.update(accesslog="-", access_log_format='%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms')
    IdpGunicorn(settings, options).run()


def _check_keys(settings: Settings) -> None:
    from idp.keys.keyring import Keyring

    active = Keyring.for_settings(settings).state().active  # after a rollover, no longer the configured files
    missing = [p for p in (active.key_file, active.cert_file) if not p.exists()]
    if missing:
        raise click.ClickException(f"no signing key at {', '.join(map(str, missing))}: run `idp keys init` first")
