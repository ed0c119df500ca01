"""validate_sp_metadata: what an admin may register, and the sentence they read when they may not."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree
from saml2.attribute_converter import ac_factory
from saml2.mdstore import MetaDataFile

from idp.sps.errors import MetadataError
from idp.sps.validate import EXPECTED, HTTP_POST, inspect_sp_metadata, validate_sp_metadata
from tests.unit.sp_fixtures import DATA, make_cert, sp_metadata

SHIBBOLETH = (DATA / "shibboleth-sp-metadata.xml").read_bytes()
FEDERATION = (DATA / "federation-one-sp.xml").read_bytes()


def refused(xml: bytes, **kwargs: object) -> MetadataError:
    with pytest.raises(MetadataError) as caught:
        validate_sp_metadata(xml, **kwargs)  # type: ignore[arg-type]
    return caught.value


# -- accepted metadata ---------------------------------------------------------------------------------


def test_python3_saml_metadata_is_read_completely() -> None:
    cert = make_cert("webmail.example.test")
    info = validate_sp_metadata(
        sp_metadata(
            "https://webmail.example.test/metadata",
            acs="https://webmail.example.test/acs",
            slo="https://webmail.example.test/slo",
            cert=cert,
            authn_requests_signed=True,
            want_assertions_signed=True,
            display_name="Webmail",
        )
    )
    assert info.entity_id == "https://webmail.example.test/metadata"
    assert info.display_name == "Webmail"
    assert info.acs_urls == ("https://webmail.example.test/acs",)
    assert info.assertion_consumer_services[0].binding == HTTP_POST
    assert [e.location for e in info.single_logout_services] == ["https://webmail.example.test/slo"]
    assert info.nameid_formats == ("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",)
    assert info.authn_requests_signed is True
    assert info.want_assertions_signed is True
    assert {c.use for c in info.certificates} == {"signing", "encryption"}
    assert all(c.subject == "CN=webmail.example.test" for c in info.certificates)
    assert info.cert_expiry is not None and info.cert_expiry > datetime.now(UTC) + timedelta(days=300)
    assert info.valid_until == datetime(2099, 12, 31, tzinfo=UTC)
    assert info.warnings == ()


def test_shibboleth_style_metadata() -> None:
    info = validate_sp_metadata(SHIBBOLETH)
    assert info.entity_id == "https://mail.example.test/shibboleth"
    assert info.display_name == "Example Webmail"  # mdui:DisplayName in English beats the organisation's name
    assert len(info.assertion_consumer_services) == 4
    assert info.acs_urls[0] == "https://mail.example.test/Shibboleth.sso/SAML2/POST"
    assert len(info.single_logout_services) == 3
    assert info.nameid_formats == (
        "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    )
    [cert] = info.certificates
    assert cert.use == "signing+encryption" and cert.signs
    assert cert.subject == "CN=sp.mail.example.test"
    assert cert.not_after == datetime(2124, 1, 1, tzinfo=UTC)
    assert info.authn_requests_signed is False and info.want_assertions_signed is False


def test_entities_descriptor_with_one_sp_yields_that_sp_alone() -> None:
    info = validate_sp_metadata(FEDERATION)
    assert info.entity_id == "https://app.partner.example.org/saml/metadata"
    assert info.display_name == "Partner GmbH"  # OrganizationDisplayName when there is no mdui
    assert info.authn_requests_signed is True and info.want_assertions_signed is True  # "true" and "1"
    assert info.valid_until == datetime(2120, 6, 30, 12, tzinfo=UTC)  # inherited from the aggregate
    assert info.single_logout_services[0].response_location == "https://app.partner.example.org/saml/slo/response"
    assert b"IDPSSODescriptor" not in info.entity_xml


@pytest.mark.parametrize("sample", ["shibboleth", "federation", "python3-saml"])
def test_what_we_store_is_what_pysaml2_reads(sample: str, tmp_path: Path) -> None:
    xml = {"shibboleth": SHIBBOLETH, "federation": FEDERATION, "python3-saml": sp_metadata()}[sample]
    info = validate_sp_metadata(xml)
    stored = tmp_path / "sp.xml"
    stored.write_bytes(info.entity_xml)
    md = MetaDataFile(ac_factory(), str(stored))
    md.load()
    assert list(md.keys()) == [info.entity_id]
    acs = md.service(info.entity_id, "spsso_descriptor", "assertion_consumer_service", HTTP_POST)
    assert [a["location"] for a in acs] == [
        e.location for e in info.assertion_consumer_services if e.binding == HTTP_POST
    ]


def test_display_name_falls_back_to_the_entity_id() -> None:
    assert validate_sp_metadata(sp_metadata("urn:example:sp")).display_name == "urn:example:sp"


@pytest.mark.parametrize(
    "acs", ["http://127.0.0.1:8080/acs", "http://127.9.8.7/acs", "http://localhost/acs", "http://[::1]:5000/acs"]
)
def test_plain_http_acs_on_loopback_is_allowed_for_local_testing(acs: str) -> None:
    assert validate_sp_metadata(sp_metadata(acs=acs, slo=None)).acs_urls == (acs,)


def test_encryption_certificate_that_expired_is_only_a_warning() -> None:
    fresh, old = make_cert("sign"), make_cert("enc", not_after=datetime.now(UTC) - timedelta(days=1))
    # python3-saml writes the signing KeyDescriptor first: put the expired certificate in the encryption one.
    signing, _, encryption = sp_metadata(cert=fresh).partition(b'use="encryption"')
    xml = signing + b'use="encryption"' + encryption.replace(fresh.encode(), old.encode())
    info = validate_sp_metadata(xml)
    assert any("encryption certificate 'CN=enc' expired" in w for w in info.warnings)


def test_expiry_within_a_month_is_a_warning() -> None:
    soon = datetime.now(UTC) + timedelta(days=10)
    info = validate_sp_metadata(sp_metadata(cert=make_cert(not_after=soon), valid_until=f"{soon:%Y-%m-%dT%H:%M:%SZ}"))
    assert any("expires on" in w for w in info.warnings)
    assert any("valid only until" in w and "--replace" in w for w in info.warnings)


# -- refused metadata ----------------------------------------------------------------------------------


def test_billion_laughs_is_refused_quickly() -> None:
    entities = "".join(f'<!ENTITY l{i} "&l{i - 1};&l{i - 1};&l{i - 1};&l{i - 1};&l{i - 1};">' for i in range(1, 12))
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE md [<!ENTITY l0 "ha">{entities}]>'
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&l11;"/>'
    ).encode()
    start = time.monotonic()
    error = refused(xml)
    assert "hostile XML" in str(error)
    assert time.monotonic() - start < 1


def test_external_entity_is_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-7f3a")
    xml = sp_metadata().replace(
        b"<md:EntityDescriptor",
        b"<!DOCTYPE x [<!ENTITY s SYSTEM 'file://" + str(secret).encode() + b"'>]>\n<md:EntityDescriptor",
        1,
    )
    xml = xml.replace(b"https://sp.example.test/saml/acs", b"https://sp.example.test/&s;")
    error = refused(xml)
    assert "hostile XML" in str(error)
    assert "TOP-SECRET" not in str(error)


def test_external_dtd_is_refused_even_in_utf16(tmp_path: Path) -> None:
    # The DOCTYPE check runs on the parsed document, not on the bytes: another encoding cannot hide it.
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY s "TOP-SECRET-9c1d">')
    text = (
        sp_metadata()
        .decode()
        .replace(
            "<md:EntityDescriptor", f'<!DOCTYPE md:EntityDescriptor SYSTEM "file://{dtd}">\n<md:EntityDescriptor', 1
        )
        .replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
    )
    error = refused(text.encode("utf-16"))
    assert "hostile XML" in str(error)
    assert "TOP-SECRET" not in str(error)


@pytest.mark.parametrize("junk", [b"", b"   \n", b"hello, I am not XML", b'{"entityID": "x"}', b"<md:EntityDescriptor"])
def test_not_xml_at_all(junk: bytes) -> None:
    error = refused(junk)
    # One sentence that names what was expected, without the parser's own exception text.
    assert str(error).endswith(f"expected {EXPECTED}"), str(error)
    assert "Error" not in str(error) and "(syntax error" not in str(error)


def test_wrong_root_element_is_named() -> None:
    error = refused(b"<html><body>Sign in</body></html>")
    assert str(error).startswith("the document is <html> without a namespace; expected SAML 2.0 metadata XML")


def test_identity_provider_metadata_is_not_an_sp() -> None:
    idp_only = FEDERATION.replace(b"SPSSODescriptor", b"AttributeAuthorityDescriptor")
    error = refused(idp_only)
    assert error.element == "EntitiesDescriptor"
    assert "SPSSODescriptor" in error.problem

    xml = sp_metadata().replace(b"md:SPSSODescriptor", b"md:IDPSSODescriptor")
    error = refused(xml)
    assert "no SPSSODescriptor" in error.problem and "identity provider" in error.problem


def test_several_sps_in_one_file_are_refused() -> None:
    aggregate = etree.fromstring(FEDERATION)
    second = copy.deepcopy(aggregate[-1])
    second.set("entityID", "https://second.example.org/sp")
    aggregate.append(second)
    error = refused(etree.tostring(aggregate))
    assert "2 service providers" in error.problem
    assert "https://second.example.org/sp" in error.problem


def test_missing_entity_id() -> None:
    error = refused(sp_metadata().replace(b'entityID="https://sp.example.test/saml/metadata"', b""))
    assert "entityID" in error.problem
    assert error.element is not None and error.element.startswith("EntityDescriptor")


def test_plain_http_acs_is_refused_with_the_element_named() -> None:
    error = refused(sp_metadata(acs="http://sp.example.test/acs"))
    assert error.element is not None and "AssertionConsumerService" in error.element
    assert "https" in error.problem and "http://sp.example.test/acs" in error.problem


@pytest.mark.parametrize("acs", ["http://127.0.0.1.evil.example/acs", "ftp://127.0.0.1/acs", "javascript:alert(1)"])
def test_lookalike_and_foreign_schemes_are_refused(acs: str) -> None:
    assert "AssertionConsumerService" in str(refused(sp_metadata(acs=acs, slo=None)))


def test_http_loopback_can_be_forbidden() -> None:
    error = refused(sp_metadata(acs="http://127.0.0.1:8080/acs", slo=None), allow_http_loopback=False)
    assert "https" in error.problem


def test_plain_http_logout_endpoint_is_refused_too() -> None:
    error = refused(sp_metadata(slo="http://sp.example.test/slo"))
    assert error.element is not None and "SingleLogoutService" in error.element


def test_acs_must_exist_and_one_must_be_http_post() -> None:
    artifact_only = SHIBBOLETH.replace(
        b'bindings:HTTP-POST" Location="https://mail.example.test/Shibboleth.sso/SAML2',
        b'bindings:HTTP-Artifact" Location="https://mail.example.test/Shibboleth.sso/SAML2',
    )
    assert "HTTP-POST" in refused(artifact_only).problem
    no_acs = sp_metadata().replace(b"md:AssertionConsumerService", b"md:ArtifactResolutionService")
    assert "no AssertionConsumerService" in refused(no_acs).problem


def test_expired_signing_certificate_is_refused() -> None:
    expired = make_cert("old.example.test", not_after=datetime.now(UTC) - timedelta(days=2))
    error = refused(sp_metadata(cert=expired))
    assert "expired" in error.problem and "CN=old.example.test" in error.problem
    assert error.element is not None and "KeyDescriptor" in error.element and "X509Certificate" in error.element


def test_expiry_is_judged_against_the_given_clock() -> None:
    validate_sp_metadata(SHIBBOLETH, now=datetime(2100, 1, 1, tzinfo=UTC))
    assert "expired" in refused(SHIBBOLETH, now=datetime(2124, 6, 1, tzinfo=UTC)).problem
    # Structure alone (what the registry reads back from disk) does not look at the clock.
    assert inspect_sp_metadata(SHIBBOLETH).entity_id == "https://mail.example.test/shibboleth"


@pytest.mark.parametrize("junk", ["bm90IGEgY2VydGlmaWNhdGU=", "!!not base64!!", ""])
def test_junk_certificate_is_refused(junk: str) -> None:
    cert = make_cert()
    error = refused(sp_metadata(cert=cert).replace(cert.encode(), junk.encode()))
    assert "X.509" in error.problem
    assert error.element is not None and "X509Certificate" in error.element


def test_key_descriptor_without_certificate_is_refused() -> None:
    xml = SHIBBOLETH.split(b"<ds:X509Data>")[0] + b"</ds:KeyInfo>" + SHIBBOLETH.split(b"</ds:KeyInfo>")[1]
    assert "X509Certificate" in refused(xml).problem


def test_signed_requests_announced_without_a_signing_certificate() -> None:
    error = refused(sp_metadata(with_cert=False, authn_requests_signed=True))
    assert "AuthnRequestsSigned" in error.problem


def test_valid_until_in_the_past_is_refused() -> None:
    error = refused(sp_metadata(valid_until="2020-01-01T00:00:00Z"))
    assert "validUntil" in str(error) and "past" in error.problem


def test_aggregate_valid_until_in_the_past_is_refused() -> None:
    error = refused(FEDERATION.replace(b'validUntil="2120-06-30T12:00:00Z"', b'validUntil="2021-06-30T12:00:00Z"'))
    assert "validUntil" in str(error)


def test_unparseable_boolean_and_date_are_named() -> None:
    assert (
        "AuthnRequestsSigned"
        in refused(sp_metadata().replace(b'AuthnRequestsSigned="false"', b'AuthnRequestsSigned="maybe"')).problem
    )
    assert "xs:dateTime" in refused(sp_metadata(valid_until="next tuesday")).problem


def test_oversized_document_is_refused_before_parsing() -> None:
    assert "limit" in refused(b"<a>" + b" " * 2_000_001 + b"</a>").problem
