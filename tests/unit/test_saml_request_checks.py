"""What a strict IdP checks in every request besides the signature's maths: that the one signature covers the
message we then read (no wrapping), that the request is fresh and addressed to us, and that it is answered once.

Wrapped documents are built with lxml from a request python3-saml genuinely signed, for an SP whose metadata
says AuthnRequestsSigned: each must be refused although the signature in it verifies."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote_plus

import pytest
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from sqlalchemy import func, select

from idp.saml.errors import SamlRequestError
from idp.store.db import Database
from idp.store.models import SeenRequestRow
from idp.store.seen import SeenRequests
from tests.unit.saml_world import (
    ACS_REQUEST_DATA,
    IDP_BASE,
    RSA_SHA256,
    SHA256,
    SP_ENTITY,
    SamlLayer,
    World,
    post_request,
    redirect_request,
    sp_metadata,
)

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS}


@pytest.fixture
def signing_world(world: World) -> World:
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    return world


def _signed_tree(world: World) -> etree._Element:
    saml_request, _ = post_request(world.sp(sign_requests=True), sign=True)
    return etree.fromstring(base64.b64decode(saml_request))


def _post(tree: etree._Element) -> str:
    return base64.b64encode(etree.tostring(tree)).decode()


def _sign(world: World, tree: etree._Element) -> str:
    key, cert = world.sp_pem
    xml = OneLogin_Saml2_Utils.add_sign(
        etree.tostring(tree), key, cert, sign_algorithm=RSA_SHA256, digest_algorithm=SHA256
    )
    return base64.b64encode(xml if isinstance(xml, bytes) else xml.encode()).decode()


def _unsigned_tree(world: World) -> etree._Element:
    return etree.fromstring(OneLogin_Saml2_Authn_Request(world.sp()).get_xml())


def _signature(tree: etree._Element) -> etree._Element:
    return tree.find("ds:Signature", NS)


def _forged_outer(genuine: etree._Element) -> etree._Element:
    """An AuthnRequest the attacker wrote (another ID, ForceAuthn, a NameIDPolicy of their choosing), unsigned."""
    outer = copy.deepcopy(genuine)
    outer.remove(_signature(outer))
    outer.set("ID", "_forged")
    outer.set("ForceAuthn", "true")
    policy = outer.find("samlp:NameIDPolicy", NS)
    if policy is not None:
        policy.set("Format", "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent")
    return outer


def _extensions(outer: etree._Element) -> etree._Element:
    ext = etree.Element(f"{{{SAMLP}}}Extensions")
    outer.find("saml:Issuer", NS).addnext(ext)
    return ext


def _inner_in_extensions(genuine: etree._Element) -> etree._Element:
    outer = _forged_outer(genuine)
    _extensions(outer).append(copy.deepcopy(genuine))
    return outer


def _signature_moved_to_outer(genuine: etree._Element) -> etree._Element:
    """The genuine signature at the top, still pointing at the genuine request now hidden in Extensions."""
    outer = _forged_outer(genuine)
    inner = copy.deepcopy(genuine)
    outer.find("saml:Issuer", NS).addnext(copy.deepcopy(_signature(genuine)))
    inner.remove(_signature(inner))
    _extensions(outer).append(inner)
    return outer


def _signature_moved_to_outer_same_id(genuine: etree._Element) -> etree._Element:
    outer = _signature_moved_to_outer(genuine)
    outer.set("ID", genuine.get("ID"))
    return outer


def _two_signatures(genuine: etree._Element) -> etree._Element:
    """pysaml2 keeps the last <ds:Signature> it reads, a verifier may check the first."""
    tree = copy.deepcopy(genuine)
    forged = copy.deepcopy(_signature(tree))
    forged.find("ds:SignatureValue", NS).text = base64.b64encode(b"\0" * 256).decode()
    _signature(tree).addnext(forged)
    return tree


def _reference_to_a_child(genuine: etree._Element) -> etree._Element:
    tree = copy.deepcopy(genuine)
    tree.find("saml:Issuer", NS).set("ID", "_child")
    tree.find(".//ds:Reference", NS).set("URI", "#_child")
    return tree


def _duplicated_id(genuine: etree._Element) -> etree._Element:
    tree = copy.deepcopy(genuine)
    decoy = etree.SubElement(_extensions(tree), "{urn:example:evil}Decoy")
    decoy.set("ID", genuine.get("ID"))
    return tree


def _signature_on_a_sibling(genuine: etree._Element) -> etree._Element:
    """The genuine request beside the forged one, both wrapped in an element of the attacker's choosing."""
    outer = _forged_outer(genuine)
    ext = _extensions(outer)
    wrapper = etree.SubElement(ext, "{urn:example:evil}Wrapper")
    wrapper.append(copy.deepcopy(genuine))
    return outer


def _space_in_root_id(genuine: etree._Element) -> etree._Element:
    tree = copy.deepcopy(genuine)
    tree.set("ID", " " + genuine.get("ID"))
    return tree


