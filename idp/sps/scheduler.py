"""The served IdP's background refresh of metadata URLs: one daemon thread per process, waking every
``[metadata] refresh_poll`` seconds. Only when some URL is due does it take the database lease, so that one
process on one node downloads while every other worker and node skips that round."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime

from idp.audit import AuditTrail
from idp.settings import Settings
from idp.sps.registry import SpRegistry
from idp.sps.remote import UrlSources
from idp.sps.service import RefreshResult, SpService
from idp.store.db import Database
from idp.store.lease import Lease, LeaseHeld
from idp.store.models import utcnow

log = logging.getLogger(__name__)

ACTOR = "scheduler"
LEASE_NAME = "sp_metadata_refresh"
LEASE_SECONDS = 300.0

_started: set[tuple[int, str, str]] = set()
_started_lock = threading.Lock()


class MetadataRefresher:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        registry: SpRegistry,
        audit: AuditTrail,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        """``now`` decides what is due and times the lease; tests pass a clock they can move."""
        self._settings = settings
        self._db = db
        self._now = now
        self._service = SpService(settings, db, registry, audit)
        self._lease = Lease(db, LEASE_NAME, ttl_seconds=LEASE_SECONDS, now=now)
        self._stop = threading.Event()

    def tick(self) -> list[RefreshResult] | None:
        """Refresh what is due; None when nothing was due or another process holds the lease."""
        now = self._now()
        if not UrlSources(self._db).due(now):
            return None  # the common case costs one indexed query and no write
        try:
            with self._lease.held():
                return self._service.refresh_due(actor=ACTOR, now=now)
        except LeaseHeld:
            return None

    def run(self) -> None:
        while not self._stop.wait(self._settings.metadata.refresh_poll):
            try:
                self.tick()
            except Exception:  # a database blip must not end the thread for the life of the worker
                log.exception("the metadata refresh round failed; trying again in the next round")

    def stop(self) -> None:
        self._stop.set()


def start_refresher(settings: Settings, db: Database, registry: SpRegistry, audit: AuditTrail) -> bool:
    """Start the refresh thread once per process and database (gunicorn forks workers, so the process id is
    part of the key); False when ``refresh_poll`` is 0 or it already runs."""
    if settings.metadata.refresh_poll <= 0:
        return False
    key = (os.getpid(), settings.database_url, str(settings.metadata.dir))
    with _started_lock:
        if key in _started:
            return False
        _started.add(key)
    refresher = MetadataRefresher(settings, db, registry, audit)
    threading.Thread(target=refresher.run, name="metadata-refresh", daemon=True).start()
    return True
