"""/admin/provisioning: the sync (the last run and the next, a short history, "Sync now" and "Dry run"), the
outbox of provisioning sign-ins could not finish (retry now, drop with a reason) and one person's story.

A console run takes the same database lease as `idp sync` and works in the background
(idp.provisioning.runs); the page shows how far it got whenever it is loaded, and reloads itself while a run
is going. Retry now is the outbox worker's own code on that one row. Every action writes an audit row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from idp.audit import AuditRecord
from idp.codes import AdminActionReason, AuditEvent, AuditResult
from idp.provisioning.factory import ProvisioningNotConfigured, make_provider
from idp.provisioning.outbox import Outbox, OutboxItem, OutboxWorker
from idp.provisioning.records import ProvisioningRecord, ProvisioningRecords
from idp.provisioning.runs import start_console_run
from idp.settings import ProvisioningSettings
from idp.store.lease import Lease, LeaseHeld, LeaseHolder
from idp.store.sync_runs import SyncRun, SyncRuns
from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.i18n import translate
from idp.web.services import services

SCHEDULE = (
    "*/15 * * * *  idp sync --incremental",
    "30 2 * * *    idp sync",
)
"""The schedule the README recommends: nothing inside the product runs the sync on its own."""
OUTBOX_SHOWN = 200
_MAX_QUERY = 320
_MAX_REASON = 1000
_PERSON_EVENTS = 100


_PROVIDER_CODE = re.compile(
    r"^(?:(?P<reason>provider_\w+|\w+Error): )?(?:(?P<code>[A-Z][\w.]{0,60}): )?(?P<message>.+)$", re.S
)


@bp.app_template_filter("provider_error")
def provider_error(stored: str | None) -> str:
    """A stored provisioning error as one sentence: the outbox and the records keep "<our reason>: <the
    provider's code>: <its message>", a run's note "<the provider's code>: <its message>". The reason is shown
    in words elsewhere on the page, the provider's code after its message, so the page does not read as a
    chain of codes."""
    if not stored:
        return ""
    match = _PROVIDER_CODE.match(stored.strip())
    if match is None:
        return stored
    message, code = match["message"].strip(), match["code"]
    return f"{message} ({code})" if code else message


@bp.app_template_filter("provider_error_reason")
def provider_error_reason(stored: str | None) -> str:
    """The reason code a stored provisioning error starts with ("provider_unavailable"), for data-code."""
    match = _PROVIDER_CODE.match((stored or "").strip())
    return (match["reason"] or "") if match is not None else ""


@dataclass(frozen=True)
class RunView:
    """A run as the page shows it: a row without an end whose holder no longer holds the lease was
    interrupted (its process ended), not running."""

    run: SyncRun
    state: str
    """running | interrupted | ok | failures | brake | error"""

    @property
    def badge(self) -> str:
        return {"ok": "ok", "running": "warn", "failures": "warn"}.get(self.state, "bad")


@dataclass(frozen=True)
class PersonHistory:
    query: str
    records: list[ProvisioningRecord]
    queued: list[OutboxItem]
    events: list[AuditRecord]
    """The person's ``provision`` rows of the audit trail, newest first: what was sent, and by which path."""

    @property
    def found(self) -> bool:
        return bool(self.records or self.queued or self.events)


@bp.get("/provisioning")
def provisioning() -> str:
    return _render(shown_id=_number(request.args.get("run", "")), refresh=True)


@bp.post("/provisioning/sync")
def provisioning_sync() -> Response | tuple[str, int]:
    svc = services()
    admin = current_admin().username
    dry_run = request.form.get("mode") == "dry_run"
    try:
        run_id = start_console_run(svc.settings, svc.db, svc.audit, admin=admin, dry_run=dry_run)
    except ProvisioningNotConfigured:
        return _refused_run(dry_run, "provisioning_not_configured", translate("admin.provisioning.not_configured"))
    except LeaseHeld as exc:
        return _refused_run(dry_run, "lease_held", _lease_message(), note=str(exc))
    svc.audit.record_change(
        "admin_sync_started", actor=admin, after={"run": run_id, "dry_run": dry_run}, ip=request.remote_addr
    )
    flash(translate("admin.provisioning.dry_run_started" if dry_run else "admin.provisioning.sync_started"), "message")
    return redirect(url_for("admin.provisioning", run=run_id))


