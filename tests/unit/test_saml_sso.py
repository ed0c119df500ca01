"""Single sign-on: python3-saml sends AuthnRequests, our SAML layer answers, python3-saml validates strictly."""

from __future__ import annotations

import base64
import zlib
from datetime import UTC, datetime
from urllib.parse import quote_plus

import pytest
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C

from idp.access import AccessDecision
from idp.mail_address import NoMailAddress
from idp.person import Person
from idp.saml.errors import SamlRequestError
from idp.saml.nameid import persistent_id
from idp.sps.policy import SpPolicy
from tests.unit.saml_world import (
    RSA_SHA1,
    RSA_SHA256,
    SHA1,
    SHA256,
    SP_ACS,
    SP_ENTITY,
    World,
    algorithms_used,
    post_request,
    redirect_request,
    response_tree,
    sp_metadata,
    validated_response,
)

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _respond(world: World, info, person: Person):  # type: ignore[no-untyped-def]
    return world.idp.authn_response(info, person, session_index="sso-42", authn_instant=datetime.now(UTC))


def test_unsigned_redirect_request_gets_a_response_python3_saml_accepts(world: World, alice: Person) -> None:
    sp = world.sp()
    saml_request, relay, query = redirect_request(sp, "/inbox?folder=1")
    info = world.idp.parse_authn_request("redirect", saml_request, relay, query_string=query)
    assert (info.sp_entity_id, info.acs_url, info.relay_state) == (SP_ENTITY, SP_ACS, "/inbox?folder=1")

    form = _respond(world, info, alice)

    assert form.action == SP_ACS and form.fields["RelayState"] == "/inbox?folder=1"
    response = validated_response(sp, form, info.request_id)
    assert response.get_nameid() == "alice@example.test"
    assert response.get_session_index() == "sso-42"
    assert response.get_audiences() == [SP_ENTITY]
    assert response.get_friendlyname_attributes() == {
        "mail": ["alice@example.test"],
        "displayName": ["Alice Liddell"],
        "isMemberOf": ["Domain Users", "Mail Users"],
    }
    assert response.get_attributes()["urn:oid:1.3.6.1.4.1.5923.1.5.1.1"] == ["Domain Users", "Mail Users"]


def test_response_is_signed_twice_with_sha256_and_never_sha1(world: World, alice: Person) -> None:
    sp = world.sp()
    saml_request, relay, query = redirect_request(sp)
    info = world.idp.parse_authn_request("redirect", saml_request, relay, query_string=query)
    tree = response_tree(_respond(world, info, alice))
    assert algorithms_used(tree) == {RSA_SHA256, SHA256}
    ns = {"ds": "http://www.w3.org/2000/09/xmldsig#", "saml": "urn:oasis:names:tc:SAML:2.0:assertion"}
    assert len(tree.xpath("/*/ds:Signature", namespaces=ns)) == 1
    assert len(tree.xpath("/*/saml:Assertion/ds:Signature", namespaces=ns)) == 1
    ref = tree.xpath("//saml:AuthnContextClassRef/text()", namespaces=ns)
    assert ref == ["urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"]


def test_signed_redirect_request_is_accepted_when_metadata_requires_signing(world: World, alice: Person) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    sp = world.sp(sign_requests=True)
    saml_request, relay, query = redirect_request(sp)
    assert "Signature=" in query
    info = world.idp.parse_authn_request("redirect", saml_request, relay, query_string=query)
    validated_response(sp, _respond(world, info, alice), info.request_id)


def test_unsigned_request_is_refused_when_metadata_requires_signing(world: World) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    saml_request, relay, query = redirect_request(world.sp(sign_requests=False))
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("redirect", saml_request, relay, query_string=query)
    assert err.value.reason == "unsigned_request" and err.value.sp_entity_id == SP_ENTITY


