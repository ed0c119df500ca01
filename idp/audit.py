"""The audit trail: one row for every terminal state of a sign-in, SAML request or admin action.

Callers pass what happened, never what was typed: there is no field a password could go into, and
``detail`` is for our own words (an SP's error text, a changed setting), not request bodies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select

from idp import codes
from idp.logs import REQUEST_ID
from idp.store.db import Database, Write, rowcount
from idp.store.group_commit import GroupCommit
from idp.store.models import FAILED_PASSWORD_CHECK, AuditEvent

log = logging.getLogger("idp.audit")

PURGE_BATCH = 5000
"""Rows deleted per transaction by purge(): each batch holds SQLite's write lock for milliseconds, so sign-ins
writing their own rows meanwhile wait that long, not for the whole purge."""

# One compiled statement, executed on a bare connection: an ORM session (identity map, unit of work, flush)
# cost a sixth of an SSO response's CPU for a row nobody reads back.
# (Declarative types __table__ as any FromClause; a class mapped to one table has that Table.)
_INSERT = insert(cast(Table, AuditEvent.__table__))


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    """Aware, UTC."""
    event: str
    result: str
    reason: str | None
    username: str | None
    sp_entity_id: str | None
    client_ip: str | None
    detail: str | None
    request_id: str | None = None
    """The request that wrote the row; None for rows written by a command or before request ids existed."""

    @classmethod
    def from_row(cls, r: Any) -> AuditRecord:
        """From an audit_events row (ORM object or Core row)."""
        # SQLite hands back naive datetimes (which are UTC); PostgreSQL aware ones.
        at = r.at.replace(tzinfo=UTC) if r.at.tzinfo is None else r.at.astimezone(UTC)
        return cls(
            r.id, at, r.event, r.result, r.reason, r.username, r.sp_entity_id, r.client_ip, r.detail, r.request_id
        )


class AuditTrail:
    def __init__(self, db: Database) -> None:
        self._db = db
        # Every sign-in writes a row: concurrent ones in this process share a transaction.
        self._writer = GroupCommit(db.engine, _INSERT)

    def record(
        self,
        event: codes.AuditEvent,
        result: codes.AuditResult,
        *,
        reason: codes.AuditReason | None = None,
        username: str | None = None,
        sp: str | None = None,
        ip: str | None = None,
        detail: str | None = None,
        together_with: Sequence[Write] = (),
    ) -> None:
        """``together_with``: rows committed in the same transaction as this one (idp.signin.pipeline)."""
        row = {
            "event": event,
            "result": result,
            "reason": reason,
            "username": (username or None) and username[:256],
            "sp_entity_id": sp and sp[:1024],
            "client_ip": ip,
            "detail": detail and detail[:4000],
            # Set while a web request is served (idp.web.request_log), so the id a person reads to the help
            # desk from an error page finds this row.
            "request_id": REQUEST_ID.get(),
        }
        # The audit row is also a log line so that a log shipper sees the same story.
        log.info("%s %s reason=%s user=%s sp=%s ip=%s", event, result, reason, username, sp, ip)
        if together_with:
            self._db.write([*together_with, (_INSERT, row)])
        else:
            self._writer.write(row)

    def record_change(
        self,
        event: codes.AuditEvent,
        *,
        actor: str,
        sp: str | None = None,
        before: object = None,
        after: object = None,
        result: codes.AuditResult = "success",
        reason: codes.AuditReason | None = None,
        note: str | None = None,
        ip: str | None = None,
    ) -> None:
        """An admin action (console or CLI): who did it, and the state before and after, as JSON in ``detail``.
        Callers pass settings and policies, never key material or passwords."""
        detail = json.dumps(
            {"before": before, "after": after, "note": note}, default=str, ensure_ascii=False, sort_keys=True
        )
        self.record(event, result, reason=reason, username=actor, sp=sp, ip=ip, detail=detail)

    def count_password_failures(self, since: datetime, reasons: tuple[codes.SignInReason, ...], *, ip: str) -> int:
        """Passwords refused since a time for one client address, at the login form and as the current password
        of the change form alike: a guess is a guess wherever it is typed."""
        with self._db.engine.connect() as conn:
            return int(conn.scalar(_FAILURES_FROM_ADDRESS, {"since": since, "reasons": list(reasons), "ip": ip}) or 0)

    def last_success_by_sp(self) -> dict[str, datetime]:
        """When each SP last received a successful sign-in (for the console's list of SPs)."""
        q = (
            select(AuditEvent.sp_entity_id, func.max(AuditEvent.at))
            .where(AuditEvent.event == "signin", AuditEvent.result == "success", AuditEvent.sp_entity_id.is_not(None))
            .group_by(AuditEvent.sp_entity_id)
        )
        with self._db.engine.connect() as conn:
            # The query already leaves out rows without an SP; the test is for the type checker.
            return {sp: at for sp, at in conn.execute(q) if sp is not None}

    def purge(self, before: datetime, *, batch: int = PURGE_BATCH) -> int:
        """Delete the rows written before ``before`` (aware), oldest first, a batch per transaction; return how
        many went. The caller records the purge itself (it is an admin action)."""
        deleted = 0
        while True:
            oldest = select(AuditEvent.id).where(AuditEvent.at < before).order_by(AuditEvent.id).limit(batch)
            with self._db.engine.begin() as conn:
                count = rowcount(conn.execute(delete(AuditEvent).where(AuditEvent.id.in_(oldest.scalar_subquery()))))
            deleted += count
            if count < batch:
                return deleted

    def recent(
        self, limit: int = 100, *, username: str | None = None, event: codes.AuditEvent | None = None
    ) -> list[AuditRecord]:
        q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if username:
            q = q.where(AuditEvent.username == username)
        if event:
            q = q.where(AuditEvent.event == event)
        with self._db.session() as s:
            return [AuditRecord.from_row(r) for r in s.scalars(q)]


_FAILURES_FROM_ADDRESS = (
    # Built once, with bound parameters: building and cache-keying the statement on every call cost more than
    # SQLite running it. The index ix_audit_fail_ip_at covers it (FAILED_PASSWORD_CHECK, repeated as is).
    select(func.count())
    .select_from(AuditEvent)
    .where(
        FAILED_PASSWORD_CHECK,
        AuditEvent.client_ip == bindparam("ip"),
        AuditEvent.reason.in_(bindparam("reasons", expanding=True)),
        AuditEvent.at >= bindparam("since"),
    )
)
