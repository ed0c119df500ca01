"""Single logout across two SPs, with python3-saml (an independent library) playing both: our LogoutRequests
to the other SP, its LogoutResponse back, the status the first SP gets, and which LogoutRequests name this
browser's session."""

from __future__ import annotations

import base64
import json
import zlib
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.logout_response import OneLogin_Saml2_Logout_Response
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from idp.person import Person
from idp.saml.errors import SamlRequestError
from idp.saml.messages import LogoutRequestInfo, LogoutResponseInfo, NameId, PostForm, RedirectTo
from idp.signin.logout import LogoutChain, SignedInClient, SignedInSp, mismatch
from idp.sps.policy import SpPolicy
from tests.unit.saml_world import IDP_BASE, SP2_ENTITY, SP2_SLO, SP_ENTITY, SP_SLO, World, sp_metadata
from tests.unit.sp_fixtures import sp_metadata as fixture_metadata

POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SESSION = "sso-42"
SECOND = {"entity_id": SP2_ENTITY, "acs_url": "https://calendar.example.test/saml/acs", "slo_url": SP2_SLO}


def _slo_request_data(url: str, get: dict[str, str], query: str = "") -> dict:
    parts = urlsplit(url)
    data = {"https": "on", "http_host": parts.netloc, "script_name": parts.path, "get_data": get, "post_data": {}}
    if query:
        data["query_string"] = query
    return data


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _redirect_xml(url: str, param: str) -> etree._Element:
    xml = zlib.decompress(base64.b64decode(_query(url)[param]), -zlib.MAX_WBITS)
    return etree.fromstring(xml)


@pytest.fixture
def two_sps(world: World) -> World:
    """Both SPs sign their logout messages, and their metadata lists their signing certificates."""
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    world.registry.add("calendar", sp_metadata(world.sp_pem, sign_requests=True, **SECOND), entity_id=SP2_ENTITY)
    return world


def _second_sp_answers(world: World, url: str) -> tuple[str, str, list[str]]:
    """python3-saml at the second SP's SLO address: validates our LogoutRequest (signature, Destination,
    Issuer, NotOnOrAfter) and answers with a signed LogoutResponse. (the URL back, NameID, SessionIndexes)"""
    sp = world.sp(sign_requests=True, **SECOND)
    auth = OneLogin_Saml2_Auth(_slo_request_data(SP2_SLO, _query(url), urlsplit(url).query), sp)
    back = auth.process_slo(keep_local_session=True)
    assert auth.get_errors() == [], auth.get_last_error_reason()
    xml = auth.get_last_request_xml()
    return back, OneLogin_Saml2_Logout_Request.get_nameid(xml), OneLogin_Saml2_Logout_Request.get_session_indexes(xml)


def test_logout_request_to_the_other_sp_validates_and_its_answer_is_accepted(two_sps: World) -> None:
    sent = two_sps.idp.logout_request(SP2_ENTITY, NameId(EMAIL, "alice@example.test"), SESSION)

    assert sent is not None and isinstance(sent.out, RedirectTo) and sent.out.url.startswith(SP2_SLO + "?")
    assert _query(sent.out.url)["SigAlg"] == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    back, name_id, session_indexes = _second_sp_answers(two_sps, sent.out.url)
    assert (name_id, session_indexes) == ("alice@example.test", [SESSION])
    assert back.startswith(IDP_BASE + "/saml/slo?")

    answer = two_sps.idp.parse_logout_response(
        "redirect", _query(back)["SAMLResponse"], None, query_string=urlsplit(back).query
    )

    assert answer == LogoutResponseInfo(SP2_ENTITY, sent.request_id, True, "urn:oasis:names:tc:SAML:2.0:status:Success")


