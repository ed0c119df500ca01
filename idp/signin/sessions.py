"""The index of live SSO sessions: who is signed in, since when, from where, to which SPs; and revocation.

The sessions themselves live in flask-session (files or Redis) under random ids nothing can enumerate, so
every node writes this table beside them (idp.web.sso_session) and every node reads it: a revoke on one
node ends the session on all of them at its next use (RecheckPerson reads one row by primary key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from idp.audit import AuditTrail
from idp.store.db import Database, rowcount
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


class SsoSessionIndex:
    def __init__(self, db: Database, audit: AuditTrail, *, now: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._audit = audit
        self._now = now

    def save(self, live: LiveSession) -> None:
        """Write the session's row as it is now; a revoked row stays revoked."""
        values = {
            "username": live.username.casefold(),
            "started_at": live.started_at,
            "checked_at": live.checked_at,
            "expires_at": live.expires_at,
            "client_ip": live.client_ip,
            "sps": list(live.sps),
        }
        with self._db.session() as s:
            found = s.execute(
                update(SsoSessionRow).where(SsoSessionRow.session_index == live.session_index).values(**values)
            )
            if rowcount(found):
                return
        try:
            with self._db.session() as s:
                s.add(SsoSessionRow(session_index=live.session_index, **values))
        except IntegrityError:
            pass  # the same browser's other request (another worker) wrote it a moment ago: same values

    def started(self, live: LiveSession) -> None:
        """A new session; also forgets the rows of sessions that ran out without a logout, so the table
        stays as small as the number of people signed in."""
        with self._db.session() as s:
            s.execute(delete(SsoSessionRow).where(SsoSessionRow.expires_at < self._now()))
        self.save(live)

    def ended(self, session_index: str) -> None:
        with self._db.session() as s:
            s.execute(delete(SsoSessionRow).where(SsoSessionRow.session_index == session_index))

    def revoked(self, session_index: str) -> bool:
        with self._db.session() as s:
            at = s.scalar(select(SsoSessionRow.revoked_at).where(SsoSessionRow.session_index == session_index))
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


def _aware(at: datetime) -> datetime:
    # SQLite hands back naive datetimes (which are UTC); PostgreSQL aware ones.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
