"""Metadata past its validUntil is never used: the AuthnRequest of such an SP is refused with a reason that
says so, whether the IdP loaded the metadata before it expired or meets it expired (pysaml2 then drops the
entity silently, which alone would read as "not registered")."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from idp.saml.errors import SamlRequestError
from idp.settings import Settings
from idp.sps.registry import SpRegistry, metadata_filename
from idp.store.db import Database
from tests.unit.saml_world import SP_ENTITY, SamlLayer, World, post_request, sp_metadata


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_sp_whose_metadata_expired_is_refused_with_that_reason(
    settings: Settings, sp_pem: tuple[str, str], tmp_path: Path
) -> None:
    db = Database(settings.database_url)
    try:
        registry = SpRegistry(tmp_path / "metadata", db, settings.sp_defaults)
        registry.add(sp_metadata(sp_pem).encode())
        idp = SamlLayer(settings, registry)
        world = World(idp, None, sp_pem)  # type: ignore[arg-type]
        saml_request, _ = post_request(world.sp(), sign=False)
        assert idp.parse_authn_request("post", saml_request, None).sp_entity_id == SP_ENTITY

        # The SP's metadata file now carries a validUntil that has passed, as stored metadata does in time.
        path = tmp_path / "metadata" / metadata_filename(SP_ENTITY)
        past = _stamp(datetime.now(UTC) - timedelta(minutes=1))
        path.write_text(re.sub(r'validUntil="[^"]*"', f'validUntil="{past}"', path.read_text(), count=1))
        assert registry.metadata_expired(SP_ENTITY) is not None
        with pytest.raises(SamlRequestError) as refused:
            idp.parse_authn_request("post", saml_request, None)
        assert refused.value.reason == "sp_metadata_expired"
        assert "expired on" in refused.value.message and "validUntil" in refused.value.message
        assert [e.entity_id for e in registry.list()] == [SP_ENTITY]  # still listed, for the admin to see
    finally:
        db.dispose()
