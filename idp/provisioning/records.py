"""The local record of what was provisioned: per person, and where AD's change counter stood.

A record says which mailbox belongs to which AD object (by objectGUID, so renames and moves keep it),
the fingerprint of the MailboxSpec last written, whether we froze it and when, and the provider's
error if the last action failed. The sync and JIT provisioning compare a person's fingerprint with the
record's to know, without asking the provider, that nothing needs writing.

Mail groups made from mail-enabled AD groups have records of their own (by the group's objectGUID): only
a group recorded there is ever deleted by the sync.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select

from idp.provisioning.provider import MailboxSpec
from idp.store.db import Database
from idp.store.models import MailGroupRecordRow, ProvisioningRecordRow, SyncWatermarkRow, utcnow


def fingerprint(spec: MailboxSpec) -> str:
    """A stable hash of everything a mailbox is made from; equal specs give equal fingerprints."""
    canonical = json.dumps(dataclasses.asdict(spec), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ProvisioningRecord:
    guid: str
    username: str
    email: str
    mailbox_id: str | None
    fingerprint: str
    frozen: bool
    frozen_at: datetime | None
    last_error: str | None
    failed_action: str | None
    updated_at: datetime

    @property
    def failed(self) -> bool:
        return self.last_error is not None


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _record(row: ProvisioningRecordRow) -> ProvisioningRecord:
    return ProvisioningRecord(
        guid=row.guid,
        username=row.username,
        email=row.email,
        mailbox_id=row.mailbox_id,
        fingerprint=row.fingerprint,
        frozen=row.frozen,
        frozen_at=_aware(row.frozen_at),
        last_error=row.last_error,
        failed_action=row.failed_action,
        updated_at=_aware(row.updated_at) or utcnow(),
    )


class ProvisioningRecords:
    """The records table. Thread-safe: every call uses its own short transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, guid: str) -> ProvisioningRecord | None:
        with self._db.session() as s:
            row = s.get(ProvisioningRecordRow, guid)
            return _record(row) if row else None

    def all(self) -> dict[str, ProvisioningRecord]:
        """Every record by guid."""
        with self._db.session() as s:
            return {row.guid: _record(row) for row in s.scalars(select(ProvisioningRecordRow))}

    def failed(self) -> list[ProvisioningRecord]:
        q = select(ProvisioningRecordRow).where(ProvisioningRecordRow.last_error.is_not(None))
        with self._db.session() as s:
            return [_record(row) for row in s.scalars(q.order_by(ProvisioningRecordRow.username))]

    def succeeded(
        self, guid: str, *, username: str, email: str, mailbox_id: str, spec: MailboxSpec, frozen: bool
    ) -> None:
        """The mailbox now matches ``spec`` and is (un)frozen as said; any earlier failure is cleared."""
        with self._db.session() as s:
            row = s.get(ProvisioningRecordRow, guid) or ProvisioningRecordRow(guid=guid)
            if frozen and not row.frozen:
                row.frozen_at = utcnow()
            elif not frozen:
                row.frozen_at = None
            row.username, row.email, row.mailbox_id = username, email, mailbox_id
            row.fingerprint, row.frozen = fingerprint(spec), frozen
            row.last_error = row.failed_action = None
            s.add(row)

    def failed_with(self, guid: str, *, username: str, email: str, action: str, error: str) -> None:
        """Keep what failed; fingerprint and state stay those of the last success, so the next run retries."""
        with self._db.session() as s:
            row = s.get(ProvisioningRecordRow, guid)
            if row is None:
                row = ProvisioningRecordRow(guid=guid, username=username, email=email, fingerprint="", frozen=False)
            row.last_error, row.failed_action = error[:4000], action
            s.add(row)

    def forget(self, guid: str) -> None:
        """The mailbox was deleted: nothing is provisioned for this person any more."""
        with self._db.session() as s:
            s.execute(delete(ProvisioningRecordRow).where(ProvisioningRecordRow.guid == guid))


class Watermarks:
    """AD's uSNChanged high-water mark of the last complete sync, one per domain controller."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, dc: str) -> int | None:
        with self._db.session() as s:
            row = s.get(SyncWatermarkRow, dc)
            return row.usn if row else None

    def set(self, dc: str, usn: int) -> None:
        with self._db.session() as s:
            row = s.get(SyncWatermarkRow, dc) or SyncWatermarkRow(dc=dc)
            row.usn = usn
            s.add(row)


@dataclass(frozen=True)
class GroupRecord:
    """A mail group the sync made for a mail-enabled AD group (by the group's objectGUID)."""

    guid: str
    email: str
    group_id: str


class GroupRecords:
    """The mail groups the sync manages: only these are ever deleted."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> dict[str, GroupRecord]:
        with self._db.session() as s:
            return {r.guid: GroupRecord(r.guid, r.email, r.group_id) for r in s.scalars(select(MailGroupRecordRow))}

    def remember(self, guid: str, email: str, group_id: str) -> None:
        with self._db.session() as s:
            row = s.get(MailGroupRecordRow, guid) or MailGroupRecordRow(guid=guid)
            row.email, row.group_id = email, group_id
            s.add(row)

    def forget(self, guid: str) -> None:
        with self._db.session() as s:
            s.execute(delete(MailGroupRecordRow).where(MailGroupRecordRow.guid == guid))