def test_persistent_nameid_goes_back_with_the_qualifiers_it_was_issued_with(two_sps: World, alice: Person) -> None:
    two_sps.registry.policies[SP2_ENTITY] = SpPolicy(nameid_format="persistent")
    req = two_sps.idp.requests.plain_request(SP2_ENTITY)
    issued = two_sps.idp.responses.name_id(req, two_sps.registry.policy_for(SP2_ENTITY), alice)
    assert (issued.name_qualifier, issued.sp_name_qualifier) == (f"{IDP_BASE}/saml/metadata", SP2_ENTITY)

    sent = two_sps.idp.logout_request(SP2_ENTITY, issued, SESSION)

    assert sent is not None and isinstance(sent.out, RedirectTo)
    name_id = _redirect_xml(sent.out.url, "SAMLRequest").find("{urn:oasis:names:tc:SAML:2.0:assertion}NameID")
    assert name_id is not None and name_id.text == issued.value
    assert (name_id.get("Format"), name_id.get("NameQualifier"), name_id.get("SPNameQualifier")) == (
        PERSISTENT,
        f"{IDP_BASE}/saml/metadata",
        SP2_ENTITY,
    )
    _second_sp_answers(two_sps, sent.out.url)


def test_an_sp_with_only_a_post_slo_address_gets_an_enveloped_signed_form(two_sps: World) -> None:
    two_sps.registry.add(
        "calendar", sp_metadata(two_sps.sp_pem, sign_requests=True, **SECOND, slo_binding=POST), entity_id=SP2_ENTITY
    )
    sent = two_sps.idp.logout_request(SP2_ENTITY, NameId(EMAIL, "alice@example.test"), SESSION)

    assert sent is not None and isinstance(sent.out, PostForm) and sent.out.action == SP2_SLO
    xml = base64.b64decode(sent.out.fields["SAMLRequest"])
    idp_cert = two_sps.idp.settings.idp.cert_file.read_text()
    assert OneLogin_Saml2_Utils.validate_sign(
        xml, idp_cert, xpath="/samlp:LogoutRequest/ds:Signature", raise_exceptions=True
    )
    assert OneLogin_Saml2_Logout_Request.get_id(xml) == sent.request_id
    assert OneLogin_Saml2_Logout_Request.get_session_indexes(xml) == [SESSION]


def test_an_sp_without_a_slo_address_cannot_be_told(world: World) -> None:
    world.registry.add("calendar", fixture_metadata(SP2_ENTITY, slo=None), entity_id=SP2_ENTITY)
    assert world.idp.logout_request(SP2_ENTITY, NameId(EMAIL, "alice@example.test"), SESSION) is None


@pytest.mark.parametrize(
    ("status", "codes"),
    [
        ("Success", ["Success"]),
        ("PartialLogout", ["Success", "PartialLogout"]),
        ("Requester", ["Requester"]),
    ],
)
def test_the_first_sp_gets_the_status_and_python3_saml_reads_it(two_sps: World, status: str, codes: list[str]) -> None:
    sp = two_sps.sp(sign_requests=True)
    auth = OneLogin_Saml2_Auth(_slo_request_data(SP_SLO, {}), sp)
    url = auth.logout(name_id="alice@example.test", session_index=SESSION)
    params = _query(url)
    query = urlsplit(url).query
    req = two_sps.idp.parse_logout_request("redirect", params["SAMLRequest"], params["RelayState"], query_string=query)

    out = two_sps.idp.logout_response(req, status)  # type: ignore[arg-type]

    assert isinstance(out, RedirectTo)
    found = _redirect_xml(out.url, "SAMLResponse").iter(f"{{{SAMLP}}}StatusCode")
    assert [c.get("Value").rsplit(":", 1)[-1] for c in found] == codes
    sp_auth = OneLogin_Saml2_Auth(_slo_request_data(SP_SLO, _query(out.url)), sp)
    sp_auth.process_slo(keep_local_session=True, request_id=auth.get_last_request_id())
    # PartialLogout sits under Success: the SP's own logout went through.
    assert sp_auth.get_errors() == ([] if status != "Requester" else ["logout_not_success"])


def test_unsigned_logout_messages_refused_from_an_sp_with_a_signing_certificate(world: World) -> None:
    """Whatever AuthnRequestsSigned says: the metadata of this SP does not ask for signed AuthnRequests."""
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=False))
    sp = world.sp(sign_requests=False)
    url = OneLogin_Saml2_Auth(_slo_request_data(SP_SLO, {}), sp).logout(name_id="alice@example.test")
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_logout_request("redirect", _query(url)["SAMLRequest"], None, query_string=urlsplit(url).query)
    assert err.value.reason == "unsigned_request"

    unsigned = OneLogin_Saml2_Logout_Response(sp)
    unsigned.build("_ours")
    response = unsigned.get_response()
    with pytest.raises(SamlRequestError) as err:
        world.idp.parse_logout_response("redirect", response, None, query_string=f"SAMLResponse={response}")
    assert err.value.reason == "unsigned_request"


