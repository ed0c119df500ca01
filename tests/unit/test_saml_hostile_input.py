"""Whatever arrives as a SAML request, the SAML layer answers with a request to serve or a SamlRequestError, and
the endpoints with a page: never an exception that would be a 500. Hypothesis writes the input: arbitrary
bytes and text, valid requests with bytes changed, and valid requests with attributes set to anything."""

from __future__ import annotations

import base64
import contextlib
import zlib
from pathlib import Path

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from sqlalchemy import select

from idp.app import create_app, services_of
from idp.saml import bindings
from idp.saml.errors import SamlRequestError
from idp.saml.messages import PostForm
from idp.settings import Settings
from idp.store.models import AuditEvent
from idp.web.signin_flow import post_form
from tests.unit.saml_world import SP_ACS, World, post_request, redirect_request, sp_metadata

# Function-scoped fixtures (one SAML world per test) are shared by a test's examples on purpose: building a
# world costs more than the examples, and nothing here depends on a clean one.
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

AUTHN_ATTRIBUTES = [
    "ID",
    "Version",
    "IssueInstant",
    "Destination",
    "ForceAuthn",
    "IsPassive",
    "ProtocolBinding",
    "AssertionConsumerServiceURL",
    "AssertionConsumerServiceIndex",
    "AttributeConsumingServiceIndex",
    "Consent",
]
LOGOUT_ATTRIBUTES = ["ID", "Version", "IssueInstant", "Destination", "NotOnOrAfter", "Reason"]
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "-1", "0", "1", "99999999999999999999", "true", "2", "1e3", "\u0000", "#", "_x"]),
    st.sampled_from(["2026-13-45T99:99:99Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "now"]),
)


def _refuses_or_answers(call, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """Any other exception fails the test: that is what would reach the person as a 500."""
    with contextlib.suppress(SamlRequestError):
        call(*args, **kwargs)


def _deflate(data: bytes) -> str:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return base64.b64encode(compressor.compress(data) + compressor.flush()).decode()


def _xml_text(data: bytes) -> str:
    return "".join(ch for ch in data.decode("utf-8", "replace") if ch.isprintable() or ch in "\t\n\r")


# ---- the decoders ----------------------------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=400))
def test_decoders_only_refuse(text: str) -> None:
    _refuses_or_answers(bindings.decode_post, text, 2048)
    _refuses_or_answers(bindings.decode_redirect, text, 2048)
    _refuses_or_answers(bindings.signed_query, text)
    _refuses_or_answers(bindings.check_relay_state, text, 80)


@FUZZ
@given(st.binary(max_size=400))
def test_xml_screens_only_refuse(data: bytes) -> None:
    _refuses_or_answers(bindings.read_safe_xml, data)
    _refuses_or_answers(bindings.has_enveloped_signature, data, "sp")
    _refuses_or_answers(bindings.decode_redirect, _deflate(data), 2048)
    _refuses_or_answers(bindings.signed_query, data)


# ---- the request reader -------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=600), st.one_of(st.none(), st.text(max_size=60)))
def test_arbitrary_bytes_are_refused(world: World, data: bytes, relay: str | None) -> None:
    encoded = base64.b64encode(data).decode()
    for parse in (world.idp.parse_authn_request, world.idp.parse_logout_request):
        _refuses_or_answers(parse, "post", encoded, relay)
        _refuses_or_answers(parse, "redirect", _deflate(data), relay, query_string=f"SAMLRequest={encoded}")


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_query_strings_are_refused(world: World, query: str) -> None:
    _refuses_or_answers(world.idp.parse_authn_request, "redirect", "x", None, query_string=query)
    _refuses_or_answers(world.idp.parse_logout_request, "redirect", "x", None, query_string=query)


def _mutate(data: bytes, cuts: list[tuple[int, int, bytes]]) -> bytes:
    for start, length, insert in cuts:
        at = start % (len(data) + 1)
        data = data[:at] + insert + data[at + length :]
    return data


CUTS = st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 8), st.binary(max_size=8)), min_size=1, max_size=4)


@FUZZ
@given(CUTS)
def test_mutated_authn_requests_are_refused_or_answered(world: World, cuts: list[tuple[int, int, bytes]]) -> None:
    xml = _mutate(OneLogin_Saml2_Authn_Request(world.sp()).get_xml().encode(), cuts)
    _refuses_or_answers(world.idp.parse_authn_request, "post", base64.b64encode(xml).decode(), None)
    _refuses_or_answers(world.idp.parse_authn_request, "redirect", _deflate(xml), None)


@settings(FUZZ, max_examples=20)  # each example signs a request and verifies it: about 0.2 s
@given(CUTS)
def test_mutated_signed_authn_requests_are_refused_or_answered(
    world: World, cuts: list[tuple[int, int, bytes]]
) -> None:
    world.registry.add("mail", sp_metadata(world.sp_pem, sign_requests=True))
    saml_request, _ = post_request(world.sp(sign_requests=True), sign=True)
    xml = _mutate(base64.b64decode(saml_request), cuts)
    _refuses_or_answers(world.idp.parse_authn_request, "post", base64.b64encode(xml).decode(), None)


