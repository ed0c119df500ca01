"""OpenID Connect Front-Channel Logout end to end, joined to SAML single logout: one browser session signed in
to an independent SAML SP (python3-saml) and to three OIDC clients (Authlib's client), then ended at the IdP's
sign-out page, by the SP's LogoutRequest, or by a client's RP-initiated logout. The page each ends on loads
every other client's front-channel logout URI in a hidden frame, with ``iss`` and the ``sid`` its ID token
carries; headless Chromium proves the frames really load before the browser goes on.

The applications' side is one loopback HTTP server of this test: each client's front-channel logout URI and
callback, the page after logout, and the SAML SP's ACS and single-logout addresses (where python3-saml answers
the IdP's LogoutRequest). It records every request it gets.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from idp.audit import AuditTrail
from idp.oidc.clients import ClientStore
from idp.oidc.registration import add_client
from idp.settings import load_settings
from idp.store.db import Database
from tests.e2e.browser import Browser, Page
from tests.e2e.harness import IdpServer, eventually
from tests.e2e.saml_sp import IndependentSp, LoginResult
from tests.e2e.test_oidc import ALICE, REDIRECT, SCOPE, Rp, authorize, id_token_claims, start

pytestmark = pytest.mark.ad

ENTITY_PREFIX = "urn:ad-sso-bridge:oidc:"
TOLD = ("crm", "board")
"""The clients registered with a front-channel logout URI; "wiki" has none."""


@dataclass(frozen=True)
class Hit:
    at: float
    path: str
    query: dict[str, str]
    raw_query: str
    form: dict[str, str]


class Applications:
    """The loopback server every application of the test answers on, recording each request it gets."""

    def __init__(self) -> None:
        self.sp: IndependentSp | None = None
        self._hits: list[Hit] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def record(self, path: str, raw_query: str, form: dict[str, str]) -> None:
        query = {k: v[0] for k, v in parse_qs(raw_query).items()}
        with self._lock:
            self._hits.append(Hit(time.monotonic(), path, query, raw_query, form))

    def hits(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self._hits if h.path == path]

    def forget(self) -> None:
        with self._lock:
            self._hits.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(apps: Applications) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path.startswith("/frontchannel/"):
                # A client that takes its time: the hit is recorded once answered, so a page that went on
                # before its frames had loaded shows as a later hit here.
                time.sleep(0.5)
                self._page()
                apps.record(parts.path, parts.query, {})
                return
            apps.record(parts.path, parts.query, {})
            if parts.path == "/saml/sls" and "SAMLRequest" in parse_qs(parts.query) and apps.sp is not None:
                # The SP ends its own session and answers the IdP's LogoutRequest, as a real SP's page does.
                back, _, _ = apps.sp.answer_logout_request(apps.base_url + self.path)
                self.send_response(303)
                self.send_header("Location", back)
                self.end_headers()
                return
            self._page()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            apps.record(urlsplit(self.path).path, "", {k: v[0] for k, v in parse_qs(body).items()})
            self._page()

        def _page(self) -> None:
            # What the specification asks of a front-channel logout answer: never from a cache.
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Cache-Control", "no-cache, no-store")
            self.send_header("Pragma", "no-cache")
            self.end_headers()
            self.wfile.write(b"<!doctype html><title>app</title><p>ok</p>")

        def log_message(self, *_: object) -> None:
            pass

    return Handler


@dataclass
class World:
    server: IdpServer
    apps: Applications
    sp: IndependentSp
    rps: dict[str, Rp] = field(default_factory=dict)
    logout_uris: dict[str, str] = field(default_factory=dict)

    @property
    def after_logout(self) -> str:
        return self.apps.base_url + "/signed-out"

    def callback(self, name: str) -> str:
        return f"{self.apps.base_url}/callback/{name}"

    def told_url(self, name: str, sid: str) -> str:
        """What the frame of client ``name`` must load: its URI (with its own query) plus iss and sid."""
        return self.logout_uris[name] + "&" + urlencode({"iss": self.server.base_url, "sid": sid})


@pytest.fixture(scope="module")
def world(idp_server: IdpServer) -> Iterator[World]:
    apps = Applications()
    try:
        sp = IndependentSp(
            entity_id=f"https://fc-{uuid.uuid4().hex[:8]}.sp.test/saml",
            acs_url=apps.base_url + "/saml/acs",
            sign_requests=False,
            idp_metadata_xml=idp_server.metadata(),
        )
        folder = idp_server.root / "sp-metadata"
        folder.mkdir(exist_ok=True)
        path = folder / f"{urlsplit(sp.entity_id).hostname}.xml"
        path.write_bytes(sp.metadata_xml())
        idp_server.idp("sp", "add", str(path))
        apps.sp = sp
        world = World(idp_server, apps, sp)
        config = httpx.get(idp_server.base_url + "/.well-known/openid-configuration", timeout=10).json()
        suffix = uuid.uuid4().hex[:6]
        db = Database(load_settings(idp_server.config).database_url)
        try:
            for name in ("crm", "board", "wiki"):
                client_id = f"fc-{name}-{suffix}"
                # crm's URI has a query of its own: ours must follow it, not replace it.
                uri = f"{apps.base_url}/frontchannel/{name}?tenant=7" if name in TOLD else None
                made = add_client(
                    ClientStore(db),
                    AuditTrail(db),
                    client_id,
                    name.upper(),
                    [REDIRECT, world.callback(name), world.after_logout],
                    public=False,
                    actor="e2e",
                    frontchannel_logout_uri=uri,
                )
                assert made.secret is not None
                world.rps[name] = Rp(client_id, made.secret, config)
                if uri is not None:
                    world.logout_uris[name] = uri
        finally:
            db.dispose()
        yield world
    finally:
        apps.close()


@dataclass
class Session:
    """One browser signed in to the SP and every client: what each got."""

    browser: Browser
    at_sp: LoginResult
    tokens: dict[str, dict]


def _signed_in_everywhere(world: World) -> Session:
    browser = Browser()
    page = browser.get(world.sp.redirect_login_url())
    at_sp = world.sp.consume(*browser.saml_post(browser.login(page, "alice", ALICE.password)))
    tokens = {}
    for name, rp in world.rps.items():
        client, url, verifier, nonce = start(rp)
        callback = authorize(browser, url)  # the SAML session signs the person in: no password
        assert isinstance(callback, str), callback
        token = client.fetch_token(rp.config["token_endpoint"], authorization_response=callback, code_verifier=verifier)
        assert id_token_claims(rp, token, nonce)["sid"] == at_sp.session_index
        tokens[name] = token
    return Session(browser, at_sp, tokens)


def _frames(page: Page) -> list[str]:
    return [str(src) for src in page.doc().xpath("//iframe[@class='frontchannel']/@src")]


def _frame_src(resp: httpx.Response) -> list[str]:
    directives = [d.split() for d in resp.headers["Content-Security-Policy"].split(";")]
    return next((d[1:] for d in directives if d[:1] == ["frame-src"]), [])


def _go_on(page: Page) -> str:
    return urljoin(page.url, str(page.doc().get_element_by_id("go-on").get("href")))


def _page(resp: httpx.Response) -> Page:
    return Page(str(resp.url), resp.status_code, resp.text)


def _assert_script_waits(resp: httpx.Response, page: Page) -> None:
    """The page goes on by our static script (with the nonce the policy names), not at once."""
    nonce = page.doc().xpath("//script[contains(@src, '/static/frontchannel.js')]/@nonce")
    assert nonce and f"script-src 'nonce-{nonce[0]}'" in resp.headers["Content-Security-Policy"]
    assert not page.doc().xpath("//meta[@http-equiv='refresh']")


def _refused_refresh(rp: Rp, token: dict) -> None:
    with pytest.raises(OAuthError) as refused:
        rp.client().refresh_token(rp.config["token_endpoint"], refresh_token=token["refresh_token"])
    assert refused.value.error == "invalid_grant"


def _last_logout(server: IdpServer) -> dict:
    return server.audit_rows(event="logout", username="alice")[0]


def test_discovery_announces_front_channel_logout_with_the_session_id(idp_server):
    config = httpx.get(idp_server.base_url + "/.well-known/openid-configuration", timeout=10).json()
    assert config["frontchannel_logout_supported"] is True
    assert config["frontchannel_logout_session_supported"] is True
    assert "sid" in config["claims_supported"]


def test_the_id_token_carries_the_sessions_id_and_the_live_index_lists_the_clients(world):
    session = _signed_in_everywhere(world)  # each client checked the ID token and its sid
    listed = world.server.idp("sessions", "list", "--user", "alice", "--json").stdout
    ours = next(s for s in json.loads(listed) if s["session_index"] == session.at_sp.session_index)
    assert ours["sps"] == [world.sp.entity_id, *(ENTITY_PREFIX + rp.client_id for rp in world.rps.values())]


def test_the_idps_sign_out_page_tells_every_client_of_the_session(world):
    session = _signed_in_everywhere(world)
    browser, sid = session.browser, session.at_sp.session_index
    action, fields = browser.get(world.server.base_url + "/").form()

    opened = _page(browser.http.post(action, data=fields, follow_redirects=False))
    to_sp = opened.doc().xpath("//meta[@http-equiv='refresh']/@content")
    assert to_sp and not _frames(opened)  # first the SP's LogoutRequest: no client told on the way
    # The SP answers (the applications' server) and the browser comes back to the IdP's signed-out page.
    last = browser.http.get(str(to_sp[0]).split("url=", 1)[1], follow_redirects=True, timeout=30)

    page = _page(last)
    assert last.status_code == 200 and "You are signed out" in page.html
    assert _frames(page) == [world.told_url("crm", sid), world.told_url("board", sid)]  # wiki: no URI, no frame
    assert parse_qs(urlsplit(_frames(page)[0]).query) == {
        "tenant": ["7"],
        "iss": [world.server.base_url],
        "sid": [sid],
    }
    assert _frame_src(last) == [world.apps.base_url]
    assert page.text_of("not-confirmed") is None
    row = _last_logout(world.server)
    assert (row["reason"], row["sp_entity_id"]) == ("idp_page", None)
    crm, board, wiki = (ENTITY_PREFIX + world.rps[n].client_id for n in ("crm", "board", "wiki"))
    assert f"told by front channel: {crm}, {board}" in row["detail"]
    assert f"no front-channel logout URI: {wiki}" in row["detail"] and world.sp.entity_id in row["detail"]
    _refused_refresh(world.rps["wiki"], session.tokens["wiki"])  # told or not, its tokens ended with the session


def test_an_sps_logout_is_answered_from_a_page_that_tells_every_client(world):
    session = _signed_in_everywhere(world)
    at_sp, sid = session.at_sp, session.at_sp.session_index
    url = world.sp.logout_url(name_id=at_sp.nameid, session_index=sid, nameid_format=at_sp.nameid_format)

    last = session.browser.http.get(url, follow_redirects=False, timeout=30)

    page = _page(last)
    assert last.status_code == 200 and last.headers["Cache-Control"] == "no-store"
    assert _frames(page) == [world.told_url("crm", sid), world.told_url("board", sid)]
    assert _frame_src(last) == [world.apps.base_url]
    _assert_script_waits(last, page)
    world.sp.validate_logout_response(_go_on(page))  # without JavaScript: the link to the SP's answer
    row = _last_logout(world.server)
    assert (row["reason"], row["sp_entity_id"]) == ("sp_initiated", world.sp.entity_id)
    assert "told by front channel" in row["detail"]


def _crm_logout(world: World, session: Session) -> dict[str, str]:
    """The query of crm's RP-initiated logout, back to its page after logout."""
    return {
        "id_token_hint": session.tokens["crm"]["id_token"],
        "post_logout_redirect_uri": world.after_logout,
        "state": "bye",
    }


