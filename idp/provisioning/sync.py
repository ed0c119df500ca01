"""The scheduled sync: make every mailbox in scope match AD. First a plan, then (unless it is a dry run)
its application.

The plan compares three things: the people AD lists in scope, the mailboxes the provider holds, and our
records of what we provisioned. It yields create (new in AD), update (only the changed fields), freeze
(disabled in AD, or no longer in scope), unfreeze (enabled again, for mailboxes we froze) and, only when
enabled and after a grace period, delete. Mailboxes we never provisioned and whose address no one in
scope has (shared mailboxes, the admin's own) are never touched.

``--incremental`` lists only people whose uSNChanged passed the high-water mark of the last complete run
and asks the provider only about those whose fingerprint differs from the record: a steady state costs
one small LDAP search and no provider call. Group membership changes do not change a user's uSNChanged
(the ``member`` attribute lives on the group), so a group-scoped setup should also run a full sync daily.

The safety brake: a plan that would freeze (or delete) more than ``freeze_brake_share`` of the active
mailboxes is refused unless forced. A wrong OU in the settings, or an AD answer that came back short,
must not freeze the company.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from idp.audit import AuditTrail
from idp.codes import ProvisioningAction
from idp.directory.listing import DirectoryListing, ListedPerson, Scope, Watermark
from idp.provisioning.mapping import PersonNotProvisionable, spec_from_person
from idp.provisioning.provider import Conflict, Mailbox, MailboxSpec, Provider, ProviderError, changed_fields
from idp.provisioning.reconcile import ensure_mailbox
from idp.provisioning.records import ProvisioningRecord, ProvisioningRecords, Watermarks, fingerprint
from idp.settings import ProvisioningSettings
from idp.store.db import Database
from idp.store.models import utcnow

log = logging.getLogger(__name__)

ActionKind = ProvisioningAction  # the audit trail records each as a provision row's reason
WRITE_KINDS: tuple[ActionKind, ...] = ("create", "update", "freeze", "unfreeze", "delete")
EXIT_OK, EXIT_FAILURES, EXIT_REFUSED = 0, 1, 2


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    guid: str
    username: str
    email: str
    reason: str
    """Why, in words for the admin: "new in AD", "disabled in AD", "out of scope", ..."""
    spec: MailboxSpec | None = None
    mailbox_id: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    """Fields an update (or an unfreeze) sends, by MailboxSpec name."""

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.kind,
            "username": self.username,
            "email": self.email,
            "reason": self.reason,
            "changes": {k: list(v) if isinstance(v, tuple) else v for k, v in self.changes.items()},
        }


@dataclass(frozen=True)
class InSync:
    """A mailbox that already matches AD; only our record may need writing (a first run, an adoption)."""

    guid: str
    username: str
    mailbox: Mailbox
    spec: MailboxSpec
    frozen_by_us: bool


@dataclass
class Plan:
    actions: list[Action]
    in_sync: list[InSync]
    """Matching mailboxes whose record is missing or stale; the records are written on apply."""
    unchanged: int
    active_mailboxes: int
    """Unfrozen mailboxes the sync manages: the brake's denominator."""
    incremental: bool
    watermark: Watermark | None
    complete: bool = True
    """False for a partial run (--retry-failed): it must not move the high-water mark."""

    @property
    def writes(self) -> list[Action]:
        return [a for a in self.actions if a.kind in WRITE_KINDS]

    @property
    def freezes(self) -> int:
        return sum(1 for a in self.actions if a.kind in ("freeze", "delete"))

    @property
    def freeze_share(self) -> float:
        return self.freezes / max(self.active_mailboxes, 1)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys((*WRITE_KINDS, "skip"), 0)
        for action in self.actions:
            counts[action.kind] += 1
        return {**counts, "unchanged": self.unchanged}

    def to_json(self) -> dict[str, Any]:
        return {
            "incremental": self.incremental,
            "counts": self.counts(),
            "active_mailboxes": self.active_mailboxes,
            "freeze_share": round(self.freeze_share, 4),
            "actions": [a.to_json() for a in self.actions],
        }


@dataclass(frozen=True)
class Outcome:
    action: Action
    ok: bool
    error: str | None = None


@dataclass
class SyncReport:
    plan: Plan
    outcomes: list[Outcome]
    refused: str | None = None
    """Why nothing was applied (the brake), or None."""

    @property
    def applied(self) -> int:
        return sum(1 for o in self.outcomes if o.ok)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def exit_code(self) -> int:
        if self.refused:
            return EXIT_REFUSED
        return EXIT_FAILURES if self.failed else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            **self.plan.to_json(),
            "refused": self.refused,
            "applied": self.applied,
            "failed": [{**o.action.to_json(), "error": o.error} for o in self.failed],
        }