def test_unsigned_logout_request_accepted_from_an_sp_without_a_certificate(world: World) -> None:
    world.registry.add("mail", sp_metadata(("", "")))
    url = OneLogin_Saml2_Auth(_slo_request_data(SP_SLO, {}), world.sp()).logout(name_id="alice@example.test")
    params, query = _query(url), urlsplit(url).query
    info = world.idp.parse_logout_request("redirect", params["SAMLRequest"], params["RelayState"], query_string=query)
    assert info.sp_entity_id == SP_ENTITY


def test_a_forged_logout_response_is_refused(two_sps: World) -> None:
    sent = two_sps.idp.logout_request(SP2_ENTITY, NameId(EMAIL, "alice@example.test"), SESSION)
    assert sent is not None and isinstance(sent.out, RedirectTo)
    back, _, _ = _second_sp_answers(two_sps, sent.out.url)
    query = urlsplit(back).query
    forged = query.replace("Signature=", "Signature=AAAA", 1)
    with pytest.raises(SamlRequestError) as err:
        two_sps.idp.parse_logout_response("redirect", _query(back)["SAMLResponse"], None, query_string=forged)
    assert err.value.reason == "bad_signature"


# ---- which LogoutRequests name this session -------------------------------------------------------------------

ISSUED = SignedInSp(SP_ENTITY, "Mail", NameId(EMAIL, "alice@example.test"))


