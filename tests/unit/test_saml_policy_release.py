"""Each per-SP policy field changes what python3-saml (the SP) reads in our response: NameID source and
domain, attribute names and NameFormat, Alibaba Cloud roles, encryption, and unsolicited responses."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.response import OneLogin_Saml2_Response

from idp.person import Person
from idp.saml.encrypt import NoEncryptionCertificate
from idp.saml.errors import SamlRequestError
from idp.saml.messages import PostForm
from idp.sps.policy import RoleMapping, SpPolicy
from idp.sps.vocabulary import ROLE_ATTRIBUTE, ROLE_SESSION_NAME_ATTRIBUTE
from tests.unit.saml_world import (
    ACS_REQUEST_DATA,
    SP_ACS,
    SP_ENTITY,
    World,
    post_request,
    response_tree,
    sp_metadata,
    validated_response,
)

NS = {
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
ADMIN_ROLE = RoleMapping(
    group="Mail Users", role_arn="acs:ram::1234567890:role/admin", provider_arn="acs:ram::1234567890:saml-provider/ad"
)
DEV_ROLE = RoleMapping(
    group="Engineering", role_arn="acs:ram::1234567890:role/dev", provider_arn="acs:ram::1234567890:saml-provider/ad"
)


def _sign_in(world: World, policy: SpPolicy, person: Person, *, nameid_format: str = C.NAMEID_UNSPECIFIED):  # type: ignore[no-untyped-def]
    """An AuthnRequest leaving the NameID format to us (our metadata lists emailAddress first, and python3-saml
    would otherwise ask for that), answered for ``person`` and validated by python3-saml."""
    world.registry.add("mail", sp_metadata(world.sp_pem), policy)
    sp = world.sp(nameid_format=nameid_format)
    saml_request, request_id = post_request(sp, sign=False)
    info = world.idp.parse_authn_request("post", saml_request, None)
    form = world.idp.authn_response(info, person, session_index="sso-1", authn_instant=datetime.now(UTC))
    return validated_response(sp, form, request_id), form


def _attributes(form: PostForm) -> dict[str, tuple[str | None, str | None, list[str]]]:
    """Name -> (NameFormat, FriendlyName, values) as written in the response."""
    out = {}
    for a in response_tree(form).xpath("//saml:Attribute", namespaces=NS):
        values = [v.text for v in a.xpath("saml:AttributeValue", namespaces=NS)]
        out[a.get("Name")] = (a.get("NameFormat"), a.get("FriendlyName"), values)
    return out


# ---- NameID -------------------------------------------------------------------------------------------------


def test_nameid_comes_from_the_policy_attribute(world: World, alice: Person) -> None:
    policy = SpPolicy(nameid_format="unspecified", nameid_attribute="upn")
    response, _ = _sign_in(world, policy, alice)
    assert (response.get_nameid_format(), response.get_nameid()) == (C.NAMEID_UNSPECIFIED, "alice@example.test")


def test_nameid_domain_makes_an_alibaba_cloud_ram_logon_name(world: World, alice: Person) -> None:
    policy = SpPolicy(nameid_format="emailAddress", nameid_attribute="mail", nameid_domain="corp.onaliyun.com")
    response, _ = _sign_in(world, policy, alice)
    assert (response.get_nameid_format(), response.get_nameid()) == (C.NAMEID_EMAIL_ADDRESS, "alice@corp.onaliyun.com")
    by_username, _ = _sign_in(world, SpPolicy(nameid_format="unspecified", nameid_domain="corp.onaliyun.com"), alice)
    assert by_username.get_nameid() == "alice@corp.onaliyun.com"


def test_persistent_nameid_ignores_attribute_and_domain(world: World, alice: Person) -> None:
    policy = SpPolicy(nameid_format="persistent", nameid_attribute="mail", nameid_domain="corp.onaliyun.com")
    response, _ = _sign_in(world, policy, alice)
    assert response.get_nameid_format() == C.NAMEID_PERSISTENT
    assert "@" not in response.get_nameid()


def test_nameid_attribute_without_a_value_is_invalid_nameid_policy(world: World, alice: Person) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem), SpPolicy(nameid_attribute="employeeID"))
    info = world.idp.parse_authn_request("post", post_request(world.sp(), sign=False)[0], None)
    form = world.idp.authn_response(info, alice, session_index="s", authn_instant=datetime.now(UTC))
    codes = response_tree(form).xpath("//samlp:StatusCode/@Value", namespaces=NS)
    assert codes[-1] == "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy"


# ---- attributes ---------------------------------------------------------------------------------------------


def test_uri_names_are_the_default(world: World, alice: Person) -> None:
    _, form = _sign_in(world, SpPolicy(attributes=["mail", "sn"]), alice)
    assert _attributes(form) == {
        "urn:oid:0.9.2342.19200300.100.1.3": (C.ATTRNAME_FORMAT_URI, "mail", ["alice@example.test"]),
        "urn:oid:2.5.4.4": (C.ATTRNAME_FORMAT_URI, "sn", ["Liddell"]),
    }


def test_basic_names_are_the_friendly_names(world: World, alice: Person) -> None:
    response, form = _sign_in(world, SpPolicy(attributes=["mail", "groups"], attribute_name_format="basic"), alice)
    assert response.get_attributes() == {"mail": ["alice@example.test"], "isMemberOf": ["Domain Users", "Mail Users"]}
    assert {name: fmt for name, (fmt, _, _) in _attributes(form).items()} == {
        "mail": C.ATTRNAME_FORMAT_BASIC,
        "isMemberOf": C.ATTRNAME_FORMAT_BASIC,
    }


def test_renamed_attributes_take_their_name_format_from_the_name(world: World, alice: Person) -> None:
    claim = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
    policy = SpPolicy(attributes=["mail", "displayName", "sn"], attribute_names={"mail": claim, "displayName": "name"})
    _, form = _sign_in(world, policy, alice)
    assert _attributes(form) == {
        claim: (C.ATTRNAME_FORMAT_URI, "mail", ["alice@example.test"]),
        "name": (C.ATTRNAME_FORMAT_BASIC, "displayName", ["Alice Liddell"]),
        "urn:oid:2.5.4.4": (C.ATTRNAME_FORMAT_URI, "sn", ["Liddell"]),
    }


# ---- Alibaba Cloud roles ------------------------------------------------------------------------------------


def test_roles_release_one_value_per_group_the_person_is_in(world: World, alice: Person) -> None:
    policy = SpPolicy(attributes=[], roles=[ADMIN_ROLE, DEV_ROLE], role_session_name_attribute="mail")
    response, form = _sign_in(world, policy, alice)
    attributes = response.get_attributes()
    assert attributes[ROLE_ATTRIBUTE] == [ADMIN_ROLE.value]  # alice is in Mail Users, not in Engineering
    assert attributes[ROLE_SESSION_NAME_ATTRIBUTE] == ["alice@example.test"]
    assert _attributes(form)[ROLE_ATTRIBUTE][0] == C.ATTRNAME_FORMAT_URI


def test_role_session_name_defaults_to_the_username_and_is_cleaned(world: World, alice: Person) -> None:
    response, _ = _sign_in(world, SpPolicy(attributes=[], roles=[ADMIN_ROLE]), alice)
    assert response.get_attributes()[ROLE_SESSION_NAME_ATTRIBUTE] == ["alice"]
    named, _ = _sign_in(
        world, SpPolicy(attributes=[], roles=[ADMIN_ROLE], role_session_name_attribute="displayName"), alice
    )
    assert named.get_attributes()[ROLE_SESSION_NAME_ATTRIBUTE] == ["Alice_Liddell"]


# ---- encryption ---------------------------------------------------------------------------------------------


def test_encrypted_assertion_decrypts_and_validates_at_the_sp(world: World, alice: Person) -> None:
    sp, metadata = world.encrypting_sp()
    world.registry.add("mail", metadata, SpPolicy(attributes=["mail"], encrypt_assertion=True))
    assert world.idp.sp_can_encrypt(SP_ENTITY)
    saml_request, request_id = post_request(sp, sign=False)
    info = world.idp.parse_authn_request("post", saml_request, None)
    form = world.idp.authn_response(info, alice, session_index="sso-9", authn_instant=datetime.now(UTC))

    tree = response_tree(form)
    assert not tree.xpath("/samlp:Response/saml:Assertion", namespaces=NS)
    assert b"alice@example.test" not in base64.b64decode(form.fields["SAMLResponse"])
    methods = tree.xpath("//xenc:EncryptionMethod/@Algorithm", namespaces=NS)
    assert methods == ["http://www.w3.org/2009/xmlenc11#aes256-gcm", "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"]
    assert tree.xpath("/samlp:Response/ds:Signature", namespaces=NS)  # the response is signed over the ciphertext

    response = validated_response(sp, form, request_id)  # decrypts, then checks the assertion's signature
    assert response.get_nameid() == "alice@example.test"
    assert response.get_friendlyname_attributes() == {"mail": ["alice@example.test"]}
    assert response.get_session_index() == "sso-9"


def test_encryption_without_an_sp_certificate_is_refused(world: World, alice: Person) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem), SpPolicy(encrypt_assertion=True))
    info = world.idp.parse_authn_request("post", post_request(world.sp(), sign=False)[0], None)
    # python3-saml lists its certificate for signing only unless it wants encrypted assertions
    assert not world.idp.sp_can_encrypt(SP_ENTITY)
    with pytest.raises(NoEncryptionCertificate):
        world.idp.authn_response(info, alice, session_index="s", authn_instant=datetime.now(UTC))


# ---- IdP-initiated ------------------------------------------------------------------------------------------


def test_unsolicited_response_goes_to_the_default_acs_without_in_response_to(world: World, alice: Person) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem), SpPolicy(idp_initiated=True, default_relay_state="/start"))
    info = world.idp.unsolicited_request(SP_ENTITY, None)
    assert (info.request_id, info.acs_url, info.relay_state) == (None, SP_ACS, "/start")
    form = world.idp.authn_response(info, alice, session_index="s", authn_instant=datetime.now(UTC))
    tree = response_tree(form)
    assert tree.get("InResponseTo") is None
    assert not tree.xpath("//saml:SubjectConfirmationData/@InResponseTo", namespaces=NS)
    response = OneLogin_Saml2_Response(world.sp(), form.fields["SAMLResponse"])
    assert response.is_valid(dict(ACS_REQUEST_DATA, post_data=form.fields), request_id=None), response.get_error()
    assert form.fields["RelayState"] == "/start"
    # Whoever builds the /saml/init link does not choose the landing page: only the policy's values count.
    with pytest.raises(SamlRequestError) as err:
        world.idp.unsolicited_request(SP_ENTITY, "/other")
    assert err.value.reason == "relay_state_not_allowed"
    assert world.idp.unsolicited_request(SP_ENTITY, "/start").relay_state == "/start"
    world.registry.policies[SP_ENTITY] = SpPolicy(
        idp_initiated=True, default_relay_state="/start", relay_state_allowed=["/other"]
    )
    assert world.idp.unsolicited_request(SP_ENTITY, "/other").relay_state == "/other"


def test_unsolicited_request_is_refused_unless_the_policy_allows_it(world: World) -> None:
    with pytest.raises(SamlRequestError) as err:
        world.idp.unsolicited_request(SP_ENTITY, None)
    assert err.value.reason == "idp_initiated_not_allowed"
    with pytest.raises(SamlRequestError) as err:
        world.idp.unsolicited_request("https://nobody.example.test/sp", None)
    assert err.value.reason == "unknown_sp"
    # A switched-off SP is the access decision's to refuse (it runs first in the sign-in), not the request's.
    world.registry.add("mail", sp_metadata(world.sp_pem), SpPolicy(idp_initiated=True, enabled=False))
    assert world.idp.unsolicited_request(SP_ENTITY, None).request_id is None