class _Mailboxes(Protocol):
    def by_email(self, email: str) -> Mailbox | None: ...

    def by_record(self, record: ProvisioningRecord) -> Mailbox | None: ...


class _ListedMailboxes:
    """Every mailbox, read once with list_all (a full sync)."""

    def __init__(self, mailboxes: Iterable[Mailbox]) -> None:
        self.all = list(mailboxes)
        self._by_email = {m.email.lower(): m for m in self.all}
        self._by_id = {m.id: m for m in self.all}

    def by_email(self, email: str) -> Mailbox | None:
        return self._by_email.get(email.lower())

    def by_record(self, record: ProvisioningRecord) -> Mailbox | None:
        found = self._by_id.get(record.mailbox_id) if record.mailbox_id else None
        return found or self.by_email(record.email)


class _AskedMailboxes:
    """Mailboxes asked for one by one (an incremental sync touches few people)."""

    def __init__(self, provider: Provider) -> None:
        self._provider = provider

    def by_email(self, email: str) -> Mailbox | None:
        return self._provider.find(email)

    def by_record(self, record: ProvisioningRecord) -> Mailbox | None:
        return self._provider.find(record.email)


class MailboxSync:
    """Plans and applies one sync run. The caller owns (and closes) the listing, provider and database."""

    def __init__(
        self,
        settings: ProvisioningSettings,
        listing: DirectoryListing,
        provider: Provider,
        db: Database,
        audit: AuditTrail | None = None,
    ) -> None:
        self.settings = settings
        self._listing = listing
        self._provider = provider
        self._records = ProvisioningRecords(db)
        self._watermarks = Watermarks(db)
        self._audit = audit or AuditTrail(db)
        self._scope = Scope(tuple(settings.scope_base_dns), settings.scope_group_dn)

    # -- planning ---------------------------------------------------------------------------------

    def plan(self, *, incremental: bool = False, only_failed: bool = False, now: datetime | None = None) -> Plan:
        """What a run would do now. Reads AD and the provider; writes nothing."""
        now = now or utcnow()
        # Read before listing: whatever changes while we list has a larger USN and is seen next time.
        watermark = self._listing.watermark()
        records = self._records.all()
        since = self._watermarks.get(watermark.dc) if incremental else None
        if incremental and since is None:
            log.info("no high-water mark for %s yet: this run is a full sync", watermark.dc)
        only = {guid for guid, r in records.items() if r.failed} if only_failed else None

        if since is None:
            people = self._listing.people(self._scope)
            full = _ListedMailboxes(self._provider.list_all())
            mailboxes: _Mailboxes = full
            listed: _ListedMailboxes | None = full
            in_scope = {str(p.person.guid) for p in people}
            leavers = [r for guid, r in records.items() if guid not in in_scope]
        else:
            people = self._listing.people(self._scope, changed_after=since)
            in_scope = {str(p.person.guid) for p in people}
            changed = {str(p.person.guid) for p in self._listing.changed_anywhere(since)}
            leavers = [records[g] for g in changed - in_scope if g in records]
            mailboxes, listed = _AskedMailboxes(self._provider), None
        if only is not None:
            people = [p for p in people if str(p.person.guid) in only]
            leavers = [r for r in leavers if r.guid in only]

        planner = _Planner(self.settings, records, mailboxes, now, trust_records=since is not None)
        for listed_person in people:
            planner.person(listed_person)
        for record in leavers:
            planner.leaver(record)
        if listed is not None:
            active = planner.active_managed
        else:
            active = sum(1 for r in records.values() if r.mailbox_id and not r.frozen)
        return Plan(
            actions=planner.actions,
            in_sync=planner.in_sync,
            unchanged=planner.unchanged,
            active_mailboxes=active,
            incremental=since is not None,
            watermark=watermark,
            complete=only is None,
        )

    # -- applying ---------------------------------------------------------------------------------

    def apply(self, plan: Plan, *, force: bool = False, on_done: Callable[[Outcome], None] | None = None) -> SyncReport:
        """Carry out the plan; one person's failure is recorded and reported, never stops the others."""
        share = self.settings.freeze_brake_share
        if plan.freezes and plan.freeze_share > share and not force:
            reason = (
                f"the plan freezes {plan.freezes} of {plan.active_mailboxes} active mailboxes "
                f"({plan.freeze_share:.0%}), more than the {share:.0%} allowed; check the scope and AD, "
                "then run again with --force if this is intended"
            )
            self._audit.record("provision", "refused", reason="safety_brake", detail=reason)
            return SyncReport(plan, [], refused=reason)
        for item in plan.in_sync:
            self._records.succeeded(
                item.guid,
                username=item.username,
                email=item.spec.email,
                mailbox_id=item.mailbox.id,
                spec=item.spec,
                frozen=item.frozen_by_us,
            )
        outcomes: list[Outcome] = []

        def run(action: Action) -> Outcome:
            outcome = self._execute(action)
            if on_done is not None:
                on_done(outcome)
            return outcome

        with ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="sync") as pool:
            outcomes = list(pool.map(run, plan.writes))
        report = SyncReport(plan, outcomes)
        if plan.complete and plan.watermark is not None and not report.failed:
            self._watermarks.set(plan.watermark.dc, plan.watermark.usn)
        return report

    def _execute(self, action: Action) -> Outcome:
        try:
            detail = self._write(action)
        except Exception as exc:  # one person's trouble, whatever it is, must not stop the run
            if not isinstance(exc, ProviderError):
                log.exception("%s of %s failed unexpectedly", action.kind, action.username)
            reason = getattr(exc, "reason", type(exc).__name__)
            error = f"{reason}: {exc}"
            self._records.failed_with(
                action.guid, username=action.username, email=action.email, action=action.kind, error=error
            )
            self._audit.record("provision", "failure", reason=action.kind, username=action.username, detail=error)
            return Outcome(action, ok=False, error=error)
        self._audit.record("provision", "success", reason=action.kind, username=action.username, detail=detail)
        return Outcome(action, ok=True)

    def _write(self, action: Action) -> str:
        """Do one action at the provider and record it; return the audit detail."""
        provider, spec = self._provider, action.spec
        if action.kind == "create" and spec is not None:
            try:
                mailbox = provider.create(spec)
                detail = _describe(_spec_fields(spec))
            except Conflict:
                # Someone (a sign-in, another tool) created it since we listed: reconcile instead.
                result = ensure_mailbox(provider, spec)
                mailbox, detail = result.mailbox, "existed; " + _describe(result.changes)
            self._remember(action, mailbox, spec)
            return detail
        if action.kind == "update" and spec is not None and action.mailbox_id:
            mailbox = provider.update(action.mailbox_id, action.changes)
            self._remember(action, mailbox, spec)
            return _describe(action.changes)
        if action.kind == "unfreeze" and spec is not None and action.mailbox_id:
            mailbox = provider.unfreeze(action.mailbox_id)
            if action.changes:
                mailbox = provider.update(action.mailbox_id, action.changes)
            self._remember(action, mailbox, spec)
            return _describe(action.changes)
        if action.kind == "freeze" and action.mailbox_id:
            mailbox = provider.freeze(action.mailbox_id)
            self._remember(action, mailbox, spec or mailbox.spec())
            return action.reason
        if action.kind == "delete" and action.mailbox_id:
            provider.delete(action.mailbox_id)
            self._records.forget(action.guid)
            return action.reason
        raise ValueError(f"cannot carry out {action.kind} for {action.username}: the plan lacks what it needs")

    def _remember(self, action: Action, mailbox: Mailbox, spec: MailboxSpec) -> None:
        # "frozen" in a record means frozen by the sync; a mailbox an admin froze by hand is not ours to thaw.
        self._records.succeeded(
            action.guid,
            username=action.username,
            email=mailbox.email,
            mailbox_id=mailbox.id,
            spec=spec,
            frozen=action.kind == "freeze",
        )


