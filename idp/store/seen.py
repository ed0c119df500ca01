"""SAML request IDs already answered, shared by every worker and node through the database.

A request is answered once: the first INSERT of its (issuer, ID) wins, any later one hits the primary key.
That is one statement, atomic on SQLite and PostgreSQL alike, so two workers handed the same request at the
same moment cannot both answer it. Rows outlive the request's acceptable age and are then useless; they are
deleted now and then by whoever inserts, so the table stays as small as the traffic of one request lifetime.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from idp.store.db import Database
from idp.store.models import SeenRequestRow

_INSERT = insert(SeenRequestRow)

MAX_ID_LENGTH = 256
"""The widest request ID the table holds; longer ones are refused before they get here."""


class SeenRequests:
    def __init__(self, db: Database, prune_every: timedelta = timedelta(minutes=1)) -> None:
        self._db = db
        self._prune_every = prune_every
        self._pruned_at: datetime | None = None

    def first_use(self, issuer: str, request_id: str, *, now: datetime, keep_until: datetime) -> bool:
        """Record the ID; False when it was recorded before (a replay)."""
        self._prune(now)
        try:
            # A bare connection, not an ORM session: this runs for every request, and the session's unit of
            # work cost more than the insert.
            with self._db.engine.begin() as conn:
                conn.execute(_INSERT, {"issuer": issuer, "request_id": request_id, "expires_at": keep_until})
        except IntegrityError:
            return False
        return True

    def _prune(self, now: datetime) -> None:
        # One indexed DELETE per process per interval: cheap, and no separate job to schedule or forget.
        if self._pruned_at is not None and now - self._pruned_at < self._prune_every:
            return
        self._pruned_at = now
        with self._db.engine.begin() as conn:
            conn.execute(delete(SeenRequestRow).where(SeenRequestRow.expires_at < now))