def _space_in_reference(genuine: etree._Element) -> etree._Element:
    tree = copy.deepcopy(genuine)
    reference = tree.find(".//ds:Reference", NS)
    reference.set("URI", reference.get("URI") + " ")
    return tree


def _unsigned_outer_signed_inner(genuine: etree._Element) -> etree._Element:
    outer = copy.deepcopy(genuine)
    outer.remove(_signature(outer))
    outer.set("ID", "_outer")
    _extensions(outer).append(copy.deepcopy(genuine))
    return outer


def _object_in_signature(genuine: etree._Element) -> etree._Element:
    tree = copy.deepcopy(genuine)
    obj = etree.SubElement(_signature(tree), f"{{{DS}}}Object")
    obj.append(_forged_outer(genuine))
    return tree


def _xslt_transform(genuine: etree._Element) -> etree._Element:
    tree = copy.deepcopy(genuine)
    transforms = tree.find(".//ds:Transforms", NS)
    etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116")
    return tree


WRAPPINGS: list[Callable[[etree._Element], etree._Element]] = [
    _inner_in_extensions,
    _signature_moved_to_outer,
    _signature_moved_to_outer_same_id,
    _two_signatures,
    _reference_to_a_child,
    _duplicated_id,
    _signature_on_a_sibling,
    _space_in_root_id,
    _space_in_reference,
    _unsigned_outer_signed_inner,
    _object_in_signature,
    _xslt_transform,
]


@pytest.mark.parametrize("wrap", WRAPPINGS, ids=lambda f: f.__name__.strip("_"))
def test_signature_wrapping_is_refused(signing_world: World, wrap: Callable[[etree._Element], etree._Element]) -> None:
    wrapped = _post(wrap(_signed_tree(signing_world)))
    with pytest.raises(SamlRequestError) as err:
        signing_world.idp.parse_authn_request("post", wrapped, None)
    assert err.value.reason == "bad_signature", err.value.message


@pytest.mark.parametrize("wrap", [_inner_in_extensions, _two_signatures, _duplicated_id], ids=lambda f: f.__name__)
def test_wrapping_is_refused_even_where_no_signature_is_required(
    world: World, wrap: Callable[[etree._Element], etree._Element]
) -> None:
    # A signature that is present is always checked (idp.saml.bindings): a wrapped one is never "just unsigned".
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", _post(wrap(_signed_tree(world))), None)
    assert err.value.reason == "bad_signature"


def test_the_genuine_request_the_wrappings_start_from_is_accepted(signing_world: World) -> None:
    tree = _signed_tree(signing_world)
    info = signing_world.idp.parse_authn_request("post", _post(tree), None)
    assert (info.request_id, info.force_authn) == (tree.get("ID"), False)


def test_a_comment_in_a_signed_issuer_changes_nothing_that_is_read(signing_world: World) -> None:
    # Canonicalisation drops comments, so the signature still verifies: what is read must then be what was signed.
    tree = _signed_tree(signing_world)
    issuer = tree.find("saml:Issuer", NS)
    head, tail = issuer.text[:12], issuer.text[12:]
    issuer.text = head
    comment = etree.Comment("x")
    comment.tail = tail
    issuer.append(comment)
    assert signing_world.idp.parse_authn_request("post", _post(tree), None).sp_entity_id == SP_ENTITY


# ---- fresh, addressed to us ---------------------------------------------------------------------------------


def _instant(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("delta", "reason"),
    [
        (timedelta(days=-2), "request_expired"),
        (timedelta(days=2), "request_not_yet_valid"),
        (timedelta(seconds=-(300 + 60 + 5)), "request_expired"),
        (timedelta(seconds=65), "request_not_yet_valid"),
    ],
)
def test_authn_request_outside_its_lifetime_is_refused(world: World, delta: timedelta, reason: str) -> None:
    tree = _unsigned_tree(world)
    tree.set("IssueInstant", _instant(delta))
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", _post(tree), None)
    assert err.value.reason == reason


@pytest.mark.parametrize("delta", [timedelta(seconds=-(300 + 50)), timedelta(seconds=50)])
def test_authn_request_within_lifetime_and_skew_is_answered(world: World, delta: timedelta) -> None:
    tree = _unsigned_tree(world)
    tree.set("IssueInstant", _instant(delta))
    assert world.idp.parse_authn_request("post", _post(tree), None).request_id == tree.get("ID")


def test_signed_old_authn_request_is_refused(signing_world: World) -> None:
    tree = _unsigned_tree(signing_world)
    tree.set("IssueInstant", _instant(timedelta(days=-2)))
    with pytest.raises(SamlRequestError) as err:
        signing_world.idp.parse_authn_request("post", _sign(signing_world, tree), None)
    assert err.value.reason == "request_expired"


