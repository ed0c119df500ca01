"""Where the metadata of an SP not kept from a URL came from (the sp_origins table): an uploaded file, by the
name it had on the admin's computer, or fields typed by hand. SPs registered from a URL are in
sp_metadata_urls (remote.py); an SP with neither was added before origins were kept, or copied into the
metadata directory by hand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath, PureWindowsPath
from typing import Literal

from sqlalchemy import delete, select

from idp.store.db import Database
from idp.store.models import SpOriginRow

OriginKind = Literal["file", "manual"]
MAX_FILE_NAME = 255


@dataclass(frozen=True)
class SpOrigin:
    entity_id: str
    kind: OriginKind
    file_name: str | None
    added_at: datetime
    added_by: str | None


def file_name_of(path: str) -> str:
    """The last part of a path a browser or a shell gave (some browsers send C:\\Users\\...\\sp.xml), cut to
    what the column holds."""
    name = PureWindowsPath(path).name if "\\" in path else PurePath(path).name
    return (name or path).strip()[:MAX_FILE_NAME]


class SpOrigins:
    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> dict[str, SpOrigin]:
        with self._db.session() as s:
            return {row.entity_id: _origin(row) for row in s.scalars(select(SpOriginRow))}

    def remember(
        self, entity_id: str, kind: OriginKind, file_name: str | None, *, actor: str | None, now: datetime | None = None
    ) -> None:
        with self._db.session() as s:
            s.merge(
                SpOriginRow(
                    entity_id=entity_id,
                    kind=kind,
                    file_name=file_name_of(file_name) if file_name else None,
                    added_at=now or datetime.now(UTC),
                    added_by=actor,
                )
            )

    def forget(self, entity_id: str) -> None:
        with self._db.session() as s:
            s.execute(delete(SpOriginRow).where(SpOriginRow.entity_id == entity_id))


def _origin(row: SpOriginRow) -> SpOrigin:
    added_at = row.added_at if row.added_at.tzinfo else row.added_at.replace(tzinfo=UTC)  # SQLite: naive UTC
    kind: OriginKind = "manual" if row.kind == "manual" else "file"
    return SpOrigin(row.entity_id, kind, row.file_name, added_at, row.added_by)
