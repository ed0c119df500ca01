"""The index of live SSO sessions: who is signed in, since when, from where, to which SPs; and revocation.

The sessions themselves live in flask-session (files or Redis) under random ids nothing can enumerate, so
every node writes this table beside them (idp.web.sso_session) and every node reads it: a revoke on one
node ends the session on all of them at its next use (RecheckPerson reads one row by primary key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import DateTime, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from idp.audit import AuditTrail
from idp.store.db import Database, Write, rowcount
from idp.store.models import SsoSessionRow, utcnow


@dataclass(frozen=True)
class LiveSession:
    session_index: str
    username: str
    started_at: datetime
    checked_at: datetime
    """When the person was last read from AD."""
    expires_at: datetime
    client_ip: str | None
    sps: tuple[str, ...]


_PRUNE_EVERY = timedelta(seconds=60)
"""Time between two sweeps of expired rows by one process: a sweep per sign-in cost a write each."""
# Built once: the insert runs at every password sign-in and the revocation check at every reused session, and
# building a statement costs more than SQLite takes to run it.
_INSERT = insert(SsoSessionRow)
_REVOKED_AT = select(SsoSessionRow.revoked_at).where(SsoSessionRow.session_index == bindparam("index"))
_PRUNE = delete(SsoSessionRow).where(SsoSessionRow.expires_at < bindparam("now", type_=DateTime(timezone=True)))


class SsoSessionIndex:
    """Rows are read and written with plain Core statements on a bare connection, one transaction each: this
    runs at every sign-in and every reused session, and an ORM session per call cost more than the query."""

    def __init__(self, db: Database, audit: AuditTrail, *, now: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._audit = audit
        self._now = now
        self._next_prune: datetime | None = None

    def save(self, live: LiveSession) -> None:
        """Write the session's row as it is now; a revoked row stays revoked."""
        values = _values(live)
        with self._db.engine.begin() as conn:
            found = conn.execute(
                update(SsoSessionRow).where(SsoSessionRow.session_index == live.session_index).values(**values)
            )
            if rowcount(found):
                return
        self._insert(live.session_index, values)

    def _insert(self, session_index: str, values: dict[str, object]) -> None:
        try:
            with self._db.engine.begin() as conn:
                conn.execute(_INSERT, {"session_index": session_index, **values})
        except IntegrityError:
            pass  # the same browser's other request (another worker) wrote it a moment ago: same values

    def starting(self, live: LiveSession) -> list[Write]:
        """The writes of a new session, for the sign-in to commit with its audit row; now and then they also
        forget the rows of sessions that ran out without a logout, so the table stays as small as the number
        of people signed in."""
        now = self._now()
        writes: list[Write] = []
        if self._next_prune is None or now >= self._next_prune:
            self._next_prune = now + _PRUNE_EVERY
            writes.append((_PRUNE, {"now": now}))
        # A session index is new by construction (random): insert, no update to try first.
        writes.append((_INSERT, {"session_index": live.session_index, **_values(live)}))
        return writes

    def ended(self, session_index: str) -> None:
        with self._db.engine.begin() as conn:
            conn.execute(delete(SsoSessionRow).where(SsoSessionRow.session_index == session_index))

    def revoked(self, session_index: str) -> bool:
        with self._db.engine.connect() as conn:
            at = conn.scalar(_REVOKED_AT, {"index": session_index})
        return at is not None

    def live(self, username: str | None = None) -> list[LiveSession]:
        """Sessions not expired and not revoked, newest first."""
        q = select(SsoSessionRow).where(SsoSessionRow.expires_at > self._now(), SsoSessionRow.revoked_at.is_(None))
        if username is not None:
            q = q.where(SsoSessionRow.username == username.casefold())
        with self._db.session() as s:
            rows = s.scalars(q.order_by(SsoSessionRow.started_at.desc())).all()
        return [
            LiveSession(
                r.session_index,
                r.username,
                _aware(r.started_at),
                _aware(r.checked_at),
                _aware(r.expires_at),
                r.client_ip,
                tuple(r.sps or ()),
            )
            for r in rows
        ]

    def revoke(self, username: str, *, actor: str, ip: str | None = None, session_index: str | None = None) -> int:
        """End ``username``'s live sessions (only the one with ``session_index``, when given) at their next use,
        on every node; one audit row either way. How many were live."""
        username = username.strip().casefold()
        q = update(SsoSessionRow).where(
            SsoSessionRow.username == username,
            SsoSessionRow.revoked_at.is_(None),
            SsoSessionRow.expires_at > self._now(),
        )
        if session_index is not None:
            q = q.where(SsoSessionRow.session_index == session_index)
        with self._db.session() as s:
            count = rowcount(s.execute(q.values(revoked_at=self._now(), revoked_by=actor)))
        self._audit.record_change(
            "session_revoked",
            actor=actor,
            result="success" if count else "refused",
            reason=None if count else "not_found",
            after={"user": username, "session": session_index, "revoked": count},
            ip=ip,
        )
        return count


def _values(live: LiveSession) -> dict[str, object]:
    return {
        "username": live.username.casefold(),
        "started_at": live.started_at,
        "checked_at": live.checked_at,
        "expires_at": live.expires_at,
        "client_ip": live.client_ip,
        "sps": list(live.sps),
    }


def _aware(at: datetime) -> datetime:
    # SQLite hands back naive datetimes (which are UTC); PostgreSQL aware ones.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
