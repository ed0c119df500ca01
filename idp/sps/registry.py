"""The SP registry: metadata files in one directory, per-SP policy in the database.

Files are the source of truth for *which* SPs exist (every gunicorn worker reads the same directory and
notices a change through ``version()``); the database holds *what* each SP receives. A file that is not
valid metadata is skipped with a warning rather than taking the IdP down with it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import delete

from idp.settings import SpDefaults
from idp.sps.errors import (
    DuplicateSpError,
    MetadataError,
    RegistryStorageError,
    StoredPolicyError,
    UnknownSpError,
)
from idp.sps.policy import SpPolicy
from idp.sps.validate import SpMetadataInfo, inspect_sp_metadata, validate_sp_metadata
from idp.store.db import Database
from idp.store.models import SpPolicyRecord

log = logging.getLogger(__name__)

METADATA_SUFFIX = ".xml"
POLICY_CACHE_SECONDS = 5.0
POLICY_STAMP = ".policies-changed"
"""Replaced whenever a policy is saved; its name does not end in .xml, so it is never read as metadata."""

# Named out here because inside SpRegistry, past its ``list`` method, ``list`` means that method.
_MetadataFiles = list[tuple[Path, SpMetadataInfo]]


@dataclass(frozen=True)
class SpEntry:
    entity_id: str
    name: str
    acs_urls: tuple[str, ...]
    cert_expiry: datetime | None
    valid_until: datetime | None
    policy: SpPolicy
    path: Path
    metadata: SpMetadataInfo


def metadata_filename(entity_id: str) -> str:
    """A stable, filesystem-safe name: entityIDs are URLs or URNs full of characters paths cannot hold."""
    return hashlib.sha1(entity_id.encode(), usedforsecurity=False).hexdigest()[:16] + METADATA_SUFFIX


class SpRegistry:
    """Implements ``idp.sps.source.SpSource`` for the SAML layer, plus the admin operations."""

    def __init__(
        self,
        metadata_dir: Path,
        db: Database,
        defaults: SpDefaults,
        *,
        allow_http_loopback: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` times the policy cache (see ``policy_for``); tests pass one they can move."""
        self._dir = Path(metadata_dir)
        self._db = db
        self._defaults = defaults
        self._allow_http_loopback = allow_http_loopback
        self._clock = clock
        self._policies: dict[str, tuple[float, tuple[int, int] | None, SpPolicy]] = {}
        self._valid_until: tuple[str, dict[str, datetime]] = ("", {})

    # -- SpSource --------------------------------------------------------------------------------------

    def metadata_files(self) -> list[Path]:
        return [path for path, _ in self._scan()]

    def policy_for(self, entity_id: str) -> SpPolicy:
        """The SP's policy as stored now. Every SAML request needs it, so each process keeps a copy, for at
        most POLICY_CACHE_SECONDS and only while the change stamp in the metadata directory is the one it
        was read under: a change saved through this class, in any process or node that shares the
        directory, applies to the very next request (a sign-in waiting at the password page included)."""
        now = self._clock()
        stamp = self._policy_stamp()
        cached = self._policies.get(entity_id)
        if cached is not None and cached[1] == stamp and now - cached[0] < POLICY_CACHE_SECONDS:
            return cached[2]
        stored = self._stored_policy(entity_id)
        policy = stored if stored is not None else SpPolicy.from_defaults(self._defaults)
        self._policies[entity_id] = (now, stamp, policy)
        return policy

    def metadata_expired(self, entity_id: str, now: datetime | None = None) -> datetime | None:
        """The validUntil of the SP's stored metadata when that moment has passed, else None. Read again only
        when ``version()`` changes: this runs for every SAML request."""
        version = self.version()
        if self._valid_until[0] != version:
            self._valid_until = (
                version,
                {info.entity_id: info.valid_until for _, info in self._scan() if info.valid_until is not None},
            )
        until = self._valid_until[1].get(entity_id)
        return until if until is not None and until <= (now or datetime.now(UTC)) else None

    def version(self) -> str:
        # Names, sizes, inodes and mtimes only: cheap enough to call on every request. An atomic replace
        # gives the file a new inode, so even a same-second, same-size replacement changes the version.
        digest = hashlib.sha1(usedforsecurity=False)
        try:
            entries = sorted(os.scandir(self._dir), key=lambda e: e.name)
        except FileNotFoundError:
            return "empty"
        for entry in entries:
            if entry.name.endswith(METADATA_SUFFIX) and entry.is_file():
                st = entry.stat()
                digest.update(f"{entry.name}\0{st.st_size}\0{st.st_ino}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    # -- admin operations ------------------------------------------------------------------------------

    def add(self, xml: bytes, *, policy: SpPolicy | None = None, replace: bool = False) -> SpEntry:
        """Validate and store an SP; ``policy`` None keeps the stored one (the defaults for a new SP)."""
        info = validate_sp_metadata(xml, allow_http_loopback=self._allow_http_loopback)
        existing = [path for path, found in self._read_all() if found.entity_id == info.entity_id]
        if existing and not replace:
            raise DuplicateSpError(info.entity_id)
        target = self._dir / metadata_filename(info.entity_id)
        previous_policy = self._stored_policy(info.entity_id)
        # The policy goes in first: an SP must never be reachable, even briefly, under the looser defaults
        # when the admin asked for, say, a group restriction.
        if policy is not None:
            self._save_policy(info.entity_id, policy)
        try:
            self._write_atomically(target, info.entity_xml)
        except RegistryStorageError:
            if policy is not None:
                self._restore_policy(info.entity_id, previous_policy)
            raise
        for stale in existing:
            if stale != target:
                try:
                    stale.unlink(missing_ok=True)
                except OSError as exc:
                    # The new file already wins over it (see _scan); the admin only needs to tidy up.
                    log.warning("could not delete the replaced metadata file %s: %s", stale, exc.strerror)
        return self._entry(target, info)

    def remove(self, entity_id: str) -> None:
        paths = [path for path, info in self._read_all() if info.entity_id == entity_id]
        if not paths:
            raise UnknownSpError(entity_id)
        # Files first: once they are gone no worker will answer the SP, whatever happens to the policy row.
        for path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise RegistryStorageError(f"cannot delete {path}: {exc.strerror}") from None
        with self._db.session() as s:
            s.execute(delete(SpPolicyRecord).where(SpPolicyRecord.entity_id == entity_id))
        self._policies_changed(entity_id)

    def list(self) -> list[SpEntry]:
        return sorted((self._entry(path, info) for path, info in self._scan()), key=lambda e: e.entity_id)

    def get(self, entity_id: str) -> SpEntry | None:
        return next((self._entry(p, info) for p, info in self._scan() if info.entity_id == entity_id), None)

    def set_policy(self, entity_id: str, policy: SpPolicy) -> None:
        if self.get(entity_id) is None:
            raise UnknownSpError(entity_id)
        self._save_policy(entity_id, policy)

    def current_policy(self, entity_id: str) -> SpPolicy:
        """The policy as stored right now (the defaults when none is): for an audit row's "before", which
        must not be a copy another process changed seconds ago."""
        stored = self._stored_policy(entity_id)
        return stored if stored is not None else SpPolicy.from_defaults(self._defaults)

    # -- internals -------------------------------------------------------------------------------------

    def _scan(self) -> _MetadataFiles:
        """Every usable metadata file with its parsed content, one file per entityID."""
        found: dict[str, tuple[Path, SpMetadataInfo]] = {}
        for path, info in self._read_all():
            other = found.get(info.entity_id)
            if other is None:
                found[info.entity_id] = (path, info)
                continue
            # Someone copied a file in by hand; the one `idp sp add` would have written wins.
            keep, drop = other[0], path
            if path.name == metadata_filename(info.entity_id):
                keep, drop = path, other[0]
                found[info.entity_id] = (path, info)
            log.warning("skipping %s: entityID %r is also in %s", drop, info.entity_id, keep)
        return sorted(found.values())

    def _read_all(self) -> _MetadataFiles:
        """Every metadata file that parses, duplicates included (add and remove must see them all)."""
        try:
            paths = sorted(p for p in self._dir.iterdir() if p.suffix == METADATA_SUFFIX and p.is_file())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise RegistryStorageError(f"cannot read the metadata directory {self._dir}: {exc.strerror}") from None
        out = []
        for path in paths:
            try:
                info = inspect_sp_metadata(path.read_bytes(), allow_http_loopback=self._allow_http_loopback)
            except (OSError, MetadataError) as exc:
                log.warning("skipping %s: not usable SP metadata: %s", path, exc)
                continue
            out.append((path, info))
        return out

    def _entry(self, path: Path, info: SpMetadataInfo) -> SpEntry:
        return SpEntry(
            entity_id=info.entity_id,
            name=info.display_name,
            acs_urls=info.acs_urls,
            cert_expiry=info.cert_expiry,
            valid_until=info.valid_until,
            policy=self.policy_for(info.entity_id),
            path=path,
            metadata=info,
        )

    def _stored_policy(self, entity_id: str) -> SpPolicy | None:
        with self._db.session() as s:
            record = s.get(SpPolicyRecord, entity_id)
            raw = None if record is None else dict(record.policy)
        if raw is None:
            return None
        try:
            return SpPolicy.model_validate(raw)
        except ValidationError as exc:
            raise StoredPolicyError(
                f"the stored policy of {entity_id!r} is no longer valid ({exc.error_count()} problems: "
                f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}); set it again with idp sp add --replace"
            ) from None

    def _save_policy(self, entity_id: str, policy: SpPolicy) -> None:
        with self._db.session() as s:
            s.merge(SpPolicyRecord(entity_id=entity_id, policy=policy.model_dump(mode="json")))
        self._policies_changed(entity_id)

    def _restore_policy(self, entity_id: str, previous: SpPolicy | None) -> None:
        if previous is not None:
            self._save_policy(entity_id, previous)
            return
        with self._db.session() as s:
            s.execute(delete(SpPolicyRecord).where(SpPolicyRecord.entity_id == entity_id))
        self._policies_changed(entity_id)

    def _policy_stamp(self) -> tuple[int, int] | None:
        """(inode, mtime) of the change stamp: one stat, cheap enough for every request."""
        try:
            st = os.stat(self._dir / POLICY_STAMP)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _policies_changed(self, entity_id: str) -> None:
        """After the database holds the change: a new stamp file (a new inode, whatever the clock's
        resolution) tells every process's policy_for to read again."""
        self._policies.pop(entity_id, None)
        try:
            self._write_atomically(self._dir / POLICY_STAMP, f"{entity_id}\n".encode())
        except RegistryStorageError as exc:
            # The change is saved; other processes see it when their copy expires instead of at once.
            log.warning("policy of %s saved, but the change stamp could not be written: %s", entity_id, exc)

    def _write_atomically(self, target: Path, data: bytes) -> None:
        # Readers (other workers) see the old file or the new one, never half of one; the temporary name
        # does not end in .xml, so a crash leaves nothing that looks like metadata.
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".incoming-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                # Metadata is public, and the service may run as another user than the admin's command.
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise RegistryStorageError(f"cannot write {target}: {exc.strerror or exc}") from None
