"""The durable outbox: provisioning a sign-in could not finish, retried by a worker until it succeeds.

One row per person (a newer spec replaces the older one). A worker claims rows with a lease: a plain
``UPDATE ... WHERE state = 'pending' AND the lease is free or expired`` carrying the worker's own token,
then re-reads what it won, so SQLite and PostgreSQL decide the race the same way and no row is worked
by two live workers. A worker that dies after claiming (before or after the provider call) leaves a
lease that expires; the next worker repeats the work with ``ensure_mailbox``, which finds a mailbox
the dead worker created and does not create a second: exactly once in effect.

A row is *superseded* when the local record was written after the row was queued (the sync or a later
sign-in provisioned AD's newer state): then the worker marks it done without a provider call, so an old
spec never overwrites a newer one and a mailbox the sync froze since is not thawed by a stale row.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from idp.audit import AuditTrail
from idp.provisioning.provider import MailboxSpec, Provider, ProviderError, Rejected
from idp.provisioning.reconcile import ensure_mailbox
from idp.provisioning.records import ProvisioningRecord, ProvisioningRecords, fingerprint
from idp.settings import ProvisioningSettings
from idp.store.db import Database, rowcount
from idp.store.models import OutboxRow, utcnow

log = logging.getLogger(__name__)

FIRST_BACKOFF = 30.0
"""Seconds before the first retry; each further failure doubles it, up to the configured maximum."""


def spec_to_json(spec: MailboxSpec) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(spec).items()}


def spec_from_json(data: dict[str, Any]) -> MailboxSpec:
    return MailboxSpec(**{**data, "department": tuple(data.get("department") or ())})


def worker_token() -> str:
    """A lease owner name unique to this process and call: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class OutboxItem:
    id: int
    guid: str
    username: str
    spec: MailboxSpec
    state: str
    version: int
    attempts: int
    enqueued_at: datetime
    next_attempt_at: datetime
    last_error: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None


def _item(row: OutboxRow) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        guid=row.guid,
        username=row.username,
        spec=spec_from_json(row.spec),
        state=row.state,
        version=row.version,
        attempts=row.attempts,
        enqueued_at=_aware(row.enqueued_at) or utcnow(),
        next_attempt_at=_aware(row.next_attempt_at) or utcnow(),
        last_error=row.last_error,
        lease_owner=row.lease_owner,
        lease_expires_at=_aware(row.lease_expires_at),
    )


