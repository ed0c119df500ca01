"""The scheduled sync: make every mailbox in scope match AD. First a plan, then (unless it is a dry run)
its application.

The plan compares three things: the people AD lists in scope, the mailboxes the provider holds, and our
records of what we provisioned. It yields create (new in AD), update (only the changed fields), freeze
(disabled or expired in AD, deleted, or no longer in scope), unfreeze (active again, for mailboxes we
froze) and, only when enabled and after a grace period, delete. Mailboxes we never provisioned and whose
address no one in scope has (shared mailboxes, the admin's own) are never touched.

Who is in scope by default: people who can sign in. Built-in and service accounts (eligibility.py in the
directory) are skipped, with the reason; a person AD gives no address (idp.mail_address) is listed as
"cannot provision", never sent. A person is matched to their mailbox by the objectGUID in our record, so a
rename (new ``mail`` or ``sAMAccountName``) updates the same mailbox and never makes a second one.

``--incremental`` lists only people whose uSNChanged passed the high-water mark of the last complete run
(and those whose accountExpires has passed since), reads the Deleted Objects container for deletions, and
asks the provider only about those whose fingerprint differs from the record: a steady state costs a few
small LDAP searches and no provider call. A membership change touches only the group's uSNChanged, so
when any group changed and the scope depends on groups, the whole scope is listed again (still without
provider calls for people whose record matches).

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
from idp.directory.errors import DirectoryError
from idp.directory.listing import DirectoryListing, ListedPerson, Scope, Watermark
from idp.provisioning.group_sync import GroupAction, GroupInSync, plan_groups
from idp.provisioning.mapping import PersonNotProvisionable, spec_from_person
from idp.provisioning.provider import Conflict, Mailbox, MailboxSpec, Provider, ProviderError, changed_fields
from idp.provisioning.reconcile import ensure_mailbox
from idp.provisioning.records import GroupRecords, ProvisioningRecord, ProvisioningRecords, Watermarks, fingerprint
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


@dataclass(frozen=True)
class Skipped:
    """An account the sync leaves alone, and why: a built-in or service account, or someone inactive in AD
    who has no mailbox to freeze."""

    guid: str
    username: str
    dn: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"username": self.username, "dn": self.dn, "reason": self.reason}


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
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the admin should know about the run as a whole (a part of AD it could not read, ...)."""
    group_actions: list[GroupAction] = field(default_factory=list)
    """Writes to mail groups, carried out after the mailboxes (their members) are in place."""
    group_in_sync: list[GroupInSync] = field(default_factory=list)

    @property
    def writes(self) -> list[Action]:
        return [a for a in self.actions if a.kind in WRITE_KINDS]

    @property
    def all_writes(self) -> list[Action | GroupAction]:
        """Every write, mailboxes first; what a progress bar counts."""
        return [*self.writes, *self.group_actions]

    @property
    def cannot_provision(self) -> list[Action]:
        """People in scope AD gives no mail address; the reason names the missing attribute."""
        return [a for a in self.actions if a.kind == "cannot_provision"]

    @property
    def freezes(self) -> int:
        return sum(1 for a in self.actions if a.kind in ("freeze", "delete"))

    @property
    def freeze_share(self) -> float:
        return self.freezes / max(self.active_mailboxes, 1)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys((*WRITE_KINDS, "cannot_provision"), 0)
        for action in self.actions:
            counts[action.kind] += 1
        for group_action in self.group_actions:
            counts[group_action.kind] = counts.get(group_action.kind, 0) + 1
        return {**counts, "unchanged": self.unchanged, "skipped": len(self.skipped)}

    def to_json(self) -> dict[str, Any]:
        return {
            "incremental": self.incremental,
            "counts": self.counts(),
            "active_mailboxes": self.active_mailboxes,
            "freeze_share": round(self.freeze_share, 4),
            "actions": [a.to_json() for a in self.actions if a.kind != "cannot_provision"],
            "groups": [a.to_json() for a in self.group_actions],
            "cannot_provision": [a.to_json() for a in self.cannot_provision],
            "skipped": [s.to_json() for s in self.skipped],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Outcome:
    action: Action | GroupAction
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
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self._listing = listing
        self._provider = provider
        self._records = ProvisioningRecords(db)
        self._group_records = GroupRecords(db)
        self._watermarks = Watermarks(db)
        self._audit = audit or AuditTrail(db)
        self._clock = clock
        self._scope = Scope(tuple(settings.scope_base_dns), settings.scope_group_dn, settings.no_mailbox_group)

    # -- planning ---------------------------------------------------------------------------------

    def plan(self, *, incremental: bool = False, only_failed: bool = False, now: datetime | None = None) -> Plan:
        """What a run would do now. Reads AD and the provider; writes nothing."""
        now = now or self._clock()
        # Read before listing: whatever changes while we list has a larger USN and is seen next time.
        watermark = self._listing.watermark()
        records = self._records.all()
        since = self._watermarks.get(watermark.dc) if incremental else None
        if incremental and since is None:
            log.info("no high-water mark for %s yet: this run is a full sync", watermark.dc)
        only = {guid for guid, r in records.items() if r.failed} if only_failed else None
        notes: list[str] = []

        leavers: dict[str, str]  # guid -> why, for records of people no longer listed in scope
        groups_changed = True
        if since is None:
            people = self._listing.people(self._scope)
            full = _ListedMailboxes(self._provider.list_all())
            mailboxes: _Mailboxes = full
            listed: _ListedMailboxes | None = full
            in_scope = {str(p.person.guid) for p in people}
            leavers = {guid: "out of scope" for guid in records if guid not in in_scope}
        else:
            groups_changed = bool(self._listing.groups_changed(since))
            people, leavers = self._changed_people(since, records, groups_changed, notes)
            mailboxes, listed = _AskedMailboxes(self._provider), None
        if only is not None:
            people = [p for p in people if str(p.person.guid) in only]
            leavers = {g: why for g, why in leavers.items() if g in only}

        planner = _Planner(self.settings, records, mailboxes, now, trust_records=since is not None)
        for listed_person in people:
            planner.person(listed_person)
        for guid, why in leavers.items():
            planner.leaver(records[guid], why)
        if since is not None and only is None:
            # A frozen mailbox whose person AD no longer shows us is deleted on time by incremental runs too.
            seen = {str(p.person.guid) for p in people} | set(leavers)
            for record in records.values():
                if record.guid not in seen and planner.delete_due(record):
                    planner.leaver(record, "frozen")
        if listed is not None:
            active = planner.active_managed
        else:
            active = sum(1 for r in records.values() if r.mailbox_id and not r.frozen)
        group_actions: list[GroupAction] = []
        group_in_sync: list[GroupInSync] = []
        # Mail groups change when a group did or when a member's mailbox did; a quiet run asks nothing.
        if only is None and (groups_changed or any(a.kind in WRITE_KINDS for a in planner.actions)):
            group_actions, group_in_sync = self._plan_groups(planner.addresses, notes)
        return Plan(
            actions=planner.actions,
            in_sync=planner.in_sync,
            unchanged=planner.unchanged,
            active_mailboxes=active,
            incremental=since is not None,
            watermark=watermark,
            complete=only is None,
            skipped=planner.skipped,
            notes=notes,
            group_actions=group_actions,
            group_in_sync=group_in_sync,
        )

    def _plan_groups(
        self, addresses: Mapping[str, str], notes: list[str]
    ) -> tuple[list[GroupAction], list[GroupInSync]]:
        ad_groups = self._listing.mail_groups(self._scope)
        records = self._group_records.all()
        if not ad_groups and not records:
            return [], []
        if not self._provider.supports_groups:
            notes.append(
                f"the mail provider has no mail groups: {len(ad_groups)} mail-enabled AD group(s) are not synced"
            )
            return [], []
        return plan_groups(ad_groups, self._provider.list_groups(), records, addresses)

    def _changed_people(
        self, since: int, records: Mapping[str, ProvisioningRecord], groups_changed: bool, notes: list[str]
    ) -> tuple[list[ListedPerson], dict[str, str]]:
        """An incremental run's people (changed since the high-water mark) and leavers (guid -> why)."""
        scope_by_group = bool(self._scope.group_dn or self._scope.no_mailbox_group_dn)
        if scope_by_group and groups_changed:
            # Someone may have joined or left a group of the scope, which changed no person's uSNChanged.
            people = self._listing.people(self._scope)
            in_scope = {str(p.person.guid) for p in people}
            leavers = {guid: "out of scope" for guid in records if guid not in in_scope}
        else:
            people = self._listing.people(self._scope, changed_after=since)
            in_scope = {str(p.person.guid) for p in people}
            changed = {str(guid) for guid in self._listing.changed_anywhere(since)}
            leavers = {guid: "out of scope" for guid in changed - in_scope if guid in records}
        try:
            deleted = self._listing.deleted(since)
        except DirectoryError as exc:
            notes.append(f"deletions not read ({exc.detail or exc}); the next full sync freezes deleted people")
        else:
            leavers.update({str(g): "deleted in AD" for g in deleted if str(g) in records})
        return people, leavers

    def brake_refusal(self, plan: Plan) -> str | None:
        """Why the safety brake stops this plan (it freezes or deletes too large a share), or None."""
        share = self.settings.freeze_brake_share
        if not plan.freezes or plan.freeze_share <= share:
            return None
        return (
            f"the plan freezes {plan.freezes} of {plan.active_mailboxes} active mailboxes "
            f"({plan.freeze_share:.0%}), more than the {share:.0%} allowed; check the scope and AD, "
            "then run again with --force if this is intended"
        )

    # -- applying ---------------------------------------------------------------------------------

    def apply(self, plan: Plan, *, force: bool = False, on_done: Callable[[Outcome], None] | None = None) -> SyncReport:
        """Carry out the plan; one person's failure is recorded and reported, never stops the others."""
        reason = self.brake_refusal(plan)
        if reason is not None and not force:
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
        for group in plan.group_in_sync:
            self._group_records.remember(group.guid, group.email, group.group_id)
        # Deletes first: a group whose address moved is deleted at the old one before its record is rewritten.
        for group_action in sorted(plan.group_actions, key=lambda a: a.kind != "group_delete"):
            outcome = self._execute_group(group_action)
            outcomes.append(outcome)
            if on_done is not None:
                on_done(outcome)
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

    def _execute_group(self, action: GroupAction) -> Outcome:
        try:
            if action.kind == "group_delete" and action.group_id:
                self._provider.delete_group(action.group_id)
                self._group_records.forget(action.guid)
                detail = action.reason
            elif action.spec is not None:
                if action.kind == "group_update" and action.group_id:
                    group = self._provider.update_group(action.group_id, action.spec)
                else:
                    group = self._provider.create_group(action.spec)
                self._group_records.remember(action.guid, group.email, group.id)
                detail = _describe({"members": action.spec.members, "name": action.spec.name})
            else:
                raise ValueError(f"cannot carry out {action.kind} for {action.email}: the plan lacks what it needs")
        except Exception as exc:  # one group's trouble must not stop the others
            if not isinstance(exc, ProviderError):
                log.exception("%s of %s failed unexpectedly", action.kind, action.email)
            error = f"{getattr(exc, 'reason', type(exc).__name__)}: {exc}"
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
        self._records = records
        self._mailboxes = mailboxes
        self._now = now
        self._trust_records = trust_records
        self.actions: list[Action] = []
        self.in_sync: list[InSync] = []
        self.skipped: list[Skipped] = []
        self.unchanged = 0
        self.active_managed = 0
        self.addresses = {guid: r.email for guid, r in records.items() if r.mailbox_id and not r.frozen}
        """The active mailbox of each person after this run, by objectGUID: what mail groups are made of."""

    def person(self, listed: ListedPerson) -> None:
        person, guid = listed.person, str(listed.person.guid)
        record = self._records.get(guid)
        self.addresses.pop(guid, None)
        if listed.excluded is not None:
            if record is not None:
                self.leaver(record, listed.excluded)  # a mailbox we made before the rule (or the group) said no
            else:
                self.skipped.append(Skipped(guid, person.username, person.dn, listed.excluded))
            return
        try:
            spec = spec_from_person(person, self._settings)
        except PersonNotProvisionable as exc:
            if listed.inactive is not None and (record is None or record.mailbox_id is None):
                self.skipped.append(Skipped(guid, person.username, person.dn, listed.inactive))
            else:
                email = record.email if record else ""
                self.actions.append(Action("cannot_provision", guid, person.username, email, str(exc)))
            return
        if listed.inactive is None:
            self.addresses[guid] = spec.email
        if self._trust_records and record is not None and _record_matches(record, spec, listed):
            # Touched in AD (a password change, a logon) but nothing a mailbox shows: no provider call.
            self.unchanged += 1
            return
        # Our record first (by objectGUID): after a rename the new address may not exist yet, or be another's.
        mailbox = self._mailboxes.by_record(record) if record is not None and record.mailbox_id else None
        if mailbox is None:
            mailbox = self._mailboxes.by_email(spec.email)
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
        person = listed.person
        username = person.username
        if listed.inactive is not None:
            if mailbox is None:
                self.skipped.append(Skipped(guid, username, person.dn, listed.inactive))  # never gets a mailbox
            elif not mailbox.frozen:
                self.actions.append(Action("freeze", guid, username, mailbox.email, listed.inactive, spec, mailbox.id))
            elif self.delete_due(record):
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
                Action("unfreeze", guid, username, mailbox.email, "active again in AD", spec, mailbox.id, changes)
            )
        elif changes:
            reason = "address changed in AD (rename)" if "email" in changes else "changed in AD"
            self.actions.append(Action("update", guid, username, mailbox.email, reason, spec, mailbox.id, changes))
        else:
            self._matches(guid, username, mailbox, spec, record, frozen_by_us=False)

    def leaver(self, record: ProvisioningRecord, why: str) -> None:
        """Someone we provisioned who no longer gets a mailbox (moved, removed from the group, deleted,
        now excluded by the default scope): freeze, then delete after the grace period when enabled."""
        self.addresses.pop(record.guid, None)
        mailbox = self._mailboxes.by_record(record)
        if mailbox is None:
            return
        if not mailbox.frozen:
            self.active_managed += 1
            self.actions.append(Action("freeze", record.guid, record.username, mailbox.email, why, None, mailbox.id))
        elif self.delete_due(record):
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
        stale = record is None or record.failed or record.mailbox_id != mailbox.id or record.username != username
        if stale or record is None or record.frozen != frozen_by_us or record.fingerprint != fingerprint(spec):
            self.in_sync.append(InSync(guid, username, mailbox, spec, frozen_by_us))

    def delete_due(self, record: ProvisioningRecord | None) -> bool:
        if not self._settings.delete_enabled or record is None or not record.frozen or record.frozen_at is None:
            return False
        return self._now - record.frozen_at >= timedelta(days=self._settings.delete_grace_days)

    def _delete_reason(self) -> str:
        return f"frozen for more than {self._settings.delete_grace_days} days"


def _record_matches(record: ProvisioningRecord, spec: MailboxSpec, listed: ListedPerson) -> bool:
    return (
        not record.failed
        and record.mailbox_id is not None
        and record.fingerprint == fingerprint(spec)
        and record.frozen != listed.enabled
        and record.username == listed.person.username
    )


def _spec_fields(spec: MailboxSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.__dict__.items() if v not in (None, ())}


def _describe(changes: Mapping[str, Any]) -> str:
    """Changed fields for the audit trail: names and new values (nothing secret is in a MailboxSpec)."""
    return json.dumps(
        {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()}, ensure_ascii=False, sort_keys=True
    )