@bp.post("/provisioning/outbox/retry")
def provisioning_retry() -> Response:
    svc = services()
    admin = current_admin().username
    settings = svc.settings.provisioning
    row_id = _number(request.form.get("id", ""))
    if settings is None:
        return _refused(
            "admin_outbox_retry", "provisioning_not_configured", translate("admin.provisioning.not_configured")
        )
    outbox = _outbox(settings)
    before = _queued(outbox, row_id)
    if before is None:
        return _refused(
            "admin_outbox_retry",
            "not_found",
            translate("admin.provisioning.row_gone", row=str(row_id or "")),
            row=row_id,
        )
    outbox.requeue([before.id])
    worker = OutboxWorker(outbox, ProvisioningRecords(svc.db), svc.audit, lambda: make_provider(settings))
    try:
        report = worker.run_once(ids=[before.id])
    finally:
        worker.close()
    after = _queued(outbox, before.id)
    result: AuditResult
    if report.done or report.superseded:
        result, words = "success", translate("admin.provisioning.retried", user=before.username)
    elif not report.handled:
        result, words = "refused", translate("admin.provisioning.retry_busy", user=before.username)
    else:
        error = provider_error(after.last_error if after else "")
        result, words = "failure", translate("admin.provisioning.retry_failed", user=before.username, error=error)
    svc.audit.record_change(
        "admin_outbox_retry",
        actor=admin,
        result=result,
        before=_summary(before),
        after=_summary(after) if after else {"state": "done"},
        ip=request.remote_addr,
    )
    flash(words, "message" if result == "success" else "error")
    return redirect(url_for("admin.provisioning") + "#outbox-panel")


@bp.post("/provisioning/outbox/drop")
def provisioning_drop() -> Response | tuple[str, int]:
    svc = services()
    admin = current_admin().username
    settings = svc.settings.provisioning
    row_id = _number(request.form.get("id", ""))
    reason = " ".join(request.form.get("reason", "").split())
    if settings is None:
        return _refused(
            "admin_outbox_drop", "provisioning_not_configured", translate("admin.provisioning.not_configured")
        )
    if not reason or len(reason) > _MAX_REASON:
        svc.audit.record_change(
            "admin_outbox_drop", actor=admin, result="refused", reason="bad_input", after={"row": row_id},
            note="no reason given" if not reason else "reason too long", ip=request.remote_addr,
        )  # fmt: skip
        problem = translate("admin.provisioning.reason_required", limit=str(_MAX_REASON))
        return _render(drop_problem=problem, drop_row=row_id), 400
    dropped = _outbox(settings).drop(row_id) if row_id is not None else None
    if dropped is None:
        return _refused(
            "admin_outbox_drop",
            "not_found",
            translate("admin.provisioning.row_gone", row=str(row_id or "")),
            row=row_id,
        )
    svc.audit.record_change(
        "admin_outbox_drop", actor=admin, before=_summary(dropped), note=reason, ip=request.remote_addr
    )
    # The person's own story (the page's history, `idp audit`) tells that this work will not happen, and why.
    svc.audit.record(
        "provision",
        "refused",
        reason="outbox_dropped",
        username=dropped.username,
        ip=request.remote_addr,
        detail=f"dropped from the outbox by {admin}: {reason}",
    )
    flash(translate("admin.provisioning.dropped", user=dropped.username), "message")
    return redirect(url_for("admin.provisioning") + "#outbox-panel")


@bp.post("/provisioning/person")
def provisioning_person() -> tuple[str, int] | str:
    svc = services()
    admin = current_admin().username
    query = request.form.get("q", "").strip()
    if not query or len(query) > _MAX_QUERY:
        svc.audit.record_change(
            "admin_provisioning_lookup", actor=admin, result="refused", reason="bad_input",
            after={"query": query[:_MAX_QUERY]}, ip=request.remote_addr,
        )  # fmt: skip
        return _render(person_query=query, person_problem=translate("admin.provisioning.person_required")), 400
    history = _history(query)
    svc.audit.record_change(
        "admin_provisioning_lookup",
        actor=admin,
        reason="found" if history.found else "not_found",
        after={
            "query": query,
            "records": len(history.records),
            "queued": len(history.queued),
            "events": len(history.events),
        },
        ip=request.remote_addr,
    )
    return _render(person_query=query, person=history)


# -- helpers -----------------------------------------------------------------------------------------------