def test_unsigned_request_is_refused_when_policy_requires_signing(world: World) -> None:
    world.registry.policies[SP_ENTITY] = SpPolicy(require_signed_requests=True)
    world.registry.add("mail", sp_metadata(world.sp_pem))
    saml_request, _ = post_request(world.sp(), sign=False)
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", saml_request, None)
    assert err.value.reason == "unsigned_request"


def test_tampered_redirect_query_is_a_bad_signature(world: World) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    saml_request, _, query = redirect_request(world.sp(sign_requests=True), "/a")
    tampered = query.replace("RelayState=%2Fa", "RelayState=%2Fb")
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("redirect", saml_request, "/b", query_string=tampered)
    assert err.value.reason == "bad_signature"


def test_flipped_signature_byte_is_a_bad_signature(world: World) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    saml_request, relay, query = redirect_request(world.sp(sign_requests=True))
    head, _, sig = query.partition("Signature=")
    raw = bytearray(base64.b64decode(sig.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")))
    raw[10] ^= 0x01
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request(
            "redirect", saml_request, relay, query_string=head + "Signature=" + quote_plus(base64.b64encode(raw))
        )
    assert err.value.reason == "bad_signature"


def test_sha1_signed_request_is_refused_when_signing_is_required(world: World) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    saml_request, relay, query = redirect_request(world.sp(sign_requests=True, sig_alg=RSA_SHA1))
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("redirect", saml_request, relay, query_string=query)
    assert err.value.reason == "bad_signature"


def test_signed_post_request_is_verified(world: World, alice: Person) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    sp = world.sp(sign_requests=True)
    saml_request, request_id = post_request(sp, sign=True)
    info = world.idp.parse_authn_request("post", saml_request, "rs")
    assert info.request_id == request_id
    validated_response(sp, _respond(world, info, alice), request_id)


def test_post_request_signed_with_sha1_is_refused_when_required(world: World) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    saml_request, _ = post_request(world.sp(), sign=True, sign_algorithm=RSA_SHA1, digest_algorithm=SHA1)
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", saml_request, None)
    assert err.value.reason == "bad_signature"


def test_post_request_altered_after_signing_is_refused(world: World) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    saml_request, _ = post_request(world.sp(sign_requests=True), sign=True)
    xml = base64.b64decode(saml_request).replace(b'ForceAuthn="false"', b'ForceAuthn="true"')
    if b"ForceAuthn" not in xml:
        xml = xml.replace(b"<samlp:AuthnRequest ", b'<samlp:AuthnRequest ForceAuthn="true" ', 1)
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", base64.b64encode(xml).decode(), None)
    assert err.value.reason == "bad_signature"


def test_unknown_sp_is_refused(world: World, sp_pem: tuple[str, str]) -> None:
    other = sp_metadata(sp_pem).replace(SP_ENTITY, "https://stranger.example.test/sp")
    saml_request, _ = post_request(world.sp(), sign=False)
    world.registry.add("mail", other)  # replaces the only registered SP with a different entityID
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", saml_request, None)
    assert err.value.reason == "unknown_sp"


def test_acs_url_not_in_metadata_is_refused(world: World) -> None:
    saml_request, _ = post_request(world.sp(acs_url="https://evil.example.test/acs"), sign=False)
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", saml_request, None)
    assert err.value.reason == "acs_not_in_metadata"


def test_a_disabled_sp_is_refused_by_the_access_decision_before_anyone_signs_in(world: World) -> None:
    """The request itself is fine (its SP is registered); whether anyone may use the SP is the access decision's,
    asked with no person yet (before the login page) and again once the person is known."""
    world.registry.policies[SP_ENTITY] = SpPolicy(enabled=False)
    saml_request, _ = post_request(world.sp(), sign=False)
    req = world.idp.parse_authn_request("post", saml_request, None)
    access = AccessDecision(world.registry, world.idp.sp_can_encrypt)
    assert [r.reason for r in access.refusals(None, req.sp_entity_id)] == ["sp_disabled"]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"
 xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_x" Version="2.0"
 IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>&lol3;</saml:Issuer></samlp:AuthnRequest>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"
 xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_x" Version="2.0"
 IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>&xxe;</saml:Issuer></samlp:AuthnRequest>"""


@pytest.mark.parametrize("document", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_hostile_xml_is_refused_without_expansion(world: World, document: bytes) -> None:
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", base64.b64encode(document).decode(), None)
    assert err.value.reason == "hostile_xml"


def test_hostile_xml_over_redirect_is_refused(world: World) -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    encoded = base64.b64encode(deflater.compress(BILLION_LAUGHS) + deflater.flush()).decode()
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("redirect", encoded, None, query_string="SAMLRequest=" + quote_plus(encoded))
    assert err.value.reason == "hostile_xml"


def test_oversized_post_request_is_refused_before_decoding(world: World) -> None:
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", "A" * 1_000_000, None)
    assert err.value.reason == "too_large"


def test_deflate_bomb_is_refused_during_bounded_inflate(world: World) -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = base64.b64encode(deflater.compress(b"<a>" + b" " * 5_000_000 + b"</a>") + deflater.flush()).decode()
    assert len(bomb) < 8192  # small on the wire, 5 MB inflated
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("redirect", bomb, None)
    assert err.value.reason == "too_large"


def test_overlong_relay_state_is_refused(world: World) -> None:
    saml_request, _ = post_request(world.sp(), sign=False)
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", saml_request, "x" * 5000)
    assert err.value.reason == "too_large"


def test_garbage_is_malformed(world: World) -> None:
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", base64.b64encode(b"<not-saml/>").decode(), None)
    assert err.value.reason == "malformed"


@pytest.mark.parametrize(
    ("policy_format", "requested", "expected_format"),
    [
        ("emailAddress", C.NAMEID_UNSPECIFIED, C.NAMEID_EMAIL_ADDRESS),
        ("emailAddress", C.NAMEID_PERSISTENT, C.NAMEID_PERSISTENT),
        ("persistent", C.NAMEID_UNSPECIFIED, C.NAMEID_PERSISTENT),
        ("emailAddress", C.NAMEID_TRANSIENT, C.NAMEID_TRANSIENT),
        ("unspecified", C.NAMEID_UNSPECIFIED, C.NAMEID_UNSPECIFIED),
    ],
)
def test_nameid_format_follows_request_then_policy(
    world: World, alice: Person, policy_format: str, requested: str, expected_format: str
) -> None:
    world.registry.policies[SP_ENTITY] = SpPolicy(nameid_format=policy_format)  # type: ignore[arg-type]
    world.registry.add("mail", sp_metadata(world.sp_pem))
    sp = world.sp(nameid_format=requested)
    saml_request, request_id = post_request(sp, sign=False)
    info = world.idp.parse_authn_request("post", saml_request, None)
    response = validated_response(sp, _respond(world, info, alice), request_id)
    assert response.get_nameid_format() == expected_format
    expected_value = {
        C.NAMEID_EMAIL_ADDRESS: "alice@example.test",
        C.NAMEID_UNSPECIFIED: "alice",
        C.NAMEID_PERSISTENT: persistent_id(
            bytes.fromhex(world.idp.settings.idp.persistent_id_secret_file.read_text()), alice, SP_ENTITY
        ),
    }.get(expected_format)
    if expected_value is not None:
        assert response.get_nameid() == expected_value


def test_persistent_nameid_is_stable_per_user_and_differs_per_sp(world: World, alice: Person) -> None:
    world.registry.policies[SP_ENTITY] = SpPolicy(nameid_format="persistent")
    world.registry.add("mail", sp_metadata(world.sp_pem))
    saml_request, _ = post_request(world.sp(nameid_format=C.NAMEID_UNSPECIFIED), sign=False)
    info = world.idp.parse_authn_request("post", saml_request, None)
    first, second = world.idp.name_id_for(info, alice), world.idp.name_id_for(info, alice)
    assert first == second and "alice" not in first[1]
    other_sp = type(info)(**{**info.__dict__, "sp_entity_id": "https://other.example.test/sp"})
    assert world.idp.name_id_for(other_sp, alice)[1] != first[1]


def test_transient_nameid_changes_every_time(world: World, alice: Person) -> None:
    sp = world.sp(nameid_format=C.NAMEID_TRANSIENT)
    info = world.idp.parse_authn_request("post", post_request(sp, sign=False)[0], None)
    assert world.idp.name_id_for(info, alice) != world.idp.name_id_for(info, alice)


def test_email_nameid_without_a_mail_address_is_for_the_person_to_read(world: World, alice: Person) -> None:
    """Not the SP's InvalidNameIDPolicy: the sign-in shows our own page naming what AD lacks."""
    sp = world.sp(nameid_format=C.NAMEID_EMAIL_ADDRESS)
    saml_request, _ = post_request(sp, sign=False)
    info = world.idp.parse_authn_request("post", saml_request, None)
    no_mail = Person(username="bob", dn="CN=bob", guid=alice.guid)
    with pytest.raises(NoMailAddress) as refused:
        world.idp.name_id_for(info, no_mail)
    assert refused.value.missing == "mail"


def test_a_nameid_attribute_the_person_lacks_is_invalid_nameid_policy(world: World, alice: Person) -> None:
    world.registry.policies[SP_ENTITY] = SpPolicy(nameid_format="unspecified", nameid_attribute="upn")
    sp = world.sp(nameid_format=C.NAMEID_UNSPECIFIED)
    saml_request, _ = post_request(sp, sign=False)
    info = world.idp.parse_authn_request("post", saml_request, None)
    no_upn = Person(username="bob", dn="CN=bob", guid=alice.guid)
    form = _respond(world, info, no_upn)
    tree = response_tree(form)
    codes = tree.xpath("//*[local-name()='StatusCode']/@Value")
    assert codes == [
        "urn:oasis:names:tc:SAML:2.0:status:Responder",
        "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy",
    ]
    assert not tree.xpath("//*[local-name()='Assertion']")


def test_error_response_carries_status_and_is_signed_sha256(world: World) -> None:
    sp = world.sp()
    saml_request, request_id = post_request(sp, sign=False)
    info = world.idp.parse_authn_request("post", saml_request, "rs")
    form = world.idp.error_response(info, "NoPassive")
    tree = response_tree(form)
    assert tree.get("InResponseTo") == request_id and tree.get("Destination") == SP_ACS
    assert "urn:oasis:names:tc:SAML:2.0:status:NoPassive" in tree.xpath("//*[local-name()='StatusCode']/@Value")
    assert algorithms_used(tree) == {RSA_SHA256, SHA256}


def test_only_the_policy_attributes_are_released(world: World, alice: Person) -> None:
    world.registry.policies[SP_ENTITY] = SpPolicy(attributes=["upn", "department", "samAccountName"])
    world.registry.add("mail", sp_metadata(world.sp_pem))
    sp = world.sp()
    saml_request, request_id = post_request(sp, sign=False)
    info = world.idp.parse_authn_request("post", saml_request, None)
    response = validated_response(sp, _respond(world, info, alice), request_id)
    assert response.get_friendlyname_attributes() == {
        "userPrincipalName": ["alice@example.test"],
        "department": ["Research"],
        "sAMAccountName": ["alice"],
    }


def test_a_new_sp_is_served_without_restart(world: World, alice: Person) -> None:
    before = world.idp.metadata_xml()
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    assert world.idp.metadata_xml() != before  # rebuilt (metadata carries a fresh ID and signature)
    with pytest.raises(SamlRequestError):
        world.idp.parse_authn_request("post", post_request(world.sp(), sign=False)[0], None)
