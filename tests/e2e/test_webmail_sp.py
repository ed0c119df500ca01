"""The demo "webmail" SP (python3-saml) on its own, against a stand-in IdP made with pysaml2.

The stand-in IdP is pysaml2's own Server with a freshly generated key: it reads the SP's metadata, checks the
signature of the SP's AuthnRequest and signs responses, so each assertion here is checked by a library
that is not the one under test.
"""

from __future__ import annotations

import base64
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import flask
import pytest
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.attribute_converter import ac_factory
from saml2.config import Config, IdPConfig
from saml2.mdstore import MetadataStore
from saml2.metadata import create_metadata_string
from saml2.response import IncorrectlySigned
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256
from werkzeug.serving import BaseWSGIServer, make_server

from idp.demo.webmail import create_webmail_app, sp_metadata_xml
from idp.keys.material import new_key_and_certificate
from tests.support import require

SP_BASE = "http://127.0.0.1:8025"
IDP_BASE = "http://127.0.0.1:8000"
IDP_ENTITY_ID = f"{IDP_BASE}/saml/metadata"
SSO_URL = f"{IDP_BASE}/saml/sso"
SLO_URL = f"{IDP_BASE}/saml/slo"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"


@pytest.fixture(autouse=True)
def _xmlsec1() -> None:
    # Skipped outside CI only; with CI=true a missing binary fails the run with this message.
    require(shutil.which("xmlsec1") is not None, "pysaml2's stand-in IdP signs with xmlsec1 (Debian: xmlsec1)")


def _write_keypair(directory: Path, common_name: str) -> tuple[Path, Path]:
    key_pem, cert_pem = new_key_and_certificate(common_name, days=30)
    key_file, cert_file = directory / "idp.key", directory / "idp.crt"
    key_file.write_text(key_pem)
    cert_file.write_text(cert_pem)
    return key_file, cert_file


def _idp_config(key_file: Path, cert_file: Path, sp_metadata: str | None) -> IdPConfig:
    conf = IdPConfig()
    conf.load(
        {
            "entityid": IDP_ENTITY_ID,
            "key_file": str(key_file),
            "cert_file": str(cert_file),
            "xmlsec_binary": shutil.which("xmlsec1"),
            "metadata": {"inline": [sp_metadata]} if sp_metadata else {},
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(SSO_URL, BINDING_HTTP_REDIRECT)],
                        "single_logout_service": [(SLO_URL, BINDING_HTTP_REDIRECT)],
                    },
                    "want_authn_requests_signed": True,
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                }
            },
        }
    )
    return conf


class StandInIdp:
    """pysaml2's IdP Server that knows the webmail SP; the test drives the browser's side by hand."""

    def __init__(self, workdir: Path) -> None:
        self.key_file, self.cert_file = _write_keypair(workdir, "stand-in-idp")
        self.metadata_xml = create_metadata_string(
            None, _idp_config(self.key_file, self.cert_file, None), sign=False
        ).decode()
        self._server: Server | None = None

    def trust(self, sp_metadata: str) -> None:
        self._server = Server(config=_idp_config(self.key_file, self.cert_file, sp_metadata))

    @property
    def server(self) -> Server:
        assert self._server is not None, "call trust() with the SP metadata first"
        return self._server

    def parse_redirect(self, location: str):  # -> saml2.request.AuthnRequest
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        return self.server.parse_authn_request(
            query["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            relay_state=query.get("RelayState"),
            sigalg=query.get("SigAlg"),
            signature=query.get("Signature"),
        )

    def signed_response(
        self, authn_request, *, mail: str, sign_alg: str = SIG_RSA_SHA256, digest_alg: str = DIGEST_SHA256
    ) -> str:
        message = authn_request.message
        response = self.server.create_authn_response(
            identity={"mail": [mail], "givenName": ["Alice"], "sn": ["Liddell"]},
            in_response_to=message.id,
            destination=message.assertion_consumer_service_url,
            sp_entity_id=message.issuer.text,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=mail),
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
            sign_response=True,
            sign_assertion=True,
            sign_alg=sign_alg,
            digest_alg=digest_alg,
        )
        return base64.b64encode(str(response).encode()).decode()


@pytest.fixture
def idp(tmp_path: Path) -> StandInIdp:
    return StandInIdp(tmp_path)


