"""One runner at a time across nodes: a lease held in a database row, with an expiry.

Every node runs ``idp sync --every 15m``; the one that takes the lease syncs, the others skip that
round. The holder renews the lease while it works, so a long first sync keeps it, and a node that dies
holding it only blocks the others until the lease expires. It is plain SQL (an INSERT, or an UPDATE
whose WHERE clause only matches an expired lease or our own), so it works the same on SQLite and
PostgreSQL: the database decides who won, never a read-then-write race in Python.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError

from idp.store.db import Database, rowcount
from idp.store.models import SyncLeaseRow, utcnow

log = logging.getLogger(__name__)


class LeaseHeld(Exception):
    """Another runner holds the lease; the message names it and says until when."""


@dataclass(frozen=True)
class LeaseHolder:
    holder: str
    expires_at: datetime
    """Aware, UTC. The holder renews it while it works, so it moves on until the run ends."""


class Lease:
    def __init__(
        self, db: Database, name: str = "sync", ttl_seconds: float = 300.0, *, now: Callable[[], datetime] = utcnow
    ) -> None:
        """``now`` is the clock the expiry is written and judged by; tests pass one they can move."""
        self._db = db
        self.name = name
        self.ttl = ttl_seconds
        self._now = now
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def try_acquire(self) -> bool:
        """Take (or renew) the lease; False when someone else holds an unexpired one."""
        now = self._now()
        expires = now + timedelta(seconds=self.ttl)
        with self._db.session() as s:
            taken = rowcount(
                s.execute(
                    update(SyncLeaseRow)
                    .where(SyncLeaseRow.name == self.name)
                    .where(or_(SyncLeaseRow.holder == self.holder, SyncLeaseRow.expires_at < now))
                    .values(holder=self.holder, expires_at=expires)
                )
            )
        if taken:
            return True
        try:
            with self._db.session() as s:
                s.add(SyncLeaseRow(name=self.name, holder=self.holder, expires_at=expires))
        except IntegrityError:
            return False  # the row exists and is someone else's, unexpired
        return True

    def current_holder(self) -> str | None:
        current = self.current()
        return current.holder if current else None

    def current(self) -> LeaseHolder | None:
        """Who holds the lease now, and until when; None when nobody does (an expired lease is nobody's)."""
        with self._db.session() as s:
            row = s.get(SyncLeaseRow, self.name)
            if row is None:
                return None
            expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
            return LeaseHolder(row.holder, expires) if expires >= self._now() else None

    def held_message(self) -> str:
        """Why this runner cannot take the lease now: who holds it, and until when."""
        current = self.current()
        if current is None:
            return f"another runner held the {self.name} lease a moment ago; try again"
        return (
            f"another runner holds the {self.name} lease ({current.holder}) "
            f"until {current.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )

    def release(self) -> None:
        with self._db.session() as s:
            s.execute(
                delete(SyncLeaseRow).where(SyncLeaseRow.name == self.name).where(SyncLeaseRow.holder == self.holder)
            )

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lease for the block, renewing it in the background; raise LeaseHeld when taken."""
        if not self.try_acquire():
            raise LeaseHeld(self.held_message())
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew_until, args=(stop,), name=f"lease-{self.name}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=10)
            self.release()

    def _renew_until(self, stop: threading.Event) -> None:
        while not stop.wait(self.ttl / 3):
            try:
                if not self.try_acquire():
                    log.error("lost the %s lease to another runner; it expired before we renewed it", self.name)
            except Exception:  # a blip of the database must not kill the renewer; the next try may work
                log.exception("renewing the %s lease failed", self.name)
