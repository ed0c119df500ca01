"""Just-in-time provisioning: at sign-in, make sure the person's mailbox exists and matches AD.

Which sign-ins: every SP's, or only those listed in ``[provisioning] jit_sps``; none when ``jit = false``
or there is no ``[provisioning]`` section. Accounts the sync leaves out (built-in and service accounts,
members of ``no_mailbox_group``) never get a mailbox here either: the sync would freeze it again.

A steady-state sign-in costs one database read and no provider call: the local record's fingerprint of
the last provisioned spec equals the spec AD gives now. Only a first sign-in, a changed attribute, a
mailbox the sync froze (the person is enabled: they just signed in, so we thaw what *we* froze, never a
mailbox an admin froze by hand, the same rule as the sync) or an earlier failure reaches the provider.

Provider calls at sign-in run under a short total budget (``jit_timeout``), on a client with short
timeouts and few retries, so a slow provider cannot hang the login page. On any failure the work goes to
the durable outbox; then ``on_failure = "allow"`` signs the person in anyway and ``"deny"`` refuses
the sign-in (:class:`JitRefused`). While a person's identical spec waits in the outbox, "allow" sign-ins
do not try again: the worker owns it, and an outage does not cost every sign-in the full budget.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from idp.audit import AuditTrail
from idp.person import Person
from idp.provisioning.mapping import PersonNotProvisionable, spec_from_person
from idp.provisioning.outbox import Outbox, bring_in_line
from idp.provisioning.provider import MailboxSpec, Provider
from idp.provisioning.records import ProvisioningRecord, ProvisioningRecords, fingerprint
from idp.settings import ProvisioningSettings
from idp.store.db import Database

log = logging.getLogger(__name__)

JitAction = Literal["unchanged", "provisioned", "queued", "not_provisionable", "not_mailbox_holder"]


class JitRefused(Exception):
    """Provisioning failed at sign-in and the policy is ``on_failure = "deny"``; the message is for the admin."""


@dataclass(frozen=True)
class JitOutcome:
    action: JitAction
    detail: str = ""


def signin_provider_settings(settings: ProvisioningSettings) -> ProvisioningSettings:
    """The provider settings with timeouts and retries cut to fit the sign-in budget."""
    budget = settings.jit_timeout
    section = getattr(settings, settings.provider)
    tight: dict[str, Any] = {
        "connect_timeout": min(section.connect_timeout, budget),
        "read_timeout": min(section.read_timeout, budget),
        "max_attempts": min(section.max_attempts, 2),
        "max_retry_wait": min(section.max_retry_wait, budget / 4),
    }
    if "rate_limit_max_wait" in type(section).model_fields:
        tight["rate_limit_max_wait"] = min(section.rate_limit_max_wait, budget / 2)
    return settings.model_copy(update={settings.provider: section.model_copy(update=tight)})


def _default_provider_factory(settings: ProvisioningSettings) -> Callable[[], Provider]:
    def make() -> Provider:
        # Imported here: the provider clients pull in httpx / scim2, which a sign-in without JIT never needs.
        from idp.provisioning.factory import make_provider

        return make_provider(signin_provider_settings(settings))

    return make


class JitProvisioner:
    """One per process (gunicorn worker); thread-safe."""

    def __init__(
        self,
        settings: ProvisioningSettings,
        db: Database,
        audit: AuditTrail,
        make_provider: Callable[[], Provider] | None = None,
    ) -> None:
        self.settings = settings
        self._records = ProvisioningRecords(db)
        self._outbox = Outbox(db, lease_seconds=settings.outbox_lease_seconds, max_backoff=settings.outbox_max_backoff)
        self._audit = audit
        self._make_provider = make_provider or _default_provider_factory(settings)
        self._provider: Provider | None = None
        self._lock = threading.Lock()
        # Calls run here so that the sign-in can stop waiting at the budget; a late call still finishes
        # and records its result, which the outbox worker then sees as already done.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jit")

    def applies_to(self, sp_entity_id: str) -> bool:
        return self.settings.jit and (not self.settings.jit_sps or sp_entity_id in self.settings.jit_sps)

    def provision(self, person: Person, *, sp: str | None = None, ip: str | None = None) -> JitOutcome:
        """Bring the person's mailbox in line with AD, within the budget; raise JitRefused under "deny"."""
        deny = self.settings.on_failure == "deny"
        # The sync leaves these out and freezes a mailbox they have: making (or thawing) it here would undo
        # that at every sign-in. The same words as the sync's (idp.directory.eligibility).
        why = person.service_account or (
            "in the no-mailbox group" if _in_no_mailbox_group(person, self.settings) else None
        )
        if why is not None:
            return JitOutcome("not_mailbox_holder", why)
        try:
            spec = spec_from_person(person, self.settings)
        except PersonNotProvisionable as exc:
            self._audit.record(
                "provision", "failure", reason="jit", username=person.username, sp=sp, ip=ip, detail=str(exc)
            )
            if deny:
                raise JitRefused(str(exc)) from None
            return JitOutcome("not_provisionable", str(exc))
        guid = str(person.guid)
        record = self._records.get(guid)
        if _steady(record, spec):
            return JitOutcome("unchanged")
        if not deny:
            waiting = self._outbox.pending(guid)
            if waiting is not None and waiting.spec == spec:
                return JitOutcome("queued", "already waiting in the outbox")
        future = self._pool.submit(self._bring_in_line, guid, person.username, spec, record)
        try:
            detail = future.result(timeout=self.settings.jit_timeout)
        except TimeoutError:
            error = f"provider_timeout: no answer within {self.settings.jit_timeout:g} s"
        except Exception as exc:  # any failure of the provider (or its client) takes the allow/deny path
            error = f"{getattr(exc, 'reason', type(exc).__name__)}: {exc}"
        else:
            self._audit.record(
                "provision", "success", reason="jit", username=person.username, sp=sp, ip=ip, detail=detail
            )
            return JitOutcome("provisioned", detail)
        self._outbox.enqueue(guid, person.username, spec, error)
        outcome = "sign-in refused" if deny else "sign-in allowed"
        self._audit.record(
            "provision",
            "failure",
            reason="jit",
            username=person.username,
            sp=sp,
            ip=ip,
            detail=f"{error}; queued in the outbox; {outcome}",
        )
        if deny:
            raise JitRefused(error)
        return JitOutcome("queued", error)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._provider is not None:
                self._provider.close()
                self._provider = None

    def _bring_in_line(self, guid: str, username: str, spec: MailboxSpec, record: ProvisioningRecord | None) -> str:
        return bring_in_line(self._provider_client(), self._records, guid, username, spec, record=record)

    def _provider_client(self) -> Provider:
        # Made on first use, not at start-up: gunicorn may fork after the app is built, and a client's
        # connections must not be shared across processes.
        with self._lock:
            if self._provider is None:
                self._provider = self._make_provider()
            return self._provider


def _in_no_mailbox_group(person: Person, settings: ProvisioningSettings) -> bool:
    """Whether the person is in ``no_mailbox_group`` (nested membership counts: group_dns holds every group)."""
    group = settings.no_mailbox_group.strip().casefold()
    return bool(group) and group in (dn.casefold() for dn in person.group_dns)


def _steady(record: ProvisioningRecord | None, spec: MailboxSpec) -> bool:
    """Nothing to do: the last write succeeded with this very spec and the sync has not frozen it since."""
    return (
        record is not None
        and not record.failed
        and record.mailbox_id is not None
        and not record.frozen
        and record.fingerprint == fingerprint(spec)
    )