def _logout_tree(world: World) -> etree._Element:
    """An unsigned LogoutRequest, from an SP whose metadata lists no signing certificate (one that lists a
    certificate must sign its logout messages)."""
    world.registry.add("mail", sp_metadata(("", "")))
    xml = OneLogin_Saml2_Logout_Request(world.sp(), name_id="alice@example.test", session_index="s").get_xml()
    return etree.fromstring(xml)


@pytest.mark.parametrize(("delta", "reason"), [(-2, "request_expired"), (2, "request_not_yet_valid")])
def test_logout_request_outside_its_lifetime_is_refused(world: World, delta: int, reason: str) -> None:
    tree = _logout_tree(world)
    tree.set("IssueInstant", _instant(timedelta(days=delta)))
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_logout_request("post", _post(tree), None)
    assert err.value.reason == reason


def test_garbled_issue_instant_is_malformed(world: World) -> None:
    tree = _unsigned_tree(world)
    tree.set("IssueInstant", "9999-12-31T23:59:59-23:59")
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", _post(tree), None)
    assert err.value.reason == "malformed"


def test_request_for_another_endpoint_is_refused(world: World) -> None:
    tree = _unsigned_tree(world)
    tree.set("Destination", "https://other-idp.example.test/sso")
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_authn_request("post", _post(tree), None)
    assert err.value.reason == "wrong_destination"


def test_unsigned_request_without_destination_is_answered(world: World) -> None:
    tree = _unsigned_tree(world)
    del tree.attrib["Destination"]
    assert world.idp.parse_authn_request("post", _post(tree), None).sp_entity_id == SP_ENTITY


def test_signed_request_without_destination_is_refused(signing_world: World) -> None:
    tree = _unsigned_tree(signing_world)
    del tree.attrib["Destination"]
    with pytest.raises(SamlRequestError) as err:
        signing_world.idp.parse_authn_request("post", _sign(signing_world, tree), None)
    assert err.value.reason == "wrong_destination"


# ---- answered once ------------------------------------------------------------------------------------------


def test_a_signed_redirect_request_is_answered_once(signing_world: World) -> None:
    saml_request, relay, query = redirect_request(signing_world.sp(sign_requests=True))
    signing_world.idp.parse_authn_request("redirect", saml_request, relay, query_string=query)
    with pytest.raises(SamlRequestError) as err:
        signing_world.idp.parse_authn_request("redirect", saml_request, relay, query_string=query)
    assert err.value.reason == "replayed_request"


def test_a_replay_to_another_worker_is_refused(world: World) -> None:
    other_worker = SamlLayer(world.idp.settings, world.registry)
    saml_request, _ = post_request(world.sp(), sign=False)
    world.idp.parse_authn_request("post", saml_request, None)
    with pytest.raises(SamlRequestError) as err:
        other_worker.parse_authn_request("post", saml_request, None)
    assert err.value.reason == "replayed_request"


def test_a_logout_request_is_answered_once(world: World) -> None:
    world.registry.add("mail", sp_metadata(("", "")))  # unsigned below: no signing certificate to sign with
    url = OneLogin_Saml2_Auth(dict(ACS_REQUEST_DATA, get_data={}), world.sp()).logout(name_id="alice@example.test")
    query = url.split("?", 1)[1]
    params = dict(part.split("=", 1) for part in query.split("&"))
    saml_request = unquote_plus(params["SAMLRequest"])
    world.idp.parse_logout_request("redirect", saml_request, None, query_string=query)
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_logout_request("redirect", saml_request, None, query_string=query)
    assert err.value.reason == "replayed_request"


def test_a_refused_forgery_does_not_use_up_the_genuine_id(signing_world: World) -> None:
    genuine = _signed_tree(signing_world)
    forged = copy.deepcopy(genuine)
    forged.set("ForceAuthn", "true")
    with pytest.raises(SamlRequestError):
        signing_world.idp.parse_authn_request("post", _post(forged), None)
    assert signing_world.idp.parse_authn_request("post", _post(genuine), None).request_id == genuine.get("ID")


def test_seen_ids_are_pruned_once_expired(world: World) -> None:
    db = Database(world.idp.settings.database_url)
    seen = SeenRequests(db, prune_every=timedelta(minutes=1))
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert seen.first_use(SP_ENTITY, "_a", now=t0, keep_until=t0 + timedelta(minutes=7))
    assert not seen.first_use(SP_ENTITY, "_a", now=t0, keep_until=t0 + timedelta(minutes=7))
    assert seen.first_use("https://other.example.test", "_a", now=t0, keep_until=t0 + timedelta(minutes=7))
    later = t0 + timedelta(minutes=8)
    assert seen.first_use(SP_ENTITY, "_b", now=later, keep_until=later + timedelta(minutes=7))
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(SeenRequestRow)) == 1


def test_destination_is_our_sso_endpoint(world: World) -> None:
    assert _unsigned_tree(world).get("Destination") == IDP_BASE + "/saml/sso"
