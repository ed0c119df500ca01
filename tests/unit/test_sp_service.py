"""SpService, the one code path of `idp sp` and /admin/sps: every change and every refusal is an audit row
with who, before and after; metadata URLs (pinned signatures, refresh, expiry) against a real HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from onelogin.saml2.metadata import OneLogin_Saml2_Metadata

from idp.audit import AuditRecord, AuditTrail
from idp.settings import Settings, load_settings
from idp.sps.errors import (
    DuplicateSpError,
    MetadataError,
    NotFromUrlError,
    PolicyInvalidError,
    SpRegistryError,
    UnknownSpError,
)
from idp.sps.registry import SpRegistry
from idp.sps.service import SpService
from idp.store.db import Database
from tests.e2e.saml_sp import new_key_and_certificate
from tests.unit.sp_fixtures import Route, http_server, make_cert, sp_metadata, write_config

ENTITY = "https://mail.example.test/saml/metadata"
ACS = "https://mail.example.test/saml/acs"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(write_config(tmp_path))


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def service(settings: Settings, db: Database) -> SpService:
    registry = SpRegistry(settings.metadata.dir, db, settings.sp_defaults)
    return SpService(settings, db, registry, AuditTrail(db))


def rows(db: Database, event: str) -> list[AuditRecord]:
    return AuditTrail(db).recent(event=event)


def detail(row: AuditRecord) -> dict:
    return json.loads(row.detail or "{}")


@pytest.fixture(scope="module")
def signer() -> tuple[str, str]:
    return new_key_and_certificate("metadata-signer.example.test")


def signed(xml: bytes, key_cert: tuple[str, str]) -> bytes:
    """Signed by python3-saml, an implementation independent of our verifier."""
    out = OneLogin_Saml2_Metadata.sign_metadata(xml.decode(), *key_cert)
    return out if isinstance(out, bytes) else out.encode()


# -- admin operations and their audit rows ----------------------------------------------------------------


def test_update_policy_audits_before_and_after(service: SpService, db: Database) -> None:
    service.add(sp_metadata(ENTITY, acs=ACS), actor="anna")
    saved = service.update_policy(
        ENTITY, {"allowed_groups": ["Sales"], "nameid_format": "persistent"}, "anna", "10.1.2.3"
    )
    assert saved.allowed_groups == ["Sales"]
    assert service.registry.policy_for(ENTITY).nameid_format == "persistent"
    [row] = rows(db, "sp_policy_changed")
    assert (row.result, row.username, row.sp_entity_id, row.client_ip) == ("success", "anna", ENTITY, "10.1.2.3")
    change = detail(row)
    assert change["before"]["allowed_groups"] == [] and change["after"]["allowed_groups"] == ["Sales"]
    assert change["before"]["nameid_format"] == "emailAddress" and change["after"]["nameid_format"] == "persistent"


def test_update_policy_refusals_are_audited(service: SpService, db: Database) -> None:
    service.add(sp_metadata(ENTITY, acs=ACS), actor="anna")
    with pytest.raises(PolicyInvalidError, match="'password' is not an attribute"):
        service.update_policy(ENTITY, {"attributes": ["password"]}, "anna", None)
    with pytest.raises(UnknownSpError):
        service.update_policy("urn:nobody", {}, "anna", None)
    unknown, invalid = rows(db, "sp_policy_changed")
    assert (invalid.result, invalid.reason) == ("refused", "invalid_policy")
    assert detail(invalid)["before"]["attributes"]  # what stayed in force
    assert (unknown.result, unknown.reason, unknown.sp_entity_id) == ("refused", "unknown_sp", "urn:nobody")
    assert service.registry.policy_for(ENTITY).attributes != ["password"]


def test_enable_and_disable(service: SpService, db: Database) -> None:
    service.add(sp_metadata(ENTITY, acs=ACS), actor="anna")
    service.set_enabled(ENTITY, False, actor="anna")
    assert service.registry.current_policy(ENTITY).enabled is False
    service.set_enabled(ENTITY, True, actor="cli:root")
    assert service.registry.current_policy(ENTITY).enabled is True
    [off] = rows(db, "sp_disabled")
    [on] = rows(db, "sp_enabled")
    assert detail(off)["after"] == {"enabled": False} and on.username == "cli:root"


def test_remove_audits_what_was_removed(service: SpService, db: Database) -> None:
    service.add(sp_metadata(ENTITY, acs=ACS), actor="anna")
    service.remove(ENTITY, actor="anna")
    assert service.registry.get(ENTITY) is None
    [row] = rows(db, "sp_removed")
    assert detail(row)["before"]["acs_urls"] == [ACS] and detail(row)["after"] is None


# -- what validation refuses, through the service: a message naming the problem and an audit row -----------

EXPIRED = make_cert("expired.example.test", not_after=datetime.now(UTC) - timedelta(days=2))
HOSTILE = sp_metadata(ENTITY, acs=ACS).replace(
    b"<md:EntityDescriptor", b'<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><md:EntityDescriptor', 1
)
NO_SP = (
    b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.test">'
    b'<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></md:EntityDescriptor>'
)
REFUSED_DOCUMENTS = {
    "hostile": (HOSTILE, "hostile XML"),
    "no_spssodescriptor": (NO_SP, "no SPSSODescriptor"),
    "http_acs": (sp_metadata(ENTITY, acs="http://mail.example.test/acs"), "must use https"),
    "expired_cert": (sp_metadata(ENTITY, acs=ACS, cert=EXPIRED), "expired on"),
    "unparsable_cert": (sp_metadata(ENTITY, acs=ACS, cert="bm90IGEgY2VydGlmaWNhdGU="), "not a valid base64 DER"),
}


@pytest.mark.parametrize("case", list(REFUSED_DOCUMENTS))
def test_preview_and_add_refuse_with_the_problem_named(case: str, service: SpService, db: Database) -> None:
    xml, fragment = REFUSED_DOCUMENTS[case]
    preview = service.preview(xml, actor="anna", ip="10.0.0.9", source="upload: sp.xml")
    assert preview.info is None and isinstance(preview.error, MetadataError)
    assert fragment in str(preview.error)
    with pytest.raises(MetadataError, match=fragment):
        service.add(xml, actor="anna", source="upload: sp.xml")
    assert service.registry.list() == []
    for row in rows(db, "sp_added"):
        assert (row.result, row.reason, row.username) == ("refused", "invalid_metadata", "anna")
        assert fragment in detail(row)["note"] and "root:" not in (row.detail or "")


def test_duplicate_entity_id_is_refused(service: SpService, db: Database) -> None:
    service.add(sp_metadata(ENTITY, acs=ACS), actor="anna")
    preview = service.preview(sp_metadata(ENTITY, acs=ACS + "2"))
    assert preview.registered  # the preview says that saving would replace
    with pytest.raises(DuplicateSpError, match="already registered"):
        service.add(sp_metadata(ENTITY, acs=ACS + "2"), actor="anna")
    refused = rows(db, "sp_added")[0]
    assert (refused.result, refused.reason, refused.sp_entity_id) == ("refused", "duplicate_entity_id", ENTITY)
    assert service.registry.get(ENTITY).acs_urls == (ACS,)


def test_a_url_that_times_out_or_serves_junk(settings: Settings, db: Database) -> None:
    quick = settings.model_copy(update={"metadata": settings.metadata.model_copy(update={"fetch_timeout": 1.0})})
    service = SpService(quick, db, SpRegistry(settings.metadata.dir, db, settings.sp_defaults), AuditTrail(db))
    routes = {
        "/slow?token=s3cr3t": Route(sp_metadata(ENTITY, acs=ACS), delay=3),
        "/html": Route(b"<html><body>Log in first</body></html>", content_type="text/html"),
        "/text": Route(b"user not found", content_type="text/plain"),
    }
    with http_server(routes) as base:
        slow = service.preview_url(f"{base}/slow?token=s3cr3t", allow_http=True, actor="anna")
        html = service.preview_url(f"{base}/html", allow_http=True, actor="anna")
        with pytest.raises(SpRegistryError, match="not XML"):
            service.add_from_url(f"{base}/text", allow_http=True, actor="anna")
    assert slow.error is not None and slow.error.reason == "fetch_timeout"
    assert "time limit" in str(slow.error) and "s3cr3t" not in str(slow.error)
    assert html.error is not None and "HTML page" in str(html.error)
    reasons = [(r.result, r.reason) for r in rows(db, "sp_added")]
    assert reasons == [("refused", "fetch_not_xml"), ("refused", "fetch_not_xml"), ("refused", "fetch_timeout")]
    assert all("s3cr3t" not in (r.detail or "") for r in rows(db, "sp_added"))
    # What the server sent is a stranger's text: it is described, never shown or kept.
    assert all("user not found" not in (r.detail or "") for r in rows(db, "sp_added"))


# -- pinned certificate --------------------------------------------------------------------------------------


def test_pinned_certificate_accepts_only_metadata_it_signed(
    service: SpService, db: Database, signer: tuple[str, str]
) -> None:
    other = new_key_and_certificate("someone-else.example.test")
    xml = sp_metadata(ENTITY, acs=ACS)
    tampered = signed(xml, signer).replace(ACS.encode(), b"https://evil.example.test/acs")
    routes = {
        "/signed": Route(signed(xml, signer)),
        "/unsigned": Route(xml),
        "/other": Route(signed(xml, other)),
        "/tampered": Route(tampered),
    }
    pinned = signer[1]
    with http_server(routes) as base:
        assert service.preview_url(f"{base}/unsigned", pinned, allow_http=True).error.problem.startswith(
            "the metadata is not signed"
        )
        assert "does not verify" in str(service.preview_url(f"{base}/other", pinned, allow_http=True).error)
        assert "does not verify" in str(service.preview_url(f"{base}/tampered", pinned, allow_http=True).error)
        with pytest.raises(MetadataError, match="not signed"):
            service.add_from_url(f"{base}/unsigned", allow_http=True, pinned_cert=pinned, actor="anna")
        entry = service.add_from_url(f"{base}/signed", allow_http=True, pinned_cert=pinned, actor="anna")
    assert entry.acs_urls == (ACS,)
    source = service.url_sources()[ENTITY]
    assert source.pinned_cert and "BEGIN CERTIFICATE" in source.pinned_cert
    added, refused = rows(db, "sp_added")  # newest first
    assert (refused.result, refused.reason) == ("refused", "bad_metadata_signature")
    assert added.result == "success" and "signed by CN=metadata-signer.example.test" in detail(added)["note"]


def test_a_signature_over_something_else_does_not_vouch_for_the_sp(signer: tuple[str, str]) -> None:
    from idp.sps.certs import load_pasted_certificate
    from idp.sps.signature import verify_pinned_signature

    xml = signed(sp_metadata(ENTITY, acs=ACS), signer)
    # The signature stays, but now names an element that is not the document's: a wrapping attempt.
    wrapped = xml.replace(b'URI="#', b'URI="#x', 1)
    with pytest.raises(MetadataError, match="the signature covers"):
        verify_pinned_signature(wrapped, load_pasted_certificate(signer[1]))


# -- refresh -------------------------------------------------------------------------------------------------


def test_refresh_picks_up_a_changed_document_and_keeps_the_last_good_copy(service: SpService, db: Database) -> None:
    md = "/md?key=abc"
    routes = {md: Route(sp_metadata(ENTITY, acs=ACS))}
    with http_server(routes) as base:
        service.add_from_url(f"{base}{md}", allow_http=True, actor="anna")
        same = service.refresh(ENTITY, actor="cli:ops")
        assert same.error is None and not same.changed

        routes[md] = Route(sp_metadata(ENTITY, acs="https://mail.example.test/new-acs"))
        changed = service.refresh(ENTITY, actor="cli:ops")
        assert changed.changed and service.registry.get(ENTITY).acs_urls == ("https://mail.example.test/new-acs",)

        routes[md] = Route(b"<html>maintenance</html>", content_type="text/html")
        broken = service.refresh(ENTITY, actor="cli:ops")
        routes[md] = Route(b"", status=503)
        broken_again = service.refresh(ENTITY, actor="cli:ops")
    assert broken.error is not None and broken.error.reason == "fetch_not_xml"
    assert service.registry.get(ENTITY).acs_urls == ("https://mail.example.test/new-acs",)  # last good copy
    source = service.url_sources()[ENTITY]
    assert source.failures == 2 and source.last_error_reason == "fetch_http_error"
    # Back-off: the second failure waits twice as long as the first.
    now = datetime.now(UTC)
    assert broken_again.next_refresh_at - now > broken.next_refresh_at - now
    events = [(r.result, r.reason) for r in rows(db, "sp_metadata_refreshed")]
    assert events == [("refused", "fetch_http_error"), ("refused", "fetch_not_xml"), ("success", None)]
    changed_row = rows(db, "sp_metadata_refreshed")[-1]
    assert detail(changed_row)["before"]["acs_urls"] == [ACS] and "key=abc" not in (changed_row.detail or "")


def test_expired_metadata_that_cannot_be_refreshed_is_reported_and_refused(service: SpService) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=5)
    routes = {"/md": Route(sp_metadata(ENTITY, acs=ACS, valid_until=soon.strftime("%Y-%m-%dT%H:%M:%SZ")))}
    with http_server(routes) as base:
        service.add_from_url(f"{base}/md", allow_http=True, actor="anna")
        routes["/md"] = Route(b"", status=404)
        later = soon + timedelta(minutes=1)
        result = service.refresh(ENTITY, actor="scheduler", now=later)
    assert result.expired_since is not None and "sign-in to this SP is refused" in (
        service.url_sources()[ENTITY].last_error or ""
    )
    assert service.registry.metadata_expired(ENTITY, now=later) == result.expired_since
    assert service.registry.metadata_expired(ENTITY) is None  # not yet, on the real clock


def test_a_url_that_starts_serving_another_sp_is_refused(service: SpService) -> None:
    routes = {"/md": Route(sp_metadata(ENTITY, acs=ACS))}
    with http_server(routes) as base:
        service.add_from_url(f"{base}/md", allow_http=True, actor="anna")
        routes["/md"] = Route(sp_metadata("https://other.example.test/sp", acs=ACS))
        result = service.refresh(ENTITY, actor="scheduler")
    assert result.error is not None and result.error.reason == "entity_id_changed"
    assert service.registry.get("https://other.example.test/sp") is None


def test_refresh_only_for_url_sps_and_a_file_replaces_the_url(service: SpService) -> None:
    routes = {"/md": Route(sp_metadata(ENTITY, acs=ACS))}
    with http_server(routes) as base:
        service.add_from_url(f"{base}/md", allow_http=True, actor="anna")
    service.add(sp_metadata(ENTITY, acs=ACS + "/file"), actor="anna", replace=True, source="sp.xml")
    assert ENTITY not in service.url_sources()  # else the next refresh would undo the admin's file
    with pytest.raises(NotFromUrlError):
        service.refresh(ENTITY, actor="cli:ops")


def test_refresh_due_takes_only_what_is_due(service: SpService) -> None:
    routes = {"/md": Route(sp_metadata(ENTITY, acs=ACS))}
    with http_server(routes) as base:
        now = datetime.now(UTC)
        service.add_from_url(f"{base}/md", allow_http=True, actor="anna", now=now)
        next_at = service.url_sources()[ENTITY].next_refresh_at
        assert service.refresh_due(actor="scheduler", now=next_at - timedelta(seconds=1)) == []
        [result] = service.refresh_due(actor="scheduler", now=next_at)
    assert result.error is None and result.entity_id == ENTITY


# -- manual registration ---------------------------------------------------------------------------------------


def test_manual_registration_goes_through_the_same_validation(service: SpService, db: Database) -> None:
    _, cert_pem = new_key_and_certificate("saas.example.test")
    entry = service.register_manual(ENTITY, ACS, cert_pem, "企业邮箱", actor="anna", nameid_format="emailAddress")
    assert (entry.entity_id, entry.name, entry.acs_urls) == (ENTITY, "企业邮箱", (ACS,))
    assert {c.use for c in entry.metadata.certificates} == {"signing", "encryption"}
    assert entry.metadata.nameid_formats == ("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",)
    assert detail(rows(db, "sp_added")[0])["note"] == "manual"

    other = "https://other.example.test/sp"
    with pytest.raises(MetadataError, match="must use https"):
        service.register_manual(other, "http://other.example.test/acs", cert_pem, actor="anna")
    with pytest.raises(MetadataError, match="not a PEM or base64 DER"):
        service.register_manual(
            other, ACS, "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----", actor="anna"
        )
    with pytest.raises(MetadataError, match="expired on"):
        service.register_manual(other, ACS, EXPIRED, actor="anna")  # bare base64, as consoles show it
    with pytest.raises(MetadataError, match="private key"):
        service.register_manual(
            other, ACS, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", actor="anna"
        )
    assert [r.reason for r in rows(db, "sp_added")[:4]] == ["invalid_metadata"] * 4
