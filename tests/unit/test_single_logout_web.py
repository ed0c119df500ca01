"""The single-logout chain through the app (Flask's test client as the browser, python3-saml as both SPs),
with a session planted as a sign-in leaves it: the POST binding both ways, and answers that answer nothing."""

from __future__ import annotations

import base64
import html
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask, session
from flask.testing import FlaskClient
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.logout_response import OneLogin_Saml2_Logout_Response
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from sqlalchemy import select

from idp.app import create_app, services_of
from idp.saml.messages import NameId
from idp.settings import Settings
from idp.signin.logout import SignedInSp, sp_to_dict
from idp.store.models import AuditEvent
from idp.web.sso_session import remember_sp
from tests.unit.saml_world import SP2_ENTITY, SP2_SLO, SP_ENTITY, SP_SLO, World, sp_metadata

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


def _signed_in(client: FlaskClient) -> None:
    """The session two sign-ins (mail, then calendar) leave behind."""
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
            "sps": [SP_ENTITY, SP2_ENTITY],
            "issued": issued,
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

    calendar = world.sp(sign_requests=True, **SECOND)
    answer = OneLogin_Saml2_Logout_Response(calendar)
    answer.build(OneLogin_Saml2_Logout_Request.get_id(xml))
    signed = OneLogin_Saml2_Utils.add_sign(
        answer.get_xml(), *world.sp_pem, sign_algorithm=C.RSA_SHA256, digest_algorithm=C.SHA256
    )
    parked = client.post("/saml/slo", data={"SAMLResponse": base64.b64encode(signed).decode()})
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
