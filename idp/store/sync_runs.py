"""The history of sync runs (table ``sync_runs``): what each run that held the sync lease planned and did.

A run writes its row when it starts, its progress while it applies, and its result when it ends; the
console reads the rows back. Every call is its own short transaction, so a run's worker threads and the
console's page requests may use it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update

from idp.store.db import Database
from idp.store.models import SyncRunRow, utcnow

RunResult = Literal["ok", "failures", "brake", "error"]
"""How a run ended; a row without an end is "running" (or was interrupted)."""
RunPhase = Literal["starting", "outbox", "planning", "applying", "done"]
HISTORY = 15
"""Runs the console lists."""


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SyncRun:
    id: int
    started_at: datetime
    finished_at: datetime | None
    started_by: str
    origin: str
    dry_run: bool
    incremental: bool
    lease_holder: str
    phase: str
    status: str
    counts: dict[str, int]
    planned_writes: int
    done: int
    applied: int
    failed: int
    brake: bool
    outbox: str | None
    note: str | None
    actions: list[dict[str, Any]]

    @property
    def duration(self) -> timedelta | None:
        return self.finished_at - self.started_at if self.finished_at else None

    @property
    def running(self) -> bool:
        return self.finished_at is None


def _run(row: SyncRunRow) -> SyncRun:
    return SyncRun(
        id=row.id,
        started_at=_aware(row.started_at) or utcnow(),
        finished_at=_aware(row.finished_at),
        started_by=row.started_by,
        origin=row.origin,
        dry_run=row.dry_run,
        incremental=row.incremental,
        lease_holder=row.lease_holder,
        phase=row.phase,
        status=row.status,
        counts=dict(row.counts or {}),
        planned_writes=row.planned_writes,
        done=row.done,
        applied=row.applied,
        failed=row.failed,
        brake=row.brake,
        outbox=row.outbox,
        note=row.note,
        actions=list(row.actions or []),
    )


class SyncRuns:
    def __init__(self, db: Database) -> None:
        self._db = db

    def start(self, *, started_by: str, origin: Literal["console", "cli"], dry_run: bool, lease_holder: str) -> int:
        """A new run, running from now; returns its id."""
        row = SyncRunRow(
            started_at=utcnow(),
            started_by=started_by[:256],
            origin=origin,
            dry_run=dry_run,
            lease_holder=lease_holder[:200],
            phase="starting",
            status="running",
        )
        with self._db.session() as s:
            s.add(row)
            s.flush()
            return row.id

    def progress(
        self,
        run_id: int,
        *,
        phase: RunPhase | None = None,
        done: int | None = None,
        failed: int | None = None,
        **planned: Any,
    ) -> None:
        """Where a running run stands. ``planned`` takes what the plan said: counts, planned_writes, incremental,
        brake, outbox."""
        values = {k: v for k, v in {"phase": phase, "done": done, "failed": failed, **planned}.items() if v is not None}
        with self._db.session() as s:
            s.execute(update(SyncRunRow).where(SyncRunRow.id == run_id).values(**values))

    def finish(
        self,
        run_id: int,
        *,
        status: RunResult,
        applied: int = 0,
        failed: int = 0,
        note: str | None = None,
        actions: list[dict[str, Any]] | None = None,
        **planned: Any,
    ) -> None:
        """The run is over: its result, and the plan's figures when ``progress`` was not told them."""
        values = {
            "finished_at": utcnow(),
            "phase": "done",
            "status": status,
            "done": applied + failed,
            "applied": applied,
            "failed": failed,
            "note": note[:4000] if note else None,
            "actions": actions,
            **{k: v for k, v in planned.items() if v is not None},
        }
        with self._db.session() as s:
            s.execute(update(SyncRunRow).where(SyncRunRow.id == run_id).values(**values))

    def get(self, run_id: int) -> SyncRun | None:
        with self._db.session() as s:
            row = s.get(SyncRunRow, run_id)
            return _run(row) if row else None

    def recent(self, limit: int = HISTORY) -> list[SyncRun]:
        """The newest runs first."""
        with self._db.session() as s:
            return [_run(r) for r in s.scalars(select(SyncRunRow).order_by(SyncRunRow.id.desc()).limit(limit))]

    def last_finished(self, *, dry_run: bool) -> SyncRun | None:
        q = (
            select(SyncRunRow)
            .where(SyncRunRow.finished_at.is_not(None), SyncRunRow.dry_run == dry_run)
            .order_by(SyncRunRow.id.desc())
            .limit(1)
        )
        with self._db.session() as s:
            row = s.scalar(q)
            return _run(row) if row else None