@pytest.fixture
def webmail(tmp_path: Path, idp: StandInIdp) -> flask.Flask:
    app = create_webmail_app(base_url=SP_BASE, idp_metadata_xml=idp.metadata_xml, state_dir=tmp_path / "sp")
    idp.trust(sp_metadata_xml(app))
    return app


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_metadata_is_accepted_by_python3_saml_and_pysaml2(webmail: flask.Flask) -> None:
    response = webmail.test_client().get("/metadata")

    assert response.status_code == 200
    assert response.mimetype == "application/samlmetadata+xml"
    xml = response.get_data(as_text=True)
    assert xml == sp_metadata_xml(webmail)
    # python3-saml: schema-valid, and its own checks of SP metadata find nothing wrong.
    assert not isinstance(OneLogin_Saml2_XML.validate_xml(xml, "saml-schema-metadata-2.0.xsd"), str)
    minimal_sp = {"sp": {"entityId": "x", "assertionConsumerService": {"url": SP_BASE}}}
    settings = OneLogin_Saml2_Settings(minimal_sp, sp_validation_only=True)
    assert settings.validate_metadata(xml) == []
    # pysaml2's metadata store reads the endpoints and the certificate.
    store = MetadataStore(ac_factory(), Config())
    store.load("inline", xml)
    entity_id = f"{SP_BASE}/metadata"
    assert store.assertion_consumer_service(entity_id, BINDING_HTTP_POST)[0]["location"] == f"{SP_BASE}/acs"
    slo = store.single_logout_service(entity_id, BINDING_HTTP_REDIRECT, "spsso")
    assert slo[0]["location"] == f"{SP_BASE}/sls"
    assert len(store.certs(entity_id, "spsso", "signing")) == 1
    assert store[entity_id]["spsso_descriptor"][0]["authn_requests_signed"] == "true"
    assert store[entity_id]["spsso_descriptor"][0]["want_assertions_signed"] == "true"


def test_key_and_certificate_survive_a_restart(tmp_path: Path, idp: StandInIdp) -> None:
    first = create_webmail_app(base_url=SP_BASE, idp_metadata_xml=idp.metadata_xml, state_dir=tmp_path / "sp")
    again = create_webmail_app(base_url=SP_BASE, idp_metadata_xml=idp.metadata_xml, state_dir=tmp_path / "sp")

    assert sp_metadata_xml(first) == sp_metadata_xml(again)
    assert (tmp_path / "sp" / "sp.key").stat().st_mode & 0o077 == 0


def test_visit_without_session_sends_signed_authn_request(webmail: flask.Flask, idp: StandInIdp) -> None:
    response = webmail.test_client().get("/mail/1")

    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(SSO_URL + "?")
    query = _query(location)
    assert query["SigAlg"] == RSA_SHA256
    assert query["Signature"]
    assert query["RelayState"] == "/mail/1"
    # pysaml2 (want_authn_requests_signed) verifies the signature against the SP's metadata certificate.
    request = idp.parse_redirect(location)
    assert request.message.issuer.text == f"{SP_BASE}/metadata"
    assert request.message.assertion_consumer_service_url == f"{SP_BASE}/acs"


def test_signature_covers_relay_state(webmail: flask.Flask, idp: StandInIdp) -> None:
    location = webmail.test_client().get("/mail/1").headers["Location"]

    with pytest.raises(IncorrectlySigned):
        idp.parse_redirect(location.replace("RelayState=%2Fmail%2F1", "RelayState=%2Fmail%2F2"))


def test_unsigned_requests_when_asked(tmp_path: Path, idp: StandInIdp) -> None:
    app = create_webmail_app(
        base_url=SP_BASE, idp_metadata_xml=idp.metadata_xml, state_dir=tmp_path / "sp", sign_requests=False
    )

    query = _query(app.test_client().get("/").headers["Location"])

    assert "SAMLRequest" in query
    assert "Signature" not in query
    assert "SigAlg" not in query


def test_signed_response_from_an_independent_idp_signs_in(webmail: flask.Flask, idp: StandInIdp) -> None:
    browser = webmail.test_client()
    request = idp.parse_redirect(browser.get("/mail/2").headers["Location"])

    saml_response = idp.signed_response(request, mail="alice@example.org")
    response = browser.post("/acs", data={"SAMLResponse": saml_response, "RelayState": "/mail/2"})

    assert response.status_code == 302
    assert response.headers["Location"] == "/mail/2"
    page = browser.get("/").get_data(as_text=True)
    assert 'Signed in as <strong id="nameid">alice@example.org</strong>' in page
    assert NAMEID_FORMAT_EMAILADDRESS in page
    assert "Liddell" in page
    assert ">mail<" in page  # the FriendlyName pysaml2 put next to the OID name


