"""The single-logout chain through the app (Flask's test client as the browser, python3-saml as both SPs),
with a session planted as a sign-in leaves it: the POST binding both ways, answers that answer nothing, and
the frames that tell the session's OpenID Connect clients on the page the chain ends on."""

from __future__ import annotations

import base64
import html
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask, session
from flask.testing import FlaskClient
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.logout_response import OneLogin_Saml2_Logout_Response
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from sqlalchemy import select
from werkzeug.test import TestResponse

from idp.app import create_app, services_of
from idp.saml.messages import NameId
from idp.settings import Settings
from idp.signin.logout import SignedInSp, sp_to_dict
from idp.store.models import AuditEvent
from idp.web.sso_session import remember_client, remember_sp
from tests.unit.saml_world import IDP_BASE, SP2_ENTITY, SP2_SLO, SP_ENTITY, SP_SLO, World, sp_metadata

POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
SESSION = "sso-42"
# The second SP offers only the POST binding for single logout: our LogoutRequest goes as a form, its answer
# comes back as a cross-site POST.
SECOND = {"entity_id": SP2_ENTITY, "acs_url": "https://calendar.example.test/saml/acs", "slo_url": SP2_SLO}


@pytest.fixture
def app(settings: Settings, world: World, tmp_path: Path) -> Flask:
    metadata_dir = tmp_path / "sp-metadata"
    metadata_dir.mkdir()
    (metadata_dir / "mail.xml").write_text(sp_metadata(world.sp_pem, sign_requests=True))
    second = sp_metadata(world.sp_pem, sign_requests=True, slo_binding=POST, **SECOND)
    (metadata_dir / "calendar.xml").write_text(second)
    quiet = settings.metadata.model_copy(update={"refresh_poll": 0, "dir": metadata_dir})
    return create_app(settings.model_copy(update={"metadata": quiet}))


def _calendar_answers(client: FlaskClient, world: World, request_xml: bytes) -> TestResponse:
    """The calendar SP's signed LogoutResponse to ``request_xml``, posted back as the SP's page would post it."""
    answer = OneLogin_Saml2_Logout_Response(world.sp(sign_requests=True, **SECOND))
    answer.build(OneLogin_Saml2_Logout_Request.get_id(request_xml))
    signed = OneLogin_Saml2_Utils.add_sign(
        answer.get_xml(), *world.sp_pem, sign_algorithm=C.RSA_SHA256, digest_algorithm=C.SHA256
    )
    return client.post("/saml/slo", data={"SAMLResponse": base64.b64encode(signed).decode()})


def _signed_in(client: FlaskClient, sps: tuple[str, ...] = (SP_ENTITY, SP2_ENTITY), oidc: tuple[str, ...] = ()) -> None:
    """The session sign-ins leave behind: the SAML SPs ``sps`` (by default mail, then calendar), then the
    OpenID Connect clients ``oidc``."""
    now = time.time()
    person = {
        "username": "alice",
        "dn": "CN=Alice,DC=example,DC=test",
        "guid": "6f1c2f9e-3d1a-4c55-9a7e-0b7d2e9c1a11",
        "upn": "alice@example.test",
        "mail": "alice@example.test",
        "display_name": "Alice",
        "given_name": "Alice",
        "surname": "Liddell",
        "groups": [],
        "group_dns": [],
        "attributes": {},
    }
    issued = {
        sp: {"entity_id": sp, "sp_name": name, "name_id": {"format": EMAIL, "value": "alice@example.test"}}
        for sp, name in ((SP_ENTITY, "Mail"), (SP2_ENTITY, "Calendar"))
    }
    with client.session_transaction() as s:
        s["sso"] = {
            "person": person,
            "session_index": SESSION,
            "authn_instant": now,
            "expires_at": now + 3600,
            "checked_at": now,
            "sps": list(sps),
            "issued": {sp: issued[sp] for sp in sps},
            "oidc": list(oidc),
        }


def _mail_logs_out(client: FlaskClient, world: World, name_id: str = "alice@example.test") -> tuple:
    auth = OneLogin_Saml2_Auth(_data(SP_SLO), world.sp(sign_requests=True))
    url = auth.logout(name_id=name_id, session_index=SESSION)
    return client.get("/saml/slo?" + urlsplit(url).query), auth.get_last_request_id()


def _data(url: str, get: dict[str, str] | None = None) -> dict:
    parts = urlsplit(url)
    return {"https": "on", "http_host": parts.netloc, "script_name": parts.path, "get_data": get or {}}


def _form(page: str) -> tuple[str, dict[str, str]]:
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)"', page))
    assert action, page
    return action.group(1), fields