def test_a_clients_logout_tells_the_sp_then_the_other_clients_then_returns_to_it(world):
    session = _signed_in_everywhere(world)
    browser, sid = session.browser, session.at_sp.session_index
    params = _crm_logout(world, session)
    world.apps.forget()

    # On to the SP's single logout (the applications' server answers it), back, and the last page.
    last = browser.http.get(world.rps["crm"].config["end_session_endpoint"], params=params, timeout=30)

    page = _page(last)
    assert [h.query.get("SAMLRequest") is not None for h in world.apps.hits("/saml/sls")] == [True]
    assert last.status_code == 200 and "Returning to CRM" in page.html
    assert _frames(page) == [world.told_url("board", sid)]  # crm asked: it knows; wiki has no URI
    assert _frame_src(last) == [world.apps.base_url]
    _assert_script_waits(last, page)
    assert _go_on(page) == world.after_logout + "?state=bye"
    row = _last_logout(world.server)
    crm = ENTITY_PREFIX + world.rps["crm"].client_id
    assert (row["reason"], row["sp_entity_id"]) == ("sp_initiated", crm)
    assert f"told by front channel: {ENTITY_PREFIX + world.rps['board'].client_id} |" in row["detail"]
    assert crm not in row["detail"]
    _refused_refresh(world.rps["crm"], session.tokens["crm"])