class Outbox:
    """The outbox table. Every call is its own short transaction, so it is safe from any thread."""

    def __init__(
        self,
        db: Database,
        *,
        lease_seconds: float = 120.0,
        max_backoff: float = 3600.0,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        """``now`` is the clock of due times and leases; tests pass one they can move."""
        self._db = db
        self.lease_seconds = lease_seconds
        self.max_backoff = max_backoff
        self._now = now

    def enqueue(self, guid: str, username: str, spec: MailboxSpec, error: str) -> None:
        """Queue ``spec`` for this person, replacing whatever older spec was queued; due now."""
        now = self._now()
        values = {
            "username": username,
            "spec": spec_to_json(spec),
            "fingerprint": fingerprint(spec),
            "enqueued_at": now,
            "next_attempt_at": now,
            "last_error": error[:4000],
            "state": "pending",
        }
        for _ in range(2):
            with self._db.session() as s:
                replaced = rowcount(
                    s.execute(
                        update(OutboxRow).where(OutboxRow.guid == guid).values(version=OutboxRow.version + 1, **values)
                    )
                )
            if replaced:
                return
            try:
                with self._db.session() as s:
                    s.add(OutboxRow(guid=guid, version=1, attempts=0, **values))
                return
            except IntegrityError:
                continue  # another worker process queued this person a moment ago: replace its row
        raise RuntimeError(f"could not queue provisioning for {username}")

    def pending(self, guid: str) -> OutboxItem | None:
        with self._db.session() as s:
            row = s.scalar(select(OutboxRow).where(OutboxRow.guid == guid, OutboxRow.state == "pending"))
            return _item(row) if row else None

    def items(self, *, failed_only: bool = False) -> list[OutboxItem]:
        """Every row not yet done; with ``failed_only``, those that failed at least once or were given up."""
        q = select(OutboxRow).where(OutboxRow.state != "done")
        if failed_only:
            q = q.where(OutboxRow.last_error.is_not(None))
        with self._db.session() as s:
            return [_item(r) for r in s.scalars(q.order_by(OutboxRow.next_attempt_at, OutboxRow.id))]

    def claim(self, owner: str, limit: int = 20, *, ids: Collection[int] | None = None) -> list[OutboxItem]:
        """Take up to ``limit`` due rows (of ``ids`` only, when given) for ``owner``; the database decides who
        wins each row."""
        now = self._now()
        free = or_(OutboxRow.lease_expires_at.is_(None), OutboxRow.lease_expires_at < now)
        due: tuple[ColumnElement[bool], ...] = (OutboxRow.state == "pending", OutboxRow.next_attempt_at <= now, free)
        if ids is not None:
            due = (*due, OutboxRow.id.in_(list(ids)))
        with self._db.session() as s:
            candidates = list(
                s.scalars(select(OutboxRow.id).where(*due).order_by(OutboxRow.next_attempt_at).limit(limit))
            )
        won: list[int] = []
        expires = now + timedelta(seconds=self.lease_seconds)
        for row_id in candidates:
            with self._db.session() as s:
                taken = rowcount(
                    s.execute(
                        update(OutboxRow)
                        .where(OutboxRow.id == row_id, *due)
                        .values(lease_owner=owner, lease_expires_at=expires, attempts=OutboxRow.attempts + 1)
                    )
                )
            if taken:
                won.append(row_id)
        if not won:
            return []
        with self._db.session() as s:
            rows = s.scalars(select(OutboxRow).where(OutboxRow.id.in_(won), OutboxRow.lease_owner == owner))
            return [_item(r) for r in rows]

    def complete(self, item: OutboxItem, owner: str) -> bool:
        """Done, unless a newer spec was queued meanwhile: then the row stays pending, due now."""
        with self._db.session() as s:
            done = rowcount(
                s.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == item.id, OutboxRow.lease_owner == owner, OutboxRow.version == item.version)
                    .values(state="done", last_error=None, lease_owner=None, lease_expires_at=None)
                )
            )
            if not done:
                s.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == item.id, OutboxRow.lease_owner == owner)
                    .values(lease_owner=None, lease_expires_at=None, next_attempt_at=self._now())
                )
        return bool(done)

    def retry_later(self, item: OutboxItem, owner: str, error: str) -> datetime:
        """Failed this time: back off (doubling, with a little jitter so a fleet does not retry in step)."""
        now = self._now()
        wait = min(FIRST_BACKOFF * 2 ** max(item.attempts - 1, 0), self.max_backoff)
        when = now + timedelta(seconds=wait * random.uniform(0.9, 1.1))  # noqa: S311 - jitter, not a secret
        self._release(item, owner, next_attempt_at=when, last_error=error[:4000])
        return when

    def give_up(self, item: OutboxItem, owner: str, error: str) -> None:
        """The provider refused the data itself: retrying will not help until an admin looks."""
        self._release(item, owner, state="failed", last_error=error[:4000])

    def requeue(self, ids: Iterable[int] | None = None) -> int:
        """Make failed (or all not-done, when ``ids`` is None) rows due now; returns how many."""
        q = update(OutboxRow).where(OutboxRow.state != "done")
        if ids is not None:
            q = q.where(OutboxRow.id.in_(list(ids)))
        with self._db.session() as s:
            return rowcount(s.execute(q.values(state="pending", next_attempt_at=self._now(), attempts=0)))

    def drop(self, row_id: int) -> OutboxItem | None:
        """Remove a row an admin gave up on (the caller records who and why in the audit trail). None when
        the row is done or gone, or a worker is working it right now."""
        now = self._now()
        free = or_(OutboxRow.lease_expires_at.is_(None), OutboxRow.lease_expires_at < now)
        with self._db.session() as s:
            row = s.get(OutboxRow, row_id)
            if row is None or row.state == "done":
                return None
            item = _item(row)
        with self._db.session() as s:
            # Only the version read above: a newer spec queued meanwhile is not what the admin chose to drop.
            mine = (OutboxRow.id == row_id, OutboxRow.version == item.version, OutboxRow.state != "done", free)
            gone = rowcount(s.execute(delete(OutboxRow).where(*mine)))
        return item if gone else None

    def _release(self, item: OutboxItem, owner: str, **values: Any) -> None:
        with self._db.session() as s:
            s.execute(
                update(OutboxRow)
                .where(OutboxRow.id == item.id, OutboxRow.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None, **values)
            )