def _reasons(app: Flask) -> list[tuple[str, str | None]]:
    with services_of(app).db.session() as db:
        return [(r.result, r.reason) for r in db.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_a_chain_over_the_post_binding_ends_with_success_at_the_sp_that_asked(app: Flask, world: World) -> None:
    client = app.test_client()
    _signed_in(client)
    to_calendar, mail_request = _mail_logs_out(client, world)

    assert to_calendar.status_code == 200  # an auto-POST form to the calendar's SLO address
    action, fields = _form(to_calendar.get_data(as_text=True))
    assert action == SP2_SLO and "Signing you out of Calendar" in to_calendar.get_data(as_text=True)
    assert (
        f"form-action {urlsplit(SP2_SLO).scheme}://{urlsplit(SP2_SLO).netloc}"
        in to_calendar.headers["Content-Security-Policy"]
    )
    xml = base64.b64decode(fields["SAMLRequest"])
    idp_cert = services_of(app).settings.idp.cert_file.read_text()
    assert OneLogin_Saml2_Utils.validate_sign(xml, idp_cert, xpath="/samlp:LogoutRequest/ds:Signature")
    assert OneLogin_Saml2_Logout_Request.get_session_indexes(xml) == [SESSION]

    parked = _calendar_answers(client, world, xml)
    assert parked.status_code == 303 and "/saml/slo/next?resume=" in parked.headers["Location"]
    to_mail = client.get(parked.headers["Location"])

    assert to_mail.status_code == 303 and to_mail.headers["Location"].startswith(SP_SLO + "?")
    get = {k: v[0] for k, v in parse_qs(urlsplit(to_mail.headers["Location"]).query).items()}
    mail = OneLogin_Saml2_Auth(_data(SP_SLO, get), world.sp(sign_requests=True))
    mail.process_slo(keep_local_session=True, request_id=mail_request)
    assert mail.get_errors() == [], mail.get_last_error_reason()
    assert _reasons(app)[-1] == ("success", "sp_initiated")
    with client.session_transaction() as s:
        assert "sso" not in s and "slo_chain" not in s


def test_an_answer_that_answers_nothing_is_refused(app: Flask, world: World) -> None:
    client = app.test_client()
    stray = OneLogin_Saml2_Logout_Response(world.sp(sign_requests=True))
    stray.build("_never_sent")
    signed = OneLogin_Saml2_Utils.add_sign(
        stray.get_xml(), *world.sp_pem, sign_algorithm=C.RSA_SHA256, digest_algorithm=C.SHA256
    )
    parked = client.post("/saml/slo", data={"SAMLResponse": base64.b64encode(signed).decode()})
    assert parked.status_code == 303
    assert client.get(parked.headers["Location"]).status_code == 400
    junk = client.post("/saml/slo", data={"SAMLResponse": base64.b64encode(b"<a/>").decode()})
    assert junk.status_code == 400
    assert _reasons(app) == [("refused", "unexpected_response"), ("refused", "malformed")]


def test_a_logout_request_naming_someone_else_keeps_the_session(app: Flask, world: World) -> None:
    client = app.test_client()
    _signed_in(client)
    answer, _ = _mail_logs_out(client, world, name_id="bob@example.test")
    assert answer.status_code == 303 and answer.headers["Location"].startswith(SP_SLO + "?")
    with client.session_transaction() as s:
        assert s["sso"]["session_index"] == SESSION
    assert _reasons(app) == [("refused", "session_mismatch")]


def test_the_idps_own_sign_out_page_names_the_applications_that_did_not_confirm(app: Flask) -> None:
    client = app.test_client()
    _signed_in(client)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert token is not None

    # The sign-out form's POST answers with a page that opens the SP's logout URL (idp.web.signin_flow.go_on):
    # a 303 to the SP's origin would be held back by the page's CSP form-action.
    to_mail = client.post("/logout", data={"csrf_token": token.group(1)})
    opens = re.search(r'http-equiv="refresh" content="0; url=([^"]+)"', to_mail.get_data(as_text=True))
    assert to_mail.status_code == 200 and opens is not None
    assert html.unescape(opens.group(1)).startswith(SP_SLO + "?SAMLRequest=")
    to_calendar = client.get("/saml/slo/next")  # back without the mail's answer
    assert to_calendar.status_code == 200 and _form(to_calendar.get_data(as_text=True))[0] == SP2_SLO
    page = client.get("/saml/slo/next").get_data(as_text=True)  # and without the calendar's

    assert re.findall(r"<li>([^<]+)</li>", page) == ["Mail", "Calendar"]
    assert _reasons(app) == [("success", "partial")]
    assert client.get("/saml/slo/next").headers["Location"].endswith("/")  # the chain is over


def test_an_sp_asking_again_for_the_same_person_costs_no_session_write(app: Flask) -> None:
    """The NameID kept for single logout is rewritten only when it changed (a transient one does)."""
    kept = NameId(EMAIL, "alice@example.test")
    with app.test_request_context("/saml/sso"):
        session["sso"] = {"sps": [SP_ENTITY], "issued": {SP_ENTITY: sp_to_dict(SignedInSp(SP_ENTITY, "Mail", kept))}}
        session.modified = False
        remember_sp(SP_ENTITY, "Mail", kept)
        assert not session.modified
        remember_sp(SP_ENTITY, "Mail", NameId("urn:oasis:names:tc:SAML:2.0:nameid-format:transient", "_new"))
        assert session.modified
        assert session["sso"]["issued"][SP_ENTITY]["name_id"]["value"] == "_new"


# ---- the OpenID Connect clients of the session: told by front channel on the last page -------------------------

CRM_LOGOUT = "https://crm.example.test/oidc/frontchannel?tenant=7"


def _clients(app: Flask) -> None:
    """crm has a front-channel logout URI (with a query of its own), wiki has none."""
    store = services_of(app).oidc.clients
    store.add("crm", "CRM", ["https://crm.example.test/cb"], public=True, frontchannel_logout_uri=CRM_LOGOUT)
    store.add("wiki", "Wiki", ["https://wiki.example.test/cb"], public=True)


def _frames(page: str) -> list[str]:
    return [html.unescape(src) for src in re.findall(r'<iframe class="frontchannel" src="([^"]+)"', page)]


def _told_crm() -> str:
    return CRM_LOGOUT + "&" + urlencode({"iss": IDP_BASE, "sid": SESSION})


def _frame_src(csp: str) -> list[str]:
    found = [d.split()[1:] for d in csp.split(";") if d.split()[:1] == ["frame-src"]]
    return found[0] if found else []


def _logout_row(app: Flask) -> AuditEvent:
    with services_of(app).db.session() as db:
        row = db.scalars(select(AuditEvent).where(AuditEvent.event == "logout").order_by(AuditEvent.id.desc())).first()
        assert row is not None
        db.expunge(row)
        return row


def test_the_idps_sign_out_page_tells_each_client_in_a_frame_its_policy_allows(app: Flask) -> None:
    _clients(app)
    client = app.test_client()
    _signed_in(client, sps=(), oidc=("crm", "wiki"))
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert token is not None

    page = client.post("/logout", data={"csrf_token": token.group(1)})

    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "You are signed out" in body
    assert _frames(body) == [_told_crm()]  # wiki has no front-channel logout URI: no frame
    assert re.findall(r"<li>([^<]+)</li>", body) == ["CRM"]
    csp = page.headers["Content-Security-Policy"]
    assert _frame_src(csp) == ["https://crm.example.test"] and "script-src" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    row = _logout_row(app)
    assert (row.result, row.reason, row.username) == ("success", "idp_page", "alice")
    assert row.detail == (
        "told by front channel: urn:ad-sso-bridge:oidc:crm | no front-channel logout URI: urn:ad-sso-bridge:oidc:wiki"
    )


def test_without_a_client_to_tell_the_signed_out_page_allows_no_frame(app: Flask) -> None:
    _clients(app)
    client = app.test_client()
    _signed_in(client, sps=(), oidc=("wiki",))
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert token is not None
    page = client.post("/logout", data={"csrf_token": token.group(1)})
    assert page.status_code == 200 and _frames(page.get_data(as_text=True)) == []
    assert "frame-src" not in page.headers["Content-Security-Policy"]
    with client.session_transaction() as s:
        assert "sso" not in s


def test_an_sps_logout_answered_by_redirect_waits_on_a_page_that_tells_the_clients(app: Flask, world: World) -> None:
    _clients(app)
    client = app.test_client()
    _signed_in(client, oidc=("crm", "wiki"))
    to_calendar, mail_request = _mail_logs_out(client, world)
    assert _frames(to_calendar.get_data(as_text=True)) == []  # the chain's middle steps tell no client
    assert "frame-src" not in to_calendar.headers["Content-Security-Policy"]
    _, fields = _form(to_calendar.get_data(as_text=True))
    xml = base64.b64decode(fields["SAMLRequest"])
    parked = _calendar_answers(client, world, xml)

    last = client.get(parked.headers["Location"])

    # Not a 303 to the mail's SLO address: a page that loads the frames, then goes on (or a link without JS).
    body = last.get_data(as_text=True)
    assert last.status_code == 200 and _frames(body) == [_told_crm()]
    assert 'http-equiv="refresh"' not in body
    go_on = re.search(r'<a href="([^"]+)" id="go-on">', body)
    assert go_on is not None and html.unescape(go_on.group(1)).startswith(SP_SLO + "?SAMLResponse=")
    csp = last.headers["Content-Security-Policy"]
    nonce = re.search(r'<script src="/static/frontchannel.js" nonce="([^"]+)"></script>', body)
    assert nonce is not None and f"script-src 'nonce-{nonce.group(1)}'" in csp
    assert _frame_src(csp) == ["https://crm.example.test"] and last.headers["Cache-Control"] == "no-store"
    get = {k: v[0] for k, v in parse_qs(urlsplit(html.unescape(go_on.group(1))).query).items()}
    mail = OneLogin_Saml2_Auth(_data(SP_SLO, get), world.sp(sign_requests=True))
    mail.process_slo(keep_local_session=True, request_id=mail_request)
    assert mail.get_errors() == [], mail.get_last_error_reason()
    row = _logout_row(app)
    assert (row.reason, row.sp_entity_id) == ("sp_initiated", SP_ENTITY)
    assert row.detail is not None and "told by front channel: urn:ad-sso-bridge:oidc:crm" in row.detail


def test_an_sps_logout_answered_by_post_sends_its_form_after_the_frames(app: Flask, world: World) -> None:
    _clients(app)
    client = app.test_client()
    _signed_in(client, oidc=("crm",))
    calendar = world.sp(sign_requests=True, **SECOND)
    auth = OneLogin_Saml2_Auth(_data(SP2_SLO), calendar)
    url = auth.logout(name_id="alice@example.test", session_index=SESSION)
    to_mail = client.get("/saml/slo?" + urlsplit(url).query)
    assert to_mail.status_code == 303 and to_mail.headers["Location"].startswith(SP_SLO + "?")  # no frame yet
    query = urlsplit(to_mail.headers["Location"]).query
    mail = OneLogin_Saml2_Auth(
        {**_data(SP_SLO, {k: v[0] for k, v in parse_qs(query).items()}), "query_string": query},
        world.sp(sign_requests=True),
    )
    back = mail.process_slo(keep_local_session=True)
    assert mail.get_errors() == [], mail.get_last_error_reason()

    last = client.get(back[back.index("/saml/slo") :])

    body = last.get_data(as_text=True)
    action, fields = _form(body)
    assert last.status_code == 200 and action == SP2_SLO and "SAMLResponse" in fields
    assert _frames(body) == [_told_crm()]
    nonce = re.search(r'<script src="/static/frontchannel.js" nonce="([^"]+)"></script>', body)
    assert nonce is not None and ".submit()" not in body  # the static script sends the form, once the frames load
    csp = last.headers["Content-Security-Policy"]
    assert f"script-src 'nonce-{nonce.group(1)}'" in csp and f"form-action {urlsplit(SP2_SLO).scheme}://" in csp
    assert _frame_src(csp) == ["https://crm.example.test"]
    xml = base64.b64decode(fields["SAMLResponse"])
    idp_cert = services_of(app).settings.idp.cert_file.read_text()
    assert OneLogin_Saml2_Utils.validate_sign(xml, idp_cert, xpath="/samlp:LogoutResponse/ds:Signature")
    assert OneLogin_Saml2_Logout_Response(calendar, fields["SAMLResponse"]).get_in_response_to() == (
        auth.get_last_request_id()
    )


def test_a_client_is_remembered_once_apart_from_the_sps_and_listed_in_the_live_index(app: Flask) -> None:
    now = time.time()
    with app.test_request_context("/oidc/authorize"):
        session["sso"] = {
            "person": {"username": "alice"},
            "session_index": SESSION,
            "authn_instant": now,
            "checked_at": now,
            "expires_at": now + 3600,
            "sps": [SP_ENTITY],
            "issued": {},
        }
        remember_client(SESSION, "crm")
        remember_client("another-session", "wiki")  # a code issued in a session since ended: not this one's
        assert session["sso"]["oidc"] == ["crm"] and session["sso"]["sps"] == [SP_ENTITY]
        session.modified = False
        remember_client(SESSION, "crm")
        assert not session.modified  # a client asking again costs no session write
    live = services_of(app).sessions.live("alice")
    assert [s.sps for s in live] == [(SP_ENTITY, "urn:ad-sso-bridge:oidc:crm")]
