"""The admin operations on service providers: one code path behind both front doors (`idp sp ...` and the
console's /admin/sps pages), each call audited with who did it and the state before and after.

``actor`` is the admin's username in the console and ``"cli:<os user>"`` from the command line. A refused
attempt is audited too, with the error's short reason and its sentence; nothing in a row is key material,
and URLs lose their user info and query (see ``fetch.redacted``) before they are written.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from idp.audit import AuditTrail
from idp.codes import AuditEvent
from idp.settings import Settings
from idp.sps import certs
from idp.sps.errors import (
    DuplicateSpError,
    EntityMismatchError,
    NotFromUrlError,
    PolicyInvalidError,
    SpRegistryError,
    UnknownSpError,
)
from idp.sps.fetch import redacted
from idp.sps.manual import manual_metadata
from idp.sps.origins import OriginKind, SpOrigin, SpOrigins
from idp.sps.policy import SpPolicy
from idp.sps.registry import SpEntry, SpRegistry
from idp.sps.remote import UrlSource, UrlSources, download, next_refresh, pinned_certificate, retry_after_failure
from idp.sps.signature import verify_pinned_signature
from idp.sps.validate import SpMetadataInfo, validate_sp_metadata
from idp.store.db import Database

log = logging.getLogger(__name__)


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
    xml: bytes | None = None
    """The document that was checked (downloaded, or built from the manual form), to save unchanged."""


@dataclass(frozen=True)
class RefreshResult:
    entity_id: str
    changed: bool
    next_refresh_at: datetime
    error: SpRegistryError | None = None
    expired_since: datetime | None = None
    """Set when the download failed and the last good copy is past its validUntil: sign-in is refused."""


class SpService:
    def __init__(self, settings: Settings, db: Database, registry: SpRegistry, audit: AuditTrail) -> None:
        self._settings = settings
        self._db = db
        self._registry = registry
        self._audit = audit
        self._sources = UrlSources(db)
        self._origins = SpOrigins(db)

    @classmethod
    def of(cls, svc: _HasServices) -> SpService:
        """From the web app's Services (``SpService.of(services())``): cheap enough to build per request."""
        return cls(svc.settings, svc.db, svc.registry, svc.audit)

    @property
    def registry(self) -> SpRegistry:
        return self._registry

    # -- reading ---------------------------------------------------------------------------------------

    def preview(
        self, xml: bytes, *, actor: str | None = None, ip: str | None = None, source: str | None = None
    ) -> Preview:
        """Validate ``xml`` exactly as ``add`` would, and say what it holds or what is wrong; nothing is stored.
        With ``actor`` (the console), a document that cannot be registered is audited as a refused addition."""
        try:
            info = validate_sp_metadata(xml, allow_http_loopback=self._settings.metadata.allow_http_loopback)
        except SpRegistryError as exc:
            return self._failed_preview(exc, actor=actor, ip=ip, source=source)
        return Preview(info, None, registered=self._registry.get(info.entity_id) is not None, xml=xml)

    def preview_url(
        self,
        url: str,
        pinned_cert: str | None = None,
        *,
        allow_http: bool = False,
        actor: str | None = None,
        ip: str | None = None,
    ) -> Preview:
        """Download (and with ``pinned_cert`` verify) the metadata at ``url`` and preview it. ``allow_http``:
        the admin accepts plain http and loopback addresses for this URL."""
        source = _url_note(url, allow_http)
        try:
            xml = download(url, pinned_cert or None, allow_http=allow_http, settings=self._settings.metadata)
        except SpRegistryError as exc:
            return self._failed_preview(exc, actor=actor, ip=ip, source=source)
        return self.preview(xml, actor=actor, ip=ip, source=source)

    def preview_manual(
        self,
        entity_id: str,
        acs_url: str,
        certificate: str,
        *,
        name: str | None = None,
        nameid_format: str | None = None,
        actor: str | None = None,
        ip: str | None = None,
    ) -> Preview:
        try:
            xml = manual_metadata(entity_id, acs_url, certificate, name=name, nameid_format=nameid_format)
        except SpRegistryError as exc:
            return self._failed_preview(exc, actor=actor, ip=ip, source="manual", sp=entity_id.strip() or None)
        return self.preview(xml, actor=actor, ip=ip, source="manual")

    def _failed_preview(
        self,
        exc: SpRegistryError,
        *,
        actor: str | None,
        ip: str | None,
        source: str | None,
        sp: str | None = None,
    ) -> Preview:
        if actor is not None:
            self.refused("sp_added", exc, actor=actor, ip=ip, sp=sp, note=source)
        return Preview(None, exc)

    def url_sources(self) -> dict[str, UrlSource]:
        """entityID -> where its metadata is downloaded from, for the SPs registered from a URL."""
        return self._sources.all()

    def origins(self) -> dict[str, SpOrigin]:
        """entityID -> the uploaded file or the typed fields it came from, for the SPs not from a URL."""
        return self._origins.all()

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
        keep_url: bool = False,
        origin: OriginKind | None = None,
        file_name: str | None = None,
    ) -> SpEntry:
        """Validate and register an SP from its metadata. ``policy`` None keeps the stored policy (the defaults
        for a new SP); ``policy_overrides`` change single fields of that one. ``source`` (a file name, a URL
        already redacted, "manual") is only written to the audit trail; ``origin`` and ``file_name`` are kept
        for the console to show where the metadata came from. Metadata given by hand replaces a metadata URL
        the SP had (else the next refresh would undo it), unless ``keep_url``."""
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
            self.refused("sp_added", exc, actor=actor, ip=ip, sp=entity_id, before=before, note=source)
            raise
        if not keep_url:
            self._sources.forget(entry.entity_id)
        if origin is not None:
            self._origins.remember(entry.entity_id, origin, file_name, actor=actor)
        else:
            self._origins.forget(entry.entity_id)
        self._audit.record_change(
            "sp_added", actor=actor, ip=ip, sp=entry.entity_id, before=before, after=_snapshot(entry), note=source
        )
        return entry

    def add_from_url(
        self,
        url: str,
        *,
        actor: str,
        ip: str | None = None,
        pinned_cert: str | None = None,
        allow_http: bool = False,
        xml: bytes | None = None,
        policy: SpPolicy | None = None,
        policy_overrides: Mapping[str, Any] | None = None,
        replace: bool = False,
        now: datetime | None = None,
    ) -> SpEntry:
        """Register an SP from its metadata URL and keep it refreshed from there. ``xml`` is the document a
        preview already downloaded (kept server-side): it is checked again, not downloaded again.
        ``allow_http`` is stored with the URL and holds for every refresh."""
        now = now or datetime.now(UTC)
        note = _url_note(url, allow_http)
        try:
            pinned = pinned_certificate(pinned_cert) if pinned_cert and pinned_cert.strip() else None
            # Stored as PEM whatever was pasted, so the refresh reads one format.
            pem = certs.certificate_pem(pinned) if pinned else None
            if pinned:
                note += f" (signed by {pinned.subject.rfc4514_string()})"
            if xml is None:
                xml = download(url, pem, allow_http=allow_http, settings=self._settings.metadata)
            elif pinned:
                verify_pinned_signature(xml, pinned)
        except SpRegistryError as exc:
            self.refused("sp_added", exc, actor=actor, ip=ip, sp=None, note=note)
            raise
        entry = self.add(
            xml,
            actor=actor,
            ip=ip,
            policy=policy,
            policy_overrides=policy_overrides,
            replace=replace,
            source=note,
            keep_url=True,
        )
        info = entry.metadata
        self._sources.registered(entry.entity_id, url, pem, now, self._next(now, info), allow_http=allow_http)
        return entry

    def register_manual(
        self,
        entity_id: str,
        acs_url: str,
        certificate_pem: str,
        name: str | None = None,
        *,
        actor: str,
        ip: str | None = None,
        nameid_format: str | None = None,
        policy: SpPolicy | None = None,
        replace: bool = False,
    ) -> SpEntry:
        """Register an SP from entityID + ACS URL + certificate (see manual.py); same checks as any metadata."""
        try:
            xml = manual_metadata(entity_id, acs_url, certificate_pem, name=name, nameid_format=nameid_format)
        except SpRegistryError as exc:
            self.refused("sp_added", exc, actor=actor, ip=ip, sp=entity_id.strip() or None, note="manual")
            raise
        return self.add(xml, actor=actor, ip=ip, policy=policy, replace=replace, source="manual", origin="manual")

    def refresh(self, entity_id: str, *, actor: str, now: datetime | None = None) -> RefreshResult:
        """Download an SP's metadata URL again. A changed document replaces the stored one (audited); a failed
        download keeps the last good copy, is audited, and backs off. Raises only NotFromUrlError."""
        now = now or datetime.now(UTC)
        source = self._sources.get(entity_id)
        if source is None:
            exc = NotFromUrlError(entity_id)
            self.refused("sp_metadata_refreshed", exc, actor=actor, ip=None, sp=entity_id)
            raise exc
        current = self._registry.get(entity_id)
        before = _snapshot(current) if current else None
        try:
            xml = download(
                source.url, source.pinned_cert, allow_http=source.allow_http, settings=self._settings.metadata
            )
            info = validate_sp_metadata(xml, allow_http_loopback=self._settings.metadata.allow_http_loopback, now=now)
            if info.entity_id != entity_id:
                raise EntityMismatchError(
                    f"the URL now serves the metadata of {info.entity_id!r}, not of {entity_id!r}; "
                    "register that SP on its own if it is wanted",
                    "EntityDescriptor/@entityID",
                )
            changed = current is None or current.metadata.entity_xml != info.entity_xml
            if changed:
                entry = self._registry.add(xml, replace=True)
                self._audit.record_change(
                    "sp_metadata_refreshed",
                    actor=actor,
                    sp=entity_id,
                    before=before,
                    after=_snapshot(entry),
                    note=_url_note(source.url, source.allow_http),
                )
        except SpRegistryError as exc:
            return self._refresh_failed(source, current, before, exc, actor=actor, now=now)
        next_at = self._next(now, info)
        self._sources.succeeded(entity_id, now, next_at, changed=changed)
        return RefreshResult(entity_id, changed, next_at)

    def refresh_due(self, *, actor: str, now: datetime | None = None) -> list[RefreshResult]:
        """Refresh every metadata URL whose time has come (the scheduler's and `idp sp refresh --all`'s work)."""
        now = now or datetime.now(UTC)
        return self.refresh_all(self._sources.due(now), actor=actor, now=now)

    def refresh_all(
        self, entity_ids: list[str] | None = None, *, actor: str, now: datetime | None = None
    ) -> list[RefreshResult]:
        now = now or datetime.now(UTC)
        ids = list(self._sources.all()) if entity_ids is None else entity_ids
        results = []
        for entity_id in ids:
            try:
                results.append(self.refresh(entity_id, actor=actor, now=now))
            except NotFromUrlError:
                continue  # removed since the list was read
        return results

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
            self.refused("sp_policy_changed", exc, actor=actor, ip=ip, sp=entity_id, before=before)
            raise
        after = policy.model_dump(mode="json")
        self._audit.record_change("sp_policy_changed", actor=actor, ip=ip, sp=entity_id, before=before, after=after)
        return policy

    def set_enabled(self, entity_id: str, enabled: bool, *, actor: str, ip: str | None = None) -> SpPolicy:
        """Switch sign-in to the SP on or off; only the policy's ``enabled`` changes."""
        event: AuditEvent = "sp_enabled" if enabled else "sp_disabled"
        try:
            if self._registry.get(entity_id) is None:
                raise UnknownSpError(entity_id)
            policy = self._registry.current_policy(entity_id).model_copy(update={"enabled": enabled})
            self._registry.set_policy(entity_id, policy)
        except SpRegistryError as exc:
            self.refused(event, exc, actor=actor, ip=ip, sp=entity_id)
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
            self.refused("sp_removed", exc, actor=actor, ip=ip, sp=entity_id, before=before)
            raise
        self._sources.forget(entity_id)
        self._origins.forget(entity_id)
        self._audit.record_change("sp_removed", actor=actor, ip=ip, sp=entity_id, before=before, after=None)

    # -- internals -------------------------------------------------------------------------------------

    def _next(self, now: datetime, info: SpMetadataInfo) -> datetime:
        return next_refresh(
            now, cache_duration=info.cache_duration, valid_until=info.valid_until, settings=self._settings.metadata
        )

    def _refresh_failed(
        self,
        source: UrlSource,
        current: SpEntry | None,
        before: dict | None,
        exc: SpRegistryError,
        *,
        actor: str,
        now: datetime,
    ) -> RefreshResult:
        expired = current.valid_until if current and current.valid_until and current.valid_until <= now else None
        message = str(exc)
        if expired is not None:
            message += (
                f"; the last good copy expired on {expired:%Y-%m-%d %H:%M} UTC, so sign-in to this SP is refused "
                "until its metadata can be downloaded again"
            )
        failures = self._sources.failed(source.entity_id, now, message, exc.reason)
        next_at = retry_after_failure(now, failures, settings=self._settings.metadata)
        self._sources.reschedule(source.entity_id, next_at)
        log.warning("refreshing the metadata of %s failed (%s): %s", source.entity_id, exc.reason, message)
        self._audit.record_change(
            "sp_metadata_refreshed",
            actor=actor,
            sp=source.entity_id,
            before=before,
            after=None,
            result="refused",
            reason=exc.reason,
            note=_with_source(redacted(source.url), message),
        )
        return RefreshResult(source.entity_id, False, next_at, exc, expired)

    def refused(
        self,
        event: AuditEvent,
        exc: SpRegistryError,
        *,
        actor: str,
        ip: str | None = None,
        sp: str | None = None,
        before: object = None,
        note: str | None = None,
    ) -> None:
        """Audit an attempt that ``exc`` stopped (also for front-door errors such as an unreadable file)."""
        self._audit.record_change(
            event,
            actor=actor,
            ip=ip,
            sp=sp,
            before=before,
            after=None,
            result="refused",
            reason=exc.reason,
            note=_with_source(note, str(exc)),
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


def _with_source(source: str | None, message: str) -> str:
    """An audit note: where the document came from, then what went wrong; a download error names its URL
    itself, and the URL is not said twice."""
    if not source or message.startswith(source.split(" (", 1)[0]):
        return message
    return f"{source}: {message}"


def _url_note(url: str, allow_http: bool) -> str:
    """The URL as the audit trail keeps it, with the admin's exception when one was made."""
    return f"{redacted(url)} (plain http and loopback allowed)" if allow_http else redacted(url)
