"""SPs registered from a metadata URL: download (and, with a pinned certificate, verify) their metadata, and
decide when to download it again.

The schedule follows SAML metadata 2.0 section 4.3 and its errata (E94): ``cacheDuration`` says when a copy
is stale and should be fetched again, ``validUntil`` when it must no longer be used at all. The next refresh
is the earliest of the cacheDuration, our own longest interval and three quarters of the time left before
validUntil (so that a failed try still leaves time for more), but never sooner than the shortest interval.
A failed download keeps the last good copy and waits longer after each failure in a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from sqlalchemy import delete, select

from idp.settings import MetadataSettings
from idp.sps.certs import load_pasted_certificate
from idp.sps.fetch import fetch_metadata
from idp.sps.signature import verify_pinned_signature
from idp.sps.validate import MAX_METADATA_BYTES
from idp.store.db import Database
from idp.store.models import SpMetadataUrlRow, utcnow

VALID_UNTIL_SHARE = 0.75
"""Refresh after this share of the time left before validUntil."""


@dataclass(frozen=True)
class UrlSource:
    """Where an SP's metadata comes from, and how the last downloads went (a row of sp_metadata_urls)."""

    entity_id: str
    url: str
    pinned_cert: str | None
    allow_http: bool
    """Plain http and loopback addresses allowed for this URL, by an admin's explicit choice."""
    last_fetched_at: datetime | None
    last_success_at: datetime | None
    last_changed_at: datetime | None
    next_refresh_at: datetime
    failures: int
    last_error: str | None
    last_error_reason: str | None


def next_refresh(
    now: datetime,
    *,
    cache_duration: timedelta | None,
    valid_until: datetime | None,
    settings: MetadataSettings,
) -> datetime:
    """When to download a metadata URL again after a successful download at ``now``."""
    wait = timedelta(seconds=settings.refresh_max_interval)
    if cache_duration is not None:
        wait = min(wait, cache_duration)
    if valid_until is not None:
        wait = min(wait, (valid_until - now) * VALID_UNTIL_SHARE)
    return now + max(wait, timedelta(seconds=settings.refresh_min_interval))


def retry_after_failure(now: datetime, failures: int, *, settings: MetadataSettings) -> datetime:
    """When to try again after the ``failures``-th failed download in a row: the shortest interval, doubled
    with each further failure, up to the longest."""
    wait = settings.refresh_min_interval * 2 ** min(max(failures - 1, 0), 30)
    return now + timedelta(seconds=min(wait, settings.refresh_max_interval))


def download(url: str, pinned_cert: str | None, *, allow_http: bool = False, settings: MetadataSettings) -> bytes:
    """The document at ``url`` (fetch.py's limits: https to public addresses unless ``allow_http``, size,
    total time), and with a pinned certificate only if its enveloped signature verifies with it. Raises
    FetchError/MetadataError."""
    xml = fetch_metadata(url, allow_http=allow_http, timeout=settings.fetch_timeout, max_bytes=MAX_METADATA_BYTES)
    if pinned_cert:
        verify_pinned_signature(xml, pinned_certificate(pinned_cert))
    return xml


def pinned_certificate(pem: str) -> x509.Certificate:
    return load_pasted_certificate(pem, field="pinned certificate")


class UrlSources:
    """The sp_metadata_urls table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, entity_id: str) -> UrlSource | None:
        with self._db.session() as s:
            row = s.get(SpMetadataUrlRow, entity_id)
            return _source(row) if row else None

    def all(self) -> dict[str, UrlSource]:
        with self._db.session() as s:
            return {row.entity_id: _source(row) for row in s.scalars(select(SpMetadataUrlRow))}

    def due(self, now: datetime) -> list[str]:
        with self._db.session() as s:
            q = select(SpMetadataUrlRow.entity_id).where(SpMetadataUrlRow.next_refresh_at <= now)
            return list(s.scalars(q.order_by(SpMetadataUrlRow.next_refresh_at)))

    def registered(
        self,
        entity_id: str,
        url: str,
        pinned_cert: str | None,
        now: datetime,
        next_at: datetime,
        *,
        allow_http: bool = False,
    ) -> None:
        """The SP was (re-)registered from ``url`` at ``now``."""
        with self._db.session() as s:
            s.merge(
                SpMetadataUrlRow(
                    entity_id=entity_id,
                    url=url,
                    pinned_cert=pinned_cert,
                    allow_http=allow_http,
                    last_fetched_at=now,
                    last_success_at=now,
                    last_changed_at=now,
                    next_refresh_at=next_at,
                    failures=0,
                    last_error=None,
                    last_error_reason=None,
                )
            )

    def succeeded(self, entity_id: str, now: datetime, next_at: datetime, *, changed: bool) -> None:
        with self._db.session() as s:
            row = s.get(SpMetadataUrlRow, entity_id)
            if row is None:
                return  # removed while we downloaded
            row.last_fetched_at = row.last_success_at = now
            if changed:
                row.last_changed_at = now
            row.next_refresh_at = next_at
            row.failures = 0
            row.last_error = row.last_error_reason = None

    def failed(self, entity_id: str, now: datetime, error: str, reason: str) -> int:
        """Record a failed download; return the failures in a row, this one included."""
        with self._db.session() as s:
            row = s.get(SpMetadataUrlRow, entity_id)
            if row is None:
                return 0
            row.failures = (row.failures or 0) + 1
            row.last_fetched_at = now
            row.last_error = error[:4000]
            row.last_error_reason = reason[:60]
            return row.failures

    def reschedule(self, entity_id: str, next_at: datetime) -> None:
        with self._db.session() as s:
            row = s.get(SpMetadataUrlRow, entity_id)
            if row is not None:
                row.next_refresh_at = next_at

    def forget(self, entity_id: str) -> None:
        with self._db.session() as s:
            s.execute(delete(SpMetadataUrlRow).where(SpMetadataUrlRow.entity_id == entity_id))


def _source(row: SpMetadataUrlRow) -> UrlSource:
    return UrlSource(
        entity_id=row.entity_id,
        url=row.url,
        pinned_cert=row.pinned_cert,
        allow_http=bool(row.allow_http),
        last_fetched_at=_utc(row.last_fetched_at),
        last_success_at=_utc(row.last_success_at),
        last_changed_at=_utc(row.last_changed_at),
        next_refresh_at=_utc(row.next_refresh_at) or utcnow(),
        failures=row.failures or 0,
        last_error=row.last_error,
        last_error_reason=row.last_error_reason,
    )


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands timezone-aware columns back naive; they were written in UTC.
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)