def test_a_client_without_a_front_channel_uri_is_signed_out_without_frames(world):
    browser = Browser()
    wiki = world.rps["wiki"]
    client, url, verifier, _ = start(wiki)
    callback = authorize(browser, url, ALICE.password)
    assert isinstance(callback, str), callback
    token = client.fetch_token(wiki.config["token_endpoint"], authorization_response=callback, code_verifier=verifier)

    params = {"id_token_hint": token["id_token"], "post_logout_redirect_uri": world.after_logout, "state": "s"}
    answer = browser.http.get(wiki.config["end_session_endpoint"], params=params, follow_redirects=False)

    assert answer.status_code == 303 and answer.headers["Location"] == world.after_logout + "?state=s"
    _refused_refresh(wiki, token)
    row = _last_logout(world.server)
    assert (row["reason"], row["sp_entity_id"], row["detail"]) == ("sp_initiated", ENTITY_PREFIX + wiki.client_id, None)


# ---- in a real browser ---------------------------------------------------------------------------------------


def _chromium_signs_in(chrome, world: World, names: tuple[str, ...]) -> tuple[LoginResult, dict[str, dict]]:
    """alice in Chromium: the SP (its ACS on the applications' server), then each client (its callback there
    too). What the SP and each client got."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    chrome.get(world.sp.redirect_login_url())
    WebDriverWait(chrome, 30).until(ec.presence_of_element_located((By.NAME, "password")))
    chrome.find_element(By.NAME, "username").send_keys("alice")
    chrome.find_element(By.NAME, "password").send_keys(ALICE.password)
    chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    posted = eventually(lambda: world.apps.hits("/saml/acs"), within=30, what="the SP got no SAML response")
    at_sp = world.sp.consume(world.sp.acs_url, posted[-1].form)
    tokens = {}
    for name in names:
        rp = world.rps[name]
        client = OAuth2Client(
            rp.client_id, rp.secret, scope=SCOPE, redirect_uri=world.callback(name), code_challenge_method="S256"
        )
        verifier, nonce = generate_token(48), generate_token(16)
        url, _ = client.create_authorization_url(
            rp.config["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        chrome.get(url)
        hit = eventually(lambda n=name: world.apps.hits(f"/callback/{n}"), within=30, what=f"{name} got no code")[-1]
        callback = world.callback(name) + "?" + hit.raw_query
        token = client.fetch_token(rp.config["token_endpoint"], authorization_response=callback, code_verifier=verifier)
        assert id_token_claims(rp, token, nonce)["sid"] == at_sp.session_index  # checked as the client checks it
        tokens[name] = token
    return at_sp, tokens


def _csp_blocked(chrome) -> list[str]:
    return [e["message"] for e in chrome.get_log("browser") if "Content Security Policy" in e["message"]]


@pytest.mark.browser
def test_chromium_loads_the_other_clients_logout_uri_before_it_returns_to_the_client(world, chrome):
    world.apps.forget()
    at_sp, tokens = _chromium_signs_in(chrome, world, ("crm", "board"))
    sid = at_sp.session_index
    logout = (
        world.rps["crm"].config["end_session_endpoint"]
        + "?"
        + urlencode(
            {"id_token_hint": tokens["crm"]["id_token"], "post_logout_redirect_uri": world.after_logout, "state": "bye"}
        )
    )

    chrome.get(logout)

    back = eventually(lambda: world.apps.hits("/signed-out"), within=30, what="the browser never came back to crm")
    told = world.apps.hits("/frontchannel/board")
    assert [h.query for h in told] == [{"tenant": "7", "iss": world.server.base_url, "sid": sid}]
    assert told[0].at < back[0].at  # the frame had loaded before the page went on
    assert world.apps.hits("/frontchannel/crm") == []  # crm asked for the logout: it is not told again
    assert back[0].query == {"state": "bye"}
    assert [bool(h.query.get("SAMLRequest")) for h in world.apps.hits("/saml/sls")] == [True]  # the SP first
    assert chrome.current_url.startswith(world.after_logout)
    assert _csp_blocked(chrome) == []
    _refused_refresh(world.rps["board"], tokens["board"])


@pytest.mark.browser
def test_chromium_tells_the_clients_before_it_carries_the_sps_logout_answer(world, chrome):
    world.apps.forget()
    at_sp, tokens = _chromium_signs_in(chrome, world, ("board",))
    sid = at_sp.session_index
    chrome.get(world.sp.logout_url(name_id=at_sp.nameid, session_index=sid, nameid_format=at_sp.nameid_format))

    answered = eventually(
        lambda: [h for h in world.apps.hits("/saml/sls") if "SAMLResponse" in h.query],
        within=30,
        what="the SP never got its LogoutResponse",
    )
    told = world.apps.hits("/frontchannel/board")
    assert [h.query for h in told] == [{"tenant": "7", "iss": world.server.base_url, "sid": sid}]
    assert told[0].at < answered[0].at
    world.sp.validate_logout_response(world.apps.base_url + "/saml/sls?" + answered[0].raw_query)
    assert _csp_blocked(chrome) == []
    _refused_refresh(world.rps["board"], tokens["board"])


@pytest.mark.browser
def test_chromium_loads_the_frames_of_the_idps_signed_out_page_which_stays_accessible(world, chrome):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.e2e.a11y import axe_findings

    world.apps.forget()
    at_sp, tokens = _chromium_signs_in(chrome, world, ("board", "wiki"))
    chrome.get(world.server.base_url + "/")
    chrome.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()

    WebDriverWait(chrome, 30).until(ec.presence_of_element_located((By.ID, "frontchannel-told")))
    told = eventually(lambda: world.apps.hits("/frontchannel/board"), within=30, what="board was never told")
    assert [h.query for h in told] == [{"tenant": "7", "iss": world.server.base_url, "sid": at_sp.session_index}]
    assert [bool(h.query.get("SAMLRequest")) for h in world.apps.hits("/saml/sls")] == [True]
    assert chrome.current_url.startswith(world.server.base_url + "/saml/slo")
    assert chrome.find_element(By.ID, "frontchannel-told").text == "BOARD"  # wiki has no URI: not told
    assert axe_findings(chrome, "signed out, a client told") == []
    assert _csp_blocked(chrome) == []
    _refused_refresh(world.rps["wiki"], tokens["wiki"])


def test_a_clients_logout_stops_on_the_signed_out_page_when_an_sp_did_not_confirm(world):
    session = _signed_in_everywhere(world)
    browser, sid = session.browser, session.at_sp.session_index
    params = _crm_logout(world, session)
    to_sp = browser.http.get(world.rps["crm"].config["end_session_endpoint"], params=params, follow_redirects=False)
    assert to_sp.status_code == 303 and to_sp.headers["Location"].startswith(world.apps.base_url + "/saml/sls?")

    # The person comes back without the SP's answer.
    last = browser.http.get(world.server.base_url + "/saml/slo/next", follow_redirects=False)

    page = _page(last)
    assert last.status_code == 200 and page.text_of("not-confirmed")
    assert _frames(page) == [world.told_url("board", sid)]
    assert _frame_src(last) == [world.apps.base_url]
    assert "script-src" not in last.headers["Content-Security-Policy"]  # it stays: the person reads who is left
    assert _go_on(page) == world.after_logout + "?state=bye" and "Continue to CRM" in page.html
    row = _last_logout(world.server)
    assert (row["reason"], row["sp_entity_id"]) == ("partial", ENTITY_PREFIX + world.rps["crm"].client_id)