def test_replayed_response_is_rejected(webmail: flask.Flask, idp: StandInIdp) -> None:
    browser = webmail.test_client()
    request = idp.parse_redirect(browser.get("/").headers["Location"])
    form = {"SAMLResponse": idp.signed_response(request, mail="alice@example.org"), "RelayState": "/"}
    assert browser.post("/acs", data=form).status_code == 302

    replay = webmail.test_client().post("/acs", data=form)

    assert replay.status_code == 400
    assert "already used" in replay.get_data(as_text=True)


def test_sha1_signed_response_is_rejected(webmail: flask.Flask, idp: StandInIdp) -> None:
    browser = webmail.test_client()
    request = idp.parse_redirect(browser.get("/").headers["Location"])

    response = browser.post(
        "/acs",
        data={
            "SAMLResponse": idp.signed_response(
                request, mail="alice@example.org", sign_alg=SIG_RSA_SHA1, digest_alg=DIGEST_SHA1
            ),
        },
    )

    assert response.status_code == 400
    assert "Deprecated signature algorithm" in response.get_data(as_text=True)
    assert browser.get("/").status_code == 302  # still not signed in


def test_response_for_another_sp_is_rejected(webmail: flask.Flask, idp: StandInIdp) -> None:
    browser = webmail.test_client()
    request = idp.parse_redirect(browser.get("/").headers["Location"])
    request.message.assertion_consumer_service_url = "http://127.0.0.1:9999/acs"

    response = browser.post("/acs", data={"SAMLResponse": idp.signed_response(request, mail="a@example.org")})

    assert response.status_code == 400
    # python3-saml's reason names the Destination it did not expect
    assert "http://127.0.0.1:9999/acs" in response.get_data(as_text=True)


@pytest.fixture
def metadata_server() -> Iterator[tuple[str, Callable[[str], None]]]:
    """A real HTTP server for the IdP metadata, started only when the test says so."""
    # Bound but not listening until start(): connections are refused as if nothing ran there, and no other
    # process can take the port in the meantime.
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    port = reserved.getsockname()[1]
    started: list[BaseWSGIServer] = []

    def start(xml: str) -> None:
        app = flask.Flask("stand-in-idp-metadata")
        app.add_url_rule("/saml/metadata", "metadata", lambda: flask.Response(xml, mimetype="text/xml"))
        reserved.listen()
        server = make_server("127.0.0.1", port, app, fd=reserved.fileno())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)

    with reserved:
        yield f"http://127.0.0.1:{port}/saml/metadata", start
        for server in started:
            server.shutdown()
            server.server_close()


def test_idp_may_start_after_the_sp(tmp_path: Path, idp: StandInIdp, metadata_server) -> None:
    url, start_idp = metadata_server
    app = create_webmail_app(base_url=SP_BASE, idp_metadata_url=url, state_dir=tmp_path / "sp")
    browser = app.test_client()

    before = browser.get("/")
    start_idp(idp.metadata_xml)
    after = browser.get("/")

    assert before.status_code == 503
    assert url in before.get_data(as_text=True)
    assert after.status_code == 302
    assert after.headers["Location"].startswith(SSO_URL + "?")


def test_logout_sends_signed_request_and_accepts_the_answer(webmail: flask.Flask, idp: StandInIdp) -> None:
    browser = webmail.test_client()
    request = idp.parse_redirect(browser.get("/").headers["Location"])
    browser.post("/acs", data={"SAMLResponse": idp.signed_response(request, mail="alice@example.org")})

    location = browser.get("/logout").headers["Location"]

    assert location.startswith(SLO_URL + "?")
    query = _query(location)
    assert query["SigAlg"] == RSA_SHA256
    logout = idp.server.parse_logout_request(
        query["SAMLRequest"],
        BINDING_HTTP_REDIRECT,
        relay_state=query["RelayState"],
        sigalg=query["SigAlg"],
        signature=query["Signature"],
    )
    assert logout.message.name_id.text == "alice@example.org"
    answer = idp.server.create_logout_response(
        logout.message, [BINDING_HTTP_REDIRECT], sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256
    )
    redirect = idp.server.apply_binding(
        BINDING_HTTP_REDIRECT,
        str(answer),
        f"{SP_BASE}/sls",
        relay_state=query["RelayState"],
        response=True,
        sign=True,
        sigalg=SIG_RSA_SHA256,
    )
    sls_url = dict(redirect["headers"])["Location"]
    signed_out = browser.get(sls_url.removeprefix(SP_BASE))
    assert signed_out.status_code == 200, signed_out.get_data(as_text=True)
    assert "You are signed out" in signed_out.get_data(as_text=True)
    assert browser.get("/").status_code == 302
