"""When a metadata URL is downloaded again: cacheDuration, validUntil, our own bounds, and the back-off after
failures; with explicit times, no waiting. And the background refresher's round, one process at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from idp.audit import AuditTrail
from idp.settings import MetadataSettings, load_settings
from idp.sps.errors import MetadataError
from idp.sps.registry import SpRegistry
from idp.sps.remote import next_refresh, retry_after_failure
from idp.sps.scheduler import LEASE_NAME, LEASE_SECONDS, MetadataRefresher
from idp.sps.service import SpService
from idp.sps.validate import inspect_sp_metadata
from idp.store.db import Database
from idp.store.lease import Lease
from tests.support import FakeClock
from tests.unit.sp_fixtures import Route, http_server, sp_metadata, write_config

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
BOUNDS = MetadataSettings(refresh_min_interval=600, refresh_max_interval=86400)


def test_cache_duration_sets_the_next_refresh() -> None:
    assert next_refresh(NOW, cache_duration=timedelta(hours=6), valid_until=None, settings=BOUNDS) == NOW + timedelta(
        hours=6
    )


def test_our_longest_interval_caps_a_long_cache_duration_or_none() -> None:
    for cache in (timedelta(days=30), None):
        assert next_refresh(NOW, cache_duration=cache, valid_until=None, settings=BOUNDS) == NOW + timedelta(days=1)


def test_valid_until_brings_the_refresh_forward_with_time_to_spare() -> None:
    until = NOW + timedelta(hours=4)
    at = next_refresh(NOW, cache_duration=timedelta(hours=6), valid_until=until, settings=BOUNDS)
    assert at == NOW + timedelta(hours=3)  # three quarters of the way: a failure still leaves an hour to retry
    assert at < until


def test_the_shortest_interval_is_a_floor() -> None:
    assert next_refresh(NOW, cache_duration=timedelta(seconds=5), valid_until=None, settings=BOUNDS) == NOW + timedelta(
        minutes=10
    )
    past = NOW - timedelta(hours=1)  # already expired: still no download storm
    assert next_refresh(NOW, cache_duration=None, valid_until=past, settings=BOUNDS) == NOW + timedelta(minutes=10)


def test_failures_back_off_doubling_up_to_the_longest_interval() -> None:
    waits = [retry_after_failure(NOW, n, settings=BOUNDS) - NOW for n in (1, 2, 3, 4, 20)]
    assert waits[:4] == [timedelta(minutes=m) for m in (10, 20, 40, 80)]
    assert waits[4] == timedelta(days=1)


def test_settings_refuse_a_floor_above_the_ceiling() -> None:
    with pytest.raises(ValueError, match="refresh_min_interval"):
        MetadataSettings(refresh_min_interval=7200, refresh_max_interval=3600)


def test_cache_duration_is_read_from_the_metadata_the_shortest_winning() -> None:
    xml = sp_metadata()  # python3-saml writes cacheDuration="PT604800S" on the EntityDescriptor
    assert inspect_sp_metadata(xml).cache_duration == timedelta(days=7)
    wrapped = (
        b'<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" cacheDuration="PT1H">'
        + xml.split(b"?>", 1)[-1]
        + b"</md:EntitiesDescriptor>"
    )
    assert inspect_sp_metadata(wrapped).cache_duration == timedelta(hours=1)


def test_a_cache_duration_that_is_not_a_duration_is_named() -> None:
    with pytest.raises(MetadataError, match="cacheDuration 'weekly' is not an xs:duration") as caught:
        inspect_sp_metadata(sp_metadata().replace(b'cacheDuration="PT604800S"', b'cacheDuration="weekly"'))
    assert caught.value.element == "EntityDescriptor (line 1)"


def test_the_background_round_runs_in_one_process_at_a_time(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    db = Database(settings.database_url)
    try:
        registry = SpRegistry(settings.metadata.dir, db, settings.sp_defaults)
        service = SpService(settings, db, registry, AuditTrail(db))
        entity = "https://sp.example.test/saml/metadata"
        routes = {"/md": Route(sp_metadata(entity))}
        with http_server(routes) as base:
            service.add_from_url(f"{base}/md", allow_http=True, actor="anna")
            due = service.url_sources()[entity].next_refresh_at
            routes["/md"] = Route(sp_metadata(entity, acs="https://sp.example.test/changed"))
            clock = FakeClock(start=due - timedelta(seconds=1))
            refresher = MetadataRefresher(settings, db, registry, AuditTrail(db), now=clock.now)
            assert refresher.tick() is None  # nothing due: no lease, no download
            clock.advance(1)

            other_node = Lease(db, LEASE_NAME, now=clock.now)
            assert other_node.try_acquire()
            assert refresher.tick() is None  # another process is at it
            assert registry.get(entity).acs_urls == ("https://sp.example.test/saml/acs",)
            other_node.release()

            [result] = refresher.tick()
        assert result.changed and registry.get(entity).acs_urls == ("https://sp.example.test/changed",)
    finally:
        db.dispose()


def test_a_process_that_died_during_a_round_holds_the_others_off_until_its_lease_expires(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    db = Database(settings.database_url)
    try:
        registry = SpRegistry(settings.metadata.dir, db, settings.sp_defaults)
        service = SpService(settings, db, registry, AuditTrail(db))
        entity = "https://sp.example.test/saml/metadata"
        with http_server({"/md": Route(sp_metadata(entity))}) as base:
            service.add_from_url(f"{base}/md", allow_http=True, actor="anna")
            clock = FakeClock(start=service.url_sources()[entity].next_refresh_at)
            refresher = MetadataRefresher(settings, db, registry, AuditTrail(db), now=clock.now)
            assert Lease(db, LEASE_NAME, ttl_seconds=LEASE_SECONDS, now=clock.now).try_acquire()  # and then died

            clock.advance(LEASE_SECONDS - 1)
            assert refresher.tick() is None
            clock.advance(2)
            [result] = refresher.tick()
        assert not result.changed
    finally:
        db.dispose()
