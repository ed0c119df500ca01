"""SpRegistry: metadata files on disk, policies in a real SQLite database, and what every worker sees."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from idp.settings import SpDefaults
from idp.sps.errors import (
    DuplicateSpError,
    MetadataError,
    RegistryStorageError,
    StoredPolicyError,
    UnknownSpError,
)
from idp.sps.policy import SpPolicy
from idp.sps.registry import POLICY_CACHE_SECONDS, POLICY_STAMP, SpRegistry
from idp.store.db import Database
from idp.store.models import SpPolicyRecord
from tests.support import FakeClock
from tests.unit.sp_fixtures import DATA, sp_metadata

ENTITY = "https://sp.example.test/saml/metadata"
CANONICAL_NAME = hashlib.sha1(ENTITY.encode(), usedforsecurity=False).hexdigest()[:16] + ".xml"
DEFAULTS = SpDefaults(nameid_format="persistent", attributes=["mail"])


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'idp.db'}")
    yield database
    database.dispose()


@pytest.fixture
def registry(tmp_path: Path, db: Database) -> SpRegistry:
    return SpRegistry(tmp_path / "metadata", db, DEFAULTS)


def test_add_list_get_remove_round_trip(registry: SpRegistry, tmp_path: Path) -> None:
    assert registry.list() == [] and registry.metadata_files() == []

    entry = registry.add(sp_metadata(ENTITY, acs="https://sp.example.test/acs", display_name="Mail"))

    expected = tmp_path / "metadata" / CANONICAL_NAME
    assert entry.path == expected and expected.is_file()
    assert expected.stat().st_mode & 0o777 == 0o644
    assert not [p for p in expected.parent.iterdir() if p != expected]  # no temporary file left behind
    assert registry.metadata_files() == [expected]
    [listed] = registry.list()
    assert listed.entity_id == ENTITY
    assert listed.name == "Mail"
    assert listed.acs_urls == ("https://sp.example.test/acs",)
    assert listed.cert_expiry == entry.metadata.cert_expiry is not None
    assert listed.policy == SpPolicy.from_defaults(DEFAULTS)
    assert registry.get(ENTITY) == listed
    assert registry.get("https://other.example.test") is None

    registry.remove(ENTITY)
    assert not expected.exists()
    assert registry.list() == [] and registry.get(ENTITY) is None


def test_several_sps_are_listed_by_entity_id(registry: SpRegistry) -> None:
    registry.add((DATA / "shibboleth-sp-metadata.xml").read_bytes())
    registry.add((DATA / "federation-one-sp.xml").read_bytes())
    registry.add(sp_metadata("urn:example:third"))
    assert [e.entity_id for e in registry.list()] == [
        "https://app.partner.example.org/saml/metadata",
        "https://mail.example.test/shibboleth",
        "urn:example:third",
    ]
    assert len(registry.metadata_files()) == 3


def test_invalid_metadata_is_not_stored(registry: SpRegistry, tmp_path: Path) -> None:
    with pytest.raises(MetadataError):
        registry.add(sp_metadata(acs="http://sp.example.test/acs"))
    assert registry.list() == []
    assert not (tmp_path / "metadata").exists() or not list((tmp_path / "metadata").iterdir())


def test_duplicate_is_refused_unless_replace(registry: SpRegistry) -> None:
    registry.add(sp_metadata(ENTITY, acs="https://sp.example.test/acs"))
    with pytest.raises(DuplicateSpError, match="already registered") as caught:
        registry.add(sp_metadata(ENTITY, acs="https://sp.example.test/new-acs"))
    assert caught.value.entity_id == ENTITY
    assert registry.get(ENTITY).acs_urls == ("https://sp.example.test/acs",)

    registry.add(sp_metadata(ENTITY, acs="https://sp.example.test/new-acs"), replace=True)
    assert [e.acs_urls for e in registry.list()] == [("https://sp.example.test/new-acs",)]


def test_policy_is_persisted_and_returned(registry: SpRegistry, tmp_path: Path, db: Database) -> None:
    assert registry.policy_for(ENTITY) == SpPolicy.from_defaults(DEFAULTS)
    policy = SpPolicy(nameid_format="transient", attributes=["mail", "groups"], allowed_groups=["Mail Users"])
    registry.add(sp_metadata(ENTITY), policy=policy)

    # A second registry on the same database is what another gunicorn worker sees.
    other_worker = SpRegistry(tmp_path / "metadata", db, SpDefaults())
    assert other_worker.policy_for(ENTITY) == policy
    assert other_worker.get(ENTITY).policy == policy


def test_a_policy_saved_elsewhere_applies_at_once_and_a_bare_database_change_after_the_cache_time(
    registry: SpRegistry, tmp_path: Path, db: Database
) -> None:
    registry.add(sp_metadata(ENTITY), policy=SpPolicy(allowed_groups=["Sales"]))
    clock = FakeClock()
    worker = SpRegistry(tmp_path / "metadata", db, DEFAULTS, clock=clock)
    assert worker.policy_for(ENTITY).allowed_groups == ["Sales"]
    assert worker.policy_for(ENTITY).allowed_groups == ["Sales"]  # cached: no query per SAML request

    registry.set_policy(ENTITY, SpPolicy(allowed_groups=["Finance"]))  # an admin, in another process
    assert worker.policy_for(ENTITY).allowed_groups == ["Finance"]  # the change stamp moved: no wait

    # Written to the database behind the registry's back (no stamp): the copy lives out its cache time.
    with db.session() as s:
        s.merge(SpPolicyRecord(entity_id=ENTITY, policy=SpPolicy(allowed_groups=["HR"]).model_dump(mode="json")))
    clock.advance(POLICY_CACHE_SECONDS - 0.1)
    assert worker.policy_for(ENTITY).allowed_groups == ["Finance"]
    clock.advance(0.1)
    assert worker.policy_for(ENTITY).allowed_groups == ["HR"]


def test_replace_without_policy_keeps_the_stored_one(registry: SpRegistry) -> None:
    policy = SpPolicy(allowed_groups=["Finance"])
    registry.add(sp_metadata(ENTITY), policy=policy)
    registry.add(sp_metadata(ENTITY, acs="https://sp.example.test/acs2"), replace=True)
    assert registry.policy_for(ENTITY) == policy


def test_remove_drops_the_policy_and_unknown_is_a_typed_error(registry: SpRegistry) -> None:
    registry.add(sp_metadata(ENTITY), policy=SpPolicy(allowed_groups=["Finance"]))
    registry.remove(ENTITY)
    assert registry.policy_for(ENTITY) == SpPolicy.from_defaults(DEFAULTS)
    with pytest.raises(UnknownSpError, match="no SP with entityID"):
        registry.remove(ENTITY)


def test_set_policy(registry: SpRegistry) -> None:
    with pytest.raises(UnknownSpError):
        registry.set_policy(ENTITY, SpPolicy())
    registry.add(sp_metadata(ENTITY))
    registry.set_policy(ENTITY, SpPolicy(enabled=False))
    assert registry.policy_for(ENTITY).enabled is False


def test_version_changes_on_add_replace_and_remove(registry: SpRegistry) -> None:
    xml = sp_metadata(ENTITY)
    versions = [registry.version()]
    registry.add(xml)
    versions.append(registry.version())
    assert registry.version() == versions[-1]  # stable while nothing changes
    registry.add(xml, replace=True)  # the very same bytes: still a new version, since the file was rewritten
    versions.append(registry.version())
    registry.remove(ENTITY)
    versions.append(registry.version())
    assert len(set(versions[:-1])) == 3
    assert versions[-1] != versions[-2]


def test_junk_files_in_the_directory_do_not_break_the_registry(
    registry: SpRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry.add(sp_metadata(ENTITY))
    metadata_dir = tmp_path / "metadata"
    (metadata_dir / "junk.xml").write_bytes(b"this is not xml")
    (metadata_dir / "idp.xml").write_bytes((DATA / "federation-one-sp.xml").read_bytes().replace(b"SPSSO", b"XSSO"))
    (metadata_dir / "README.md").write_text("not metadata, not even .xml")
    with caplog.at_level(logging.WARNING, logger="idp.sps.registry"):
        assert [e.entity_id for e in registry.list()] == [ENTITY]
        assert registry.metadata_files() == [registry.get(ENTITY).path]
    assert "junk.xml" in caplog.text and "idp.xml" in caplog.text


def test_a_hand_copied_duplicate_loses_to_the_registered_file_and_remove_takes_both(
    registry: SpRegistry, tmp_path: Path
) -> None:
    entry = registry.add(sp_metadata(ENTITY, acs="https://sp.example.test/acs"))
    (tmp_path / "metadata" / "0-copy.xml").write_bytes(sp_metadata(ENTITY, acs="https://sp.example.test/copy"))
    assert registry.metadata_files() == [entry.path]
    assert registry.get(ENTITY).acs_urls == ("https://sp.example.test/acs",)
    registry.remove(ENTITY)
    assert registry.metadata_files() == [] and registry.get(ENTITY) is None


def test_replace_moves_a_hand_dropped_file_to_its_registered_name(registry: SpRegistry, tmp_path: Path) -> None:
    (tmp_path / "metadata").mkdir()
    (tmp_path / "metadata" / "manual.xml").write_bytes(sp_metadata(ENTITY))
    with pytest.raises(DuplicateSpError):
        registry.add(sp_metadata(ENTITY))
    registry.add(sp_metadata(ENTITY, acs="https://sp.example.test/new"), replace=True)
    assert [p.name for p in registry.metadata_files()] == [CANONICAL_NAME]
    assert registry.get(ENTITY).acs_urls == ("https://sp.example.test/new",)


def test_expired_sp_stays_listed(registry: SpRegistry, tmp_path: Path) -> None:
    # Registration refuses expired metadata, but an SP whose metadata expired later must still be visible.
    stale = sp_metadata("urn:example:stale", valid_until="2020-01-01T00:00:00Z")
    (tmp_path / "metadata").mkdir()
    (tmp_path / "metadata" / "stale.xml").write_bytes(stale)
    [entry] = registry.list()
    assert entry.entity_id == "urn:example:stale" and entry.valid_until.year == 2020


def test_a_failed_write_leaves_no_policy_behind(registry: SpRegistry, tmp_path: Path) -> None:
    # A directory where the file should go makes the final rename fail, even for root.
    (tmp_path / "metadata" / CANONICAL_NAME).mkdir(parents=True)
    with pytest.raises(RegistryStorageError, match="cannot write"):
        registry.add(sp_metadata(ENTITY), policy=SpPolicy(allowed_groups=["Finance"]))
    assert registry.policy_for(ENTITY) == SpPolicy.from_defaults(DEFAULTS)
    assert [p.name for p in (tmp_path / "metadata").iterdir() if p.is_file() and p.name != POLICY_STAMP] == []


def test_a_stored_policy_that_no_longer_fits_fails_closed(registry: SpRegistry, db: Database) -> None:
    registry.add(sp_metadata(ENTITY))
    with db.session() as s:
        s.merge(SpPolicyRecord(entity_id=ENTITY, policy={"nameid_format": "kerberos"}))
    another_worker = SpRegistry(registry.metadata_files()[0].parent, db, DEFAULTS)
    with pytest.raises(StoredPolicyError, match="no longer valid"):
        another_worker.policy_for(ENTITY)


def test_the_metadata_directory_being_a_file_is_reported(tmp_path: Path, db: Database) -> None:
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(RegistryStorageError, match="metadata directory"):
        SpRegistry(tmp_path / "not-a-dir", db, DEFAULTS).metadata_files()


def test_a_policy_is_saved_even_when_the_change_stamp_cannot_be_written(
    registry: SpRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry.add(sp_metadata(ENTITY))
    (tmp_path / "metadata" / POLICY_STAMP).mkdir()  # the atomic rename onto it fails, even for root
    with caplog.at_level(logging.WARNING, logger="idp.sps.registry"):
        registry.set_policy(ENTITY, SpPolicy(allowed_groups=["HR"]))
    assert registry.current_policy(ENTITY).allowed_groups == ["HR"]
    assert registry.policy_for(ENTITY).allowed_groups == ["HR"]
    assert "change stamp could not be written" in caplog.text