def _render(
    *,
    shown_id: int | None = None,
    refresh: bool = False,
    sync_problem: str | None = None,
    drop_problem: str | None = None,
    drop_row: int | None = None,
    person_query: str = "",
    person_problem: str | None = None,
    person: PersonHistory | None = None,
) -> str:
    svc = services()
    settings = svc.settings.provisioning
    lease = _lease().current()
    runs = [_view(r, lease) for r in SyncRuns(svc.db).recent()]
    last = next((v for v in runs if not v.run.dry_run and not v.run.running), None)
    active = [v for v in runs if v.state == "running"]
    shown = next((v for v in runs if v.run.id == shown_id), None)
    if shown is None and shown_id is not None:
        run = SyncRuns(svc.db).get(shown_id)
        shown = _view(run, lease) if run else None
    queued = _outbox(settings).items() if settings else []
    return render_template(
        "admin/provisioning.html",
        configured=settings is not None,
        provider=settings.provider if settings else None,
        lease=lease,
        runs=runs,
        last=last,
        active=active,
        shown=shown,
        refresh=refresh and bool(active),
        schedule="\n".join(SCHEDULE),
        queued=queued[:OUTBOX_SHOWN],
        queued_total=len(queued),
        sync_problem=sync_problem,
        drop_problem=drop_problem,
        drop_row=drop_row,
        person_query=person_query,
        person_problem=person_problem,
        person=person,
        duration=_duration,
        started_by=_started_by,
    )


def _refused_run(dry_run: bool, reason: AdminActionReason, words: str, note: str | None = None) -> tuple[str, int]:
    svc = services()
    svc.audit.record_change(
        "admin_sync_started",
        actor=current_admin().username,
        result="refused",
        reason=reason,
        after={"dry_run": dry_run},
        note=note,
        ip=request.remote_addr,
    )
    return _render(sync_problem=words), 409


def _refused(event: AuditEvent, reason: AdminActionReason, words: str, *, row: int | None = None) -> Response:
    """An outbox action that could not be done: audited, said in a flash above the outbox."""
    svc = services()
    svc.audit.record_change(
        event,
        actor=current_admin().username,
        result="refused",
        reason=reason,
        after={"row": row},
        ip=request.remote_addr,
    )
    flash(words, "error")
    return redirect(url_for("admin.provisioning") + "#outbox-panel")


def _lease() -> Lease:
    svc = services()
    settings = svc.settings.provisioning
    # The lease `idp sync` takes (its default name); the ttl matters only to a holder, which this one never is.
    return Lease(svc.db, ttl_seconds=settings.lease_seconds if settings else 300.0)


def _lease_message() -> str:
    holder = _lease().current()
    if holder is None:
        return translate("admin.provisioning.lease_just_held")
    return translate(
        "admin.provisioning.lease_held",
        holder=holder.holder,
        until=f"{holder.expires_at:%Y-%m-%d %H:%M:%S}",
    )


def _outbox(settings: ProvisioningSettings) -> Outbox:
    return Outbox(services().db, lease_seconds=settings.outbox_lease_seconds, max_backoff=settings.outbox_max_backoff)


def _queued(outbox: Outbox, row_id: int | None) -> OutboxItem | None:
    return next((i for i in outbox.items() if i.id == row_id), None) if row_id is not None else None


def _summary(item: OutboxItem) -> dict[str, object]:
    """An outbox row for the audit trail: whose, which address, how it stood (a spec holds nothing secret)."""
    return {
        "row": item.id,
        "user": item.username,
        "email": item.spec.email,
        "state": item.state,
        "attempts": item.attempts,
        "error": item.last_error,
    }


def _view(run: SyncRun, lease: LeaseHolder | None) -> RunView:
    if not run.running:
        return RunView(run, run.status)
    alive = lease is not None and lease.holder == run.lease_holder
    return RunView(run, "running" if alive else "interrupted")


def _history(query: str) -> PersonHistory:
    """Everything provisioning knows of the person a username or an address names."""
    svc = services()
    wanted = query.casefold()
    records = [
        r for r in ProvisioningRecords(svc.db).all().values() if wanted in (r.username.casefold(), r.email.casefold())
    ]
    settings = svc.settings.provisioning
    queued = [
        i
        for i in (_outbox(settings).items() if settings else [])
        if wanted in (i.username.casefold(), i.spec.email.casefold())
    ]
    usernames = {r.username for r in records} | {i.username for i in queued}
    if "@" not in query:
        usernames.add(query)
    events = {e.id: e for name in usernames for e in svc.audit.recent(_PERSON_EVENTS, username=name, event="provision")}
    return PersonHistory(query, records, queued, sorted(events.values(), key=lambda e: e.id, reverse=True))


def _number(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() and len(text) < 18 else None


def _duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    seconds = value.total_seconds()
    if seconds < 60:
        return translate("admin.provisioning.seconds", n=f"{seconds:.1f}")
    minutes, rest = divmod(int(seconds), 60)
    return translate("admin.provisioning.minutes", m=str(minutes), s=f"{rest:02d}")


def _started_by(run: SyncRun) -> str:
    if run.origin == "cli":
        return translate("admin.provisioning.by_cli", user=run.started_by)
    return run.started_by
