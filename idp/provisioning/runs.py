"""Sync runs as the console shows them, and the console's own runs.

Every run that holds the sync lease (`idp sync`, and the console's "Sync now" and "Dry run") is written to
the run history (idp.store.sync_runs) by a :class:`RecordedRun`: when it starts, while it applies, and how it
ended. The console's runs take the same lease as `idp sync`, in the request, so a second run is refused at
once with who holds the lease and until when, never queued; the work itself then goes on in a background
thread, so a long sync does not hold the page.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import threading
import time
from types import TracebackType
from typing import Any, Literal

from idp.audit import AuditTrail
from idp.directory.listing import DirectoryListing
from idp.provisioning.factory import ProvisioningNotConfigured, make_provider
from idp.provisioning.outbox import WorkerReport
from idp.provisioning.outbox import drain as drain_outbox
from idp.provisioning.sync import MailboxSync, Outcome, Plan, SyncReport
from idp.settings import Settings
from idp.store.db import Database
from idp.store.lease import Lease, LeaseHeld
from idp.store.sync_runs import RunPhase, RunResult, SyncRuns

log = logging.getLogger(__name__)

LISTED_ACTIONS = 200
"""Actions a run keeps for the console: a dry run's plan, a run's failures. The CLI's --json has them all."""
PROGRESS_EVERY = 1.0
"""Seconds between two progress writes: one per provider call would double the database's work."""


class RecordedRun:
    """One run in the history, from its start (the constructor) to its end. Use it as a context manager
    around the run's work: leaving it by an exception ends the run as an error, with the exception's words
    (the exception goes on up)."""

    def __init__(
        self, db: Database, *, started_by: str, origin: Literal["console", "cli"], dry_run: bool, lease_holder: str
    ) -> None:
        self._runs = SyncRuns(db)
        self.id = self._runs.start(started_by=started_by, origin=origin, dry_run=dry_run, lease_holder=lease_holder)
        self._ended = False
        self._lock = threading.Lock()
        self._done = self._failed = 0
        self._written = time.monotonic()

    @classmethod
    def of_command(cls, db: Database, lease: Lease) -> RecordedRun:
        """The history row of an `idp sync` run that holds ``lease``, started by whoever runs the command."""
        return cls(db, started_by=_os_user(), origin="cli", dry_run=False, lease_holder=lease.holder)

    def __enter__(self) -> RecordedRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ended:
            return
        if exc is not None:
            self._end("error", note=str(exc) or type(exc).__name__)
        else:
            self._end("error", note="the run ended without a result")

    def phase(self, phase: RunPhase) -> None:
        self._runs.progress(self.id, phase=phase)

    def outbox(self, report: WorkerReport) -> None:
        """What working the outbox before the plan did."""
        self._runs.progress(self.id, outbox=report.summary())

    def planned(self, plan: Plan) -> None:
        self._runs.progress(self.id, phase="applying", **_plan_figures(plan))

    def progress(self, outcome: Outcome) -> None:
        """One write done (MailboxSync.apply's ``on_done``, called from its worker threads)."""
        with self._lock:
            self._done += 1
            self._failed += 0 if outcome.ok else 1
            now = time.monotonic()
            if now - self._written < PROGRESS_EVERY:
                return
            self._written, done, failed = now, self._done, self._failed
        self._runs.progress(self.id, done=done, failed=failed)

    def finished(self, report: SyncReport) -> None:
        """A run that applied its plan, or that the safety brake stopped."""
        status: RunResult = "brake" if report.refused else ("failures" if report.failed else "ok")
        self._end(
            status,
            applied=report.applied,
            failed=len(report.failed),
            note=_note(report.plan, report.refused),
            brake=report.refused is not None,
            actions=[{**o.action.to_json(), "error": o.error} for o in report.failed[:LISTED_ACTIONS]],
            **_plan_figures(report.plan),
        )

    def dry_run_finished(self, plan: Plan, brake_refusal: str | None) -> None:
        """A dry run: the plan, and why the safety brake would stop it (MailboxSync.brake_refusal), if it would."""
        self._end(
            "ok" if brake_refusal is None else "brake",
            brake=brake_refusal is not None,
            note=_note(plan, brake_refusal),
            actions=[
                *(a.to_json() for a in plan.actions),
                *({"action": "skipped", "username": s.username, "email": "", "reason": s.reason} for s in plan.skipped),
            ][:LISTED_ACTIONS],
            **_plan_figures(plan),
        )

    def _end(self, status: RunResult, **values: Any) -> None:
        self._ended = True
        self._runs.finish(self.id, status=status, **values)


def start_console_run(settings: Settings, db: Database, audit: AuditTrail, *, admin: str, dry_run: bool) -> int:
    """Take the sync lease and run in a background thread; returns the run's id at once.

    Raises LeaseHeld, naming the holder and until when, when another run holds the lease (a second run is
    refused, not queued), and ProvisioningNotConfigured without a [provisioning] section. A dry run takes
    the lease too, so that what it shows is not a plan another run is applying at that moment."""
    if settings.provisioning is None:
        raise ProvisioningNotConfigured("no [provisioning] section in the configuration")
    lease = Lease(db, ttl_seconds=settings.provisioning.lease_seconds)
    if not lease.try_acquire():
        raise LeaseHeld(lease.held_message())
    try:
        run = RecordedRun(db, started_by=admin, origin="console", dry_run=dry_run, lease_holder=lease.holder)
        worker = threading.Thread(
            target=_work, args=(settings, db, audit, lease, run, dry_run), name=f"console-sync-{run.id}", daemon=True
        )
        worker.start()
    except BaseException:
        lease.release()
        raise
    return run.id


def _work(settings: Settings, db: Database, audit: AuditTrail, lease: Lease, run: RecordedRun, dry_run: bool) -> None:
    try:
        # held() renews the lease we took in the request (same holder) and releases it at the end.
        with lease.held(), run:
            _sync(settings, db, audit, run, dry_run)
    except Exception:  # a background thread has no caller to tell: the run's row says what went wrong
        log.exception("sync run %d (started in the console) failed", run.id)


def _sync(settings: Settings, db: Database, audit: AuditTrail, run: RecordedRun, dry_run: bool) -> None:
    """The steps of `idp sync` (or of `idp sync --dry-run`), reporting to the run's row as they go."""
    provisioning = settings.provisioning
    assert provisioning is not None  # start_console_run refused otherwise
    provider = make_provider(provisioning)
    with DirectoryListing(settings.ldap) as listing, contextlib.closing(provider):
        sync = MailboxSync(provisioning, listing, provider, db, audit)
        if not dry_run:
            # Sign-ins' queued work first, as `idp sync` does: the plan then sees those mailboxes as they are.
            run.phase("outbox")
            run.outbox(drain_outbox(provisioning, db, provider))
        run.phase("planning")
        plan = sync.plan()
        if dry_run:
            run.dry_run_finished(plan, sync.brake_refusal(plan))
            return
        run.planned(plan)
        run.finished(sync.apply(plan, on_done=run.progress))


def _plan_figures(plan: Plan) -> dict[str, Any]:
    return {
        "counts": {**plan.counts(), "freezes": plan.freezes, "active_mailboxes": plan.active_mailboxes},
        "planned_writes": len(plan.writes),
        "incremental": plan.incremental,
    }


def _note(plan: Plan, refusal: str | None) -> str | None:
    """What the admin should read about the run as a whole: the plan's notes, and the brake's refusal."""
    return "\n".join([*plan.notes, *([refusal] if refusal else [])]) or None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown user"
