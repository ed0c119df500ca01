"""The admin operations on service providers: one code path behind both front doors (`idp sp ...` and the
console's /admin/sps pages), each call audited with who did it and the state before and after.

``actor`` is the admin's username in the console and ``"cli:<os user>"`` from the command line. A refused
attempt is audited too, with the error's short reason and its sentence; nothing in a row is key material,
and URLs lose their user info and query (see ``fetch.redacted``) before they are written.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from idp.audit import AuditTrail
from idp.settings import Settings
from idp.sps.errors import DuplicateSpError, PolicyInvalidError, SpRegistryError, UnknownSpError
from idp.sps.policy import SpPolicy
from idp.sps.registry import SpEntry, SpRegistry
from idp.sps.validate import SpMetadataInfo, validate_sp_metadata
from idp.store.db import Database


class _HasServices(Protocol):
    settings: Settings
    db: Database
    registry: SpRegistry
    audit: AuditTrail


def cli_actor() -> str:
    """Who runs `idp sp ...`: the operating-system account, since the CLI has no login of its own."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers) and no USER variable
        return "cli:unknown"


@dataclass(frozen=True)
class Preview:
    """What a document would register, without saving it: either ``info`` or ``error`` is set."""

    info: SpMetadataInfo | None
    error: SpRegistryError | None
    registered: bool = False
    """An SP with this entityID is registered already: saving replaces it."""


class SpService:
    def __init__(self, settings: Settings, db: Database, registry: SpRegistry, audit: AuditTrail) -> None:
        self._settings = settings
        self._db = db
        self._registry = registry
        self._audit = audit

    @classmethod
    def of(cls, svc: _HasServices) -> SpService:
        """From the web app's Services (``SpService.of(services())``): cheap enough to build per request."""
        return cls(svc.settings, svc.db, svc.registry, svc.audit)

    @property
    def registry(self) -> SpRegistry:
        return self._registry

    # -- reading ---------------------------------------------------------------------------------------

    def preview(self, xml: bytes) -> Preview:
        """Validate ``xml`` exactly as ``add`` would, and say what it holds or what is wrong; nothing is stored
        and nothing is audited (a preview changes nothing)."""
        try:
            info = validate_sp_metadata(xml, allow_http_loopback=self._settings.metadata.allow_http_loopback)
        except SpRegistryError as exc:
            return Preview(None, exc)
        return Preview(info, None, registered=self._registry.get(info.entity_id) is not None)

    # -- changes ---------------------------------------------------------------------------------------

    def add(
        self,
        xml: bytes,
        *,
        actor: str,
        ip: str | None = None,
        policy: SpPolicy | None = None,
        policy_overrides: Mapping[str, Any] | None = None,
        replace: bool = False,
        source: str | None = None,
    ) -> SpEntry:
        """Validate and register an SP from its metadata. ``policy`` None keeps the stored policy (the defaults
        for a new SP); ``policy_overrides`` change single fields of that one. ``source`` (a file name, a URL
        already redacted, "manual") is only written to the audit trail."""
        entity_id: str | None = None
        before: dict | None = None
        try:
            info = validate_sp_metadata(xml, allow_http_loopback=self._settings.metadata.allow_http_loopback)
            entity_id = info.entity_id
            existing = self._registry.get(entity_id)
            before = _snapshot(existing) if existing else None
            if existing and not replace:
                raise DuplicateSpError(entity_id)
            if policy_overrides:
                base = policy or (
                    self._registry.current_policy(entity_id)
                    if existing
                    else SpPolicy.from_defaults(self._settings.sp_defaults)
                )
                policy = _validated(base.model_dump() | dict(policy_overrides))
            entry = self._registry.add(xml, policy=policy, replace=replace)
        except SpRegistryError as exc:
            self._refused("sp_added", exc, actor=actor, ip=ip, sp=entity_id, before=before, note=source)
            raise
        self._audit.record_change(
            "sp_added", actor=actor, ip=ip, sp=entry.entity_id, before=before, after=_snapshot(entry), note=source
        )
        return entry

    def update_policy(
        self, entity_id: str, new_policy: SpPolicy | Mapping[str, Any], actor: str, ip: str | None = None
    ) -> SpPolicy:
        """Store ``new_policy`` (an SpPolicy, or a dict SpPolicy validates) for a registered SP and audit the
        policy before and after; raise UnknownSpError or PolicyInvalidError (audited as refused)."""
        before: dict | None = None
        try:
            if self._registry.get(entity_id) is None:
                raise UnknownSpError(entity_id)
            before = self._registry.current_policy(entity_id).model_dump(mode="json")
            policy = new_policy if isinstance(new_policy, SpPolicy) else _validated(new_policy)
            self._registry.set_policy(entity_id, policy)
        except SpRegistryError as exc:
            self._refused("sp_policy_changed", exc, actor=actor, ip=ip, sp=entity_id, before=before)
            raise
        after = policy.model_dump(mode="json")
        self._audit.record_change("sp_policy_changed", actor=actor, ip=ip, sp=entity_id, before=before, after=after)
        return policy

    def set_enabled(self, entity_id: str, enabled: bool, *, actor: str, ip: str | None = None) -> SpPolicy:
        """Switch sign-in to the SP on or off; only the policy's ``enabled`` changes."""
        event = "sp_enabled" if enabled else "sp_disabled"
        try:
            if self._registry.get(entity_id) is None:
                raise UnknownSpError(entity_id)
            policy = self._registry.current_policy(entity_id).model_copy(update={"enabled": enabled})
            self._registry.set_policy(entity_id, policy)
        except SpRegistryError as exc:
            self._refused(event, exc, actor=actor, ip=ip, sp=entity_id)
            raise
        self._audit.record_change(
            event, actor=actor, ip=ip, sp=entity_id, before={"enabled": not enabled}, after={"enabled": enabled}
        )
        return policy

    def remove(self, entity_id: str, *, actor: str, ip: str | None = None) -> None:
        """Unregister the SP: its metadata file and its stored policy."""
        before: dict | None = None
        try:
            existing = self._registry.get(entity_id)
            before = _snapshot(existing) if existing else None
            self._registry.remove(entity_id)
        except SpRegistryError as exc:
            self._refused("sp_removed", exc, actor=actor, ip=ip, sp=entity_id, before=before)
            raise
        self._audit.record_change("sp_removed", actor=actor, ip=ip, sp=entity_id, before=before, after=None)

    # -- internals -------------------------------------------------------------------------------------

    def _refused(
        self,
        event: str,
        exc: SpRegistryError,
        *,
        actor: str,
        ip: str | None,
        sp: str | None,
        before: object = None,
        note: str | None = None,
    ) -> None:
        self._audit.record_change(
            event,
            actor=actor,
            ip=ip,
            sp=sp,
            before=before,
            after=None,
            result="refused",
            reason=exc.reason,
            note=f"{note}: {exc}" if note else str(exc),
        )


def _validated(raw: Mapping[str, Any]) -> SpPolicy:
    try:
        return SpPolicy.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}" for e in exc.errors())
        raise PolicyInvalidError(f"the policy is not valid: {problems}") from None


def _snapshot(entry: SpEntry) -> dict[str, Any]:
    """The SP as an audit row keeps it: identifiers, endpoints and policy; never a certificate's body."""
    return {
        "entity_id": entry.entity_id,
        "name": entry.name,
        "acs_urls": list(entry.acs_urls),
        "cert_expiry": entry.cert_expiry,
        "valid_until": entry.valid_until,
        "policy": entry.policy.model_dump(mode="json"),
    }