class _Planner:
    """Decides, person by person, what the run has to do."""

    def __init__(
        self,
        settings: ProvisioningSettings,
        records: Mapping[str, ProvisioningRecord],
        mailboxes: _Mailboxes,
        now: datetime,
        *,
        trust_records: bool,
    ) -> None:
        self._settings = settings
        self._department_source, self._mail_domain = settings.mapping
        self._records = records
        self._mailboxes = mailboxes
        self._now = now
        self._trust_records = trust_records
        self.actions: list[Action] = []
        self.in_sync: list[InSync] = []
        self.unchanged = 0
        self.active_managed = 0

    def person(self, listed: ListedPerson) -> None:
        person, guid = listed.person, str(listed.person.guid)
        record = self._records.get(guid)
        try:
            spec = spec_from_person(person, self._department_source, self._mail_domain)
        except PersonNotProvisionable as exc:
            email = record.email if record else ""
            self.actions.append(Action("skip", guid, person.username, email, str(exc)))
            return
        if self._trust_records and record is not None and _record_matches(record, spec, listed.enabled):
            # Touched in AD (a password change, a logon) but nothing a mailbox shows: no provider call.
            self.unchanged += 1
            return
        mailbox = self._mailboxes.by_email(spec.email)
        if mailbox is None and record is not None:
            mailbox = self._mailboxes.by_record(record)  # the address changed in AD: a rename
        if mailbox is not None and not mailbox.frozen:
            self.active_managed += 1
        self._decide(listed, guid, spec, record, mailbox)

    def _decide(
        self,
        listed: ListedPerson,
        guid: str,
        spec: MailboxSpec,
        record: ProvisioningRecord | None,
        mailbox: Mailbox | None,
    ) -> None:
        username = listed.person.username
        if not listed.enabled:
            if mailbox is None:
                self.unchanged += 1  # a disabled account never gets a mailbox
            elif not mailbox.frozen:
                self.actions.append(Action("freeze", guid, username, mailbox.email, "disabled in AD", spec, mailbox.id))
            elif self._delete_due(record):
                self.actions.append(
                    Action("delete", guid, username, mailbox.email, self._delete_reason(), spec, mailbox.id)
                )
            else:
                self._matches(guid, username, mailbox, mailbox.spec(), record, frozen_by_us=True)
            return
        if mailbox is None:
            reason = "mailbox missing" if record is not None and record.mailbox_id else "new in AD"
            self.actions.append(Action("create", guid, username, spec.email, reason, spec))
            return
        changes = changed_fields(mailbox.spec(), spec)
        # Unfreeze only what we froze: a mailbox an admin froze by hand stays frozen.
        if mailbox.frozen and record is not None and record.frozen:
            self.actions.append(
                Action("unfreeze", guid, username, mailbox.email, "enabled again in AD", spec, mailbox.id, changes)
            )
        elif changes:
            self.actions.append(
                Action("update", guid, username, mailbox.email, "changed in AD", spec, mailbox.id, changes)
            )
        else:
            self._matches(guid, username, mailbox, spec, record, frozen_by_us=False)

    def leaver(self, record: ProvisioningRecord) -> None:
        """Someone we provisioned who is no longer in scope (moved, removed from the group, deleted)."""
        mailbox = self._mailboxes.by_record(record)
        if mailbox is None:
            return
        if not mailbox.frozen:
            self.active_managed += 1
            self.actions.append(
                Action("freeze", record.guid, record.username, mailbox.email, "out of scope", None, mailbox.id)
            )
        elif self._delete_due(record):
            self.actions.append(
                Action("delete", record.guid, record.username, mailbox.email, self._delete_reason(), None, mailbox.id)
            )
        else:
            self.unchanged += 1

    def _matches(
        self,
        guid: str,
        username: str,
        mailbox: Mailbox,
        spec: MailboxSpec,
        record: ProvisioningRecord | None,
        *,
        frozen_by_us: bool,
    ) -> None:
        self.unchanged += 1
        stale = record is None or record.failed or record.mailbox_id != mailbox.id
        if stale or record is None or record.frozen != frozen_by_us or record.fingerprint != fingerprint(spec):
            self.in_sync.append(InSync(guid, username, mailbox, spec, frozen_by_us))

    def _delete_due(self, record: ProvisioningRecord | None) -> bool:
        if not self._settings.delete_enabled or record is None or not record.frozen or record.frozen_at is None:
            return False
        return self._now - record.frozen_at >= timedelta(days=self._settings.delete_grace_days)

    def _delete_reason(self) -> str:
        return f"frozen for more than {self._settings.delete_grace_days} days"


def _record_matches(record: ProvisioningRecord, spec: MailboxSpec, enabled: bool) -> bool:
    return (
        not record.failed
        and record.mailbox_id is not None
        and record.fingerprint == fingerprint(spec)
        and record.frozen != enabled
    )


def _spec_fields(spec: MailboxSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.__dict__.items() if v not in (None, ())}


def _describe(changes: Mapping[str, Any]) -> str:
    """Changed fields for the audit trail: names and new values (nothing secret is in a MailboxSpec)."""
    return json.dumps(
        {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()}, ensure_ascii=False, sort_keys=True
    )