def bring_in_line(
    provider: Provider,
    records: ProvisioningRecords,
    guid: str,
    username: str,
    spec: MailboxSpec,
    *,
    record: ProvisioningRecord | None,
    thaw_frozen_before: datetime | None = None,
) -> str:
    """Make the person's mailbox match ``spec`` and record it; return what was done, for the audit trail.

    The person is enabled in AD (they signed in), so a mailbox the sync froze is thawed, mirroring the
    sync's rule; one an admin froze by hand (frozen, but not by us) stays frozen. ``thaw_frozen_before``
    limits that to freezes older than the sign-in that asked (the outbox may run much later).
    """
    result = ensure_mailbox(provider, spec)
    mailbox = result.mailbox
    action: str = result.action  # grows into a sentence for the audit trail below
    frozen_by_us = record is not None and record.frozen
    thaw = frozen_by_us
    if thaw and thaw_frozen_before is not None and record is not None and record.frozen_at is not None:
        thaw = record.frozen_at <= thaw_frozen_before
    if mailbox.frozen and thaw:
        mailbox = provider.unfreeze(mailbox.id)
        action = "unfrozen" if action == "unchanged" else f"{action}, unfrozen"
    records.succeeded(
        guid,
        username=username,
        email=mailbox.email,
        mailbox_id=mailbox.id,
        spec=spec,
        frozen=mailbox.frozen and frozen_by_us,
    )
    if result.changes:
        action += " " + json.dumps(
            {k: list(v) if isinstance(v, tuple) else v for k, v in result.changes.items()}, ensure_ascii=False
        )
    return action


@dataclass
class WorkerReport:
    done: int = 0
    superseded: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def handled(self) -> int:
        return self.done + self.superseded + self.retried + self.failed

    def summary(self) -> str:
        return (
            f"outbox: {self.done} done, {self.superseded} already provisioned since, "
            f"{self.retried} to retry later, {self.failed} given up"
        )


class OutboxWorker:
    """Claims due rows and brings each person's mailbox in line; one person's failure never stops the rest.

    The provider is made on first need (``make_provider``), so an empty outbox costs one query."""

    def __init__(
        self,
        outbox: Outbox,
        records: ProvisioningRecords,
        audit: AuditTrail,
        make_provider: Callable[[], Provider],
        owner: str | None = None,
    ) -> None:
        self._outbox = outbox
        self._records = records
        self._audit = audit
        self._make_provider = make_provider
        self._provider: Provider | None = None
        self.owner = owner or worker_token()

    def run_once(self, limit: int = 50, *, ids: Collection[int] | None = None) -> WorkerReport:
        """Work every row due now (of ``ids`` only, when given; in batches of ``limit``) and return the tally."""
        report = WorkerReport()
        while batch := self._outbox.claim(self.owner, limit, ids=ids):
            for item in batch:
                self._work(item, report)
        return report

    def close(self) -> None:
        if self._provider is not None:
            self._provider.close()
            self._provider = None

    def _work(self, item: OutboxItem, report: WorkerReport) -> None:
        record = self._records.get(item.guid)
        if record is not None and not record.failed and record.updated_at > item.enqueued_at:
            if self._outbox.complete(item, self.owner):
                report.superseded += 1
                self._audit.record(
                    "provision",
                    "success",
                    reason="outbox",
                    username=item.username,
                    detail="superseded: provisioned since it was queued",
                )
            return
        try:
            if self._provider is None:
                self._provider = self._make_provider()
            detail = bring_in_line(
                self._provider,
                self._records,
                item.guid,
                item.username,
                item.spec,
                record=record,
                thaw_frozen_before=item.enqueued_at,
            )
        except Exception as exc:  # whatever one person's trouble is, the others still get their turn
            if not isinstance(exc, ProviderError):
                log.exception("outbox row %d (%s) failed unexpectedly", item.id, item.username)
            error = f"{getattr(exc, 'reason', type(exc).__name__)}: {exc}"
            if isinstance(exc, Rejected):
                self._outbox.give_up(item, self.owner, error)
                report.failed += 1
                self._audit.record(
                    "provision", "failure", reason="outbox", username=item.username, detail=f"given up: {error}"
                )
            else:
                when = self._outbox.retry_later(item, self.owner, error)
                report.retried += 1
                self._audit.record(
                    "provision",
                    "failure",
                    reason="outbox",
                    username=item.username,
                    detail=f"{error}; next try at {when:%H:%M:%S} UTC",
                )
            return
        self._outbox.complete(item, self.owner)
        report.done += 1
        self._audit.record("provision", "success", reason="outbox", username=item.username, detail=detail)


def drain(settings: ProvisioningSettings, db: Database, provider: Provider) -> WorkerReport:
    """Work every due outbox row with an open provider client (``idp sync`` does this first)."""
    outbox = Outbox(db, lease_seconds=settings.outbox_lease_seconds, max_backoff=settings.outbox_max_backoff)
    return OutboxWorker(outbox, ProvisioningRecords(db), AuditTrail(db), lambda: provider).run_once()