def _request(name_id: str = "alice@example.test", session_indexes: tuple[str, ...] = (SESSION,), **more: str):
    return LogoutRequestInfo(
        "_r1",
        SP_ENTITY,
        name_id,
        session_indexes,
        None,
        POST,
        SP_SLO,
        **more,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "req",
    [
        _request(),
        _request(session_indexes=()),  # an SP may leave SessionIndex out
        _request(name_id_format=EMAIL),
        _request(name_id_format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"),
        _request(session_indexes=("someone-elses", SESSION)),
    ],
)
def test_a_logout_request_naming_the_issued_nameid_and_our_session_matches(req: LogoutRequestInfo) -> None:
    assert mismatch(req, ISSUED, SESSION) is None


@pytest.mark.parametrize(
    ("req", "signed_in", "says"),
    [
        (_request(name_id="bob@example.test"), ISSUED, "another person"),
        (_request(session_indexes=("sso-other",)), ISSUED, "another session"),
        (_request(name_id_format=PERSISTENT), ISSUED, "Format"),
        (
            _request(sp_name_qualifier="https://elsewhere"),
            SignedInSp(SP_ENTITY, "Mail", NameId(PERSISTENT, "alice@example.test", "https://idp", SP_ENTITY)),
            "SPNameQualifier",
        ),
        (_request(), None, "not signed in to"),
        (_request(session_indexes=()), SignedInSp(SP_ENTITY, "Mail", None), "names no session"),
    ],
)
def test_a_logout_request_for_someone_else_does_not_match(
    req: LogoutRequestInfo, signed_in: SignedInSp | None, says: str
) -> None:
    why = mismatch(req, signed_in, SESSION)
    assert why is not None and says in why


def test_a_session_kept_before_nameids_matches_by_session_index_only() -> None:
    assert mismatch(_request(), SignedInSp(SP_ENTITY, "Mail", None), SESSION) is None


# ---- the chain ------------------------------------------------------------------------------------------------

CALENDAR = SignedInSp(SP2_ENTITY, "Calendar", NameId(EMAIL, "alice@example.test"))
OLD = SignedInSp("https://old.example.test", "Old", None)


def test_the_chain_tells_every_other_sp_and_counts_answers() -> None:
    chain = LogoutChain.begin("alice", SESSION, [ISSUED, CALENDAR, OLD], _request())
    assert chain.not_confirmed.keys() == {OLD.entity_id}  # no NameID kept: it cannot be told

    sp = chain.next_sp()
    assert sp == CALENDAR and chain.next_sp() is None  # the SP that asked is answered, not told
    chain.sent(SP2_ENTITY, "_ours")
    # A round trip through the session (MessagePack has no tuples) keeps everything.
    restored = LogoutChain.from_dict(chain.to_dict())
    assert restored == chain

    assert "does not answer" in (chain.answered(LogoutResponseInfo(SP2_ENTITY, "_other", True, "x")) or "")
    assert "comes from" in (chain.answered(LogoutResponseInfo(SP_ENTITY, "_ours", True, "x")) or "")
    assert chain.answered(LogoutResponseInfo(SP2_ENTITY, "_ours", True, "x")) is None
    assert "waiting" in (chain.answered(LogoutResponseInfo(SP2_ENTITY, "_ours", True, "x")) or "")  # once only
    assert chain.confirmed == [SP2_ENTITY] and chain.partial  # OLD still not confirmed


def test_an_sp_that_does_not_answer_or_refuses_is_not_confirmed() -> None:
    chain = LogoutChain.begin("alice", SESSION, [ISSUED, CALENDAR], None)
    assert [chain.next_sp(), chain.next_sp(), chain.next_sp()] == [ISSUED, CALENDAR, None]
    chain.sent(SP_ENTITY, "_a")
    chain.gave_up()
    chain.sent(SP2_ENTITY, "_b")
    assert chain.answered(LogoutResponseInfo(SP2_ENTITY, "_b", False, f"{SAMLP}:Responder")) is None
    assert chain.not_confirmed == {SP_ENTITY: "it did not answer", SP2_ENTITY: f"it answered {SAMLP}:Responder"}
    assert chain.partial and chain.waiting_for is None


def test_a_chain_this_version_cannot_read_is_none() -> None:
    assert LogoutChain.from_dict({"username": "alice"}) is None


# ---- the OpenID Connect clients of the chain (front channel) --------------------------------------------------

CRM = SignedInClient("urn:ad-sso-bridge:oidc:crm", "CRM", "https://crm.example.test/fc")
BOARD = SignedInClient("urn:ad-sso-bridge:oidc:board", "Board", "https://board.example.test/logout?from=idp")
WIKI = SignedInClient("urn:ad-sso-bridge:oidc:wiki", "Wiki", None)


def test_every_client_but_the_one_that_asked_is_told_and_none_counts_as_not_confirmed() -> None:
    chain = LogoutChain.begin(
        "alice", SESSION, [ISSUED], None, clients=[CRM, BOARD, WIKI], initiator=CRM, then="https://crm.example.test/"
    )

    assert chain.clients == [BOARD, WIKI] and chain.front_channel == [BOARD]
    assert chain.next_sp() == ISSUED and chain.next_sp() is None  # clients are no SAML SPs: never sent a request
    chain.sent(SP_ENTITY, "_a")
    assert chain.answered(LogoutResponseInfo(SP_ENTITY, "_a", True, "x")) is None
    assert not chain.partial  # a frame answers nothing, so a client is never "not confirmed"
    assert chain.detail() == (
        f"confirmed: {SP_ENTITY} | told by front channel: {BOARD.entity_id} | "
        f"no front-channel logout URI: {WIKI.entity_id}"
    )


def test_an_sps_logout_tells_every_client() -> None:
    chain = LogoutChain.begin("alice", SESSION, [ISSUED], _request(), clients=[CRM, WIKI])
    assert chain.front_channel == [CRM] and chain.initiator is None and chain.then is None
    assert chain.detail() == f"told by front channel: {CRM.entity_id} | no front-channel logout URI: {WIKI.entity_id}"


def test_the_clients_to_tell_survive_the_round_trips_through_the_session() -> None:
    chain = LogoutChain.begin(
        "alice", SESSION, [ISSUED, CALENDAR], None, clients=[CRM, BOARD, WIKI], initiator=BOARD, then="https://b/?s=1"
    )
    chain.sent(SP_ENTITY, "_a")

    stored = json.loads(json.dumps(chain.to_dict()))  # plain data: what the session store keeps

    restored = LogoutChain.from_dict(stored)
    assert restored == chain and restored is not None
    assert restored.front_channel == [CRM] and restored.initiator == BOARD and restored.then == "https://b/?s=1"


def test_a_chain_begun_before_clients_were_told_reads_with_none_to_tell() -> None:
    chain = LogoutChain.begin("alice", SESSION, [ISSUED, CALENDAR], None)
    older = {k: v for k, v in chain.to_dict().items() if k not in ("clients", "initiator", "then")}
    restored = LogoutChain.from_dict(older)
    assert restored == chain and restored is not None and restored.clients == []