@FUZZ
@given(CUTS)
def test_mutated_logout_requests_are_refused_or_answered(world: World, cuts: list[tuple[int, int, bytes]]) -> None:
    request = OneLogin_Saml2_Logout_Request(world.sp(), name_id="alice@example.test", session_index="s")
    xml = _mutate(request.get_xml().encode(), cuts)
    _refuses_or_answers(world.idp.parse_logout_request, "post", base64.b64encode(xml).decode(), None)


@FUZZ
@given(st.dictionaries(st.sampled_from(AUTHN_ATTRIBUTES), ODD_TEXT, min_size=1), st.booleans())
def test_authn_requests_with_odd_attributes_are_refused_or_answered(
    world: World, attributes: dict[str, str], drop_children: bool
) -> None:
    tree = etree.fromstring(OneLogin_Saml2_Authn_Request(world.sp()).get_xml())
    for name, value in attributes.items():
        tree.set(name, _xml_text(value.encode()))
    if drop_children:
        for child in list(tree)[1:]:
            tree.remove(child)
    _refuses_or_answers(world.idp.parse_authn_request, "post", base64.b64encode(etree.tostring(tree)).decode(), None)


@FUZZ
@given(st.dictionaries(st.sampled_from(LOGOUT_ATTRIBUTES), ODD_TEXT, min_size=1), ODD_TEXT)
def test_logout_requests_with_odd_attributes_are_refused_or_answered(
    world: World, attributes: dict[str, str], name_id: str
) -> None:
    request = OneLogin_Saml2_Logout_Request(world.sp(), name_id="alice@example.test", session_index="s")
    tree = etree.fromstring(request.get_xml())
    for name, value in attributes.items():
        tree.set(name, _xml_text(value.encode()))
    tree.find("{urn:oasis:names:tc:SAML:2.0:assertion}NameID").text = _xml_text(name_id.encode())
    _refuses_or_answers(world.idp.parse_logout_request, "post", base64.b64encode(etree.tostring(tree)).decode(), None)


# ---- the endpoints --------------------------------------------------------------------------------------------


@pytest.fixture
def app(settings: Settings, world: World, tmp_path: Path) -> Flask:
    metadata_dir = tmp_path / "sp-metadata"
    metadata_dir.mkdir()
    (metadata_dir / "mail.xml").write_text(sp_metadata(world.sp_pem))
    # Without the metadata refresh thread: the SP's metadata is a file that does not change.
    quiet = settings.metadata.model_copy(update={"refresh_poll": 0, "dir": metadata_dir})
    return create_app(settings.model_copy(update={"metadata": quiet}))


@FUZZ
@given(
    st.sampled_from(["/saml/sso", "/saml/slo"]),
    st.dictionaries(
        st.sampled_from(["SAMLRequest", "RelayState", "SigAlg", "Signature", "resume"]), st.text(max_size=80)
    ),
    st.booleans(),
)
def test_endpoints_answer_hostile_input_with_a_page(app: Flask, path: str, fields: dict[str, str], post: bool) -> None:
    client = app.test_client()
    answer = client.post(path, data=fields, follow_redirects=True) if post else client.get(path, query_string=fields)
    assert answer.status_code < 500, answer.get_data(as_text=True)[:500]


@FUZZ
@given(st.binary(max_size=400))
def test_endpoints_answer_hostile_requests_with_a_page(app: Flask, data: bytes) -> None:
    client = app.test_client()
    for path in ("/saml/sso", "/saml/slo"):
        assert client.get(path, query_string={"SAMLRequest": _deflate(data)}).status_code < 500
        posted = client.post(path, data={"SAMLRequest": base64.b64encode(data).decode()}, follow_redirects=True)
        assert posted.status_code < 500


@FUZZ
@given(st.text(max_size=80), st.one_of(st.none(), st.text(max_size=200)))
def test_idp_initiated_start_answers_any_query_with_a_page(app: Flask, sp: str, relay: str | None) -> None:
    query = {"sp": sp} if relay is None else {"sp": sp, "RelayState": relay}
    assert app.test_client().get("/saml/init", query_string=query).status_code < 500


@FUZZ
@given(
    st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=120)
    | st.sampled_from(['"><script>alert(1)</script>', "' onfocus='x", "</form><a href=x>"])
)
def test_relay_state_is_never_reflected_unescaped(app: Flask, relay: str) -> None:
    with app.test_request_context("/saml/sso"):
        page = post_form(PostForm(SP_ACS, {"SAMLResponse": "eA==", "RelayState": relay}), "Mail").get_data(as_text=True)
    value = etree.HTML(page).find(".//input[@name='RelayState']").get("value")
    assert value == relay
    assert "<script>alert" not in page


def test_a_replayed_request_url_gets_a_refusal_page_and_an_audit_row(app: Flask, world: World) -> None:
    saml_request, relay, _ = redirect_request(world.sp())
    query = {"SAMLRequest": saml_request, "RelayState": relay}
    first = app.test_client().get("/saml/sso", query_string=query)
    assert first.status_code in (200, 302, 303)
    again = app.test_client().get("/saml/sso", query_string=query)
    assert again.status_code == 400
    assert 'data-reason="replayed_request"' in again.get_data(as_text=True)
    with services_of(app).db.session() as s:
        rows = s.execute(select(AuditEvent.event, AuditEvent.result, AuditEvent.reason)).all()
    assert ("saml_request", "refused", "replayed_request") in [tuple(r) for r in rows]
