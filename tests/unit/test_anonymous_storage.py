"""Nothing a stranger sends is kept without bound: the login page is shown without a session, a posted SAML
request is parked only once it passed every check, expired files are swept, Redis keys carry a TTL, and one
address is held to a request rate. The flood over HTTP against `idp serve` is tests/e2e/test_anonymous_flood.py."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from sqlalchemy import select

from idp.app import create_app, services_of
from idp.saml.messages import AuthnRequestInfo, LogoutRequestInfo
from idp.settings import Settings
from idp.store.models import AuditEvent
from idp.web.pending import PendingPosts
from idp.web.ratelimit import RateLimiter
from idp.web.session_store import PRUNE_INTERVAL, SessionFileCache
from tests.support import REDIS_URL, require_redis
from tests.unit.saml_world import World, post_request, redirect_request, sp_metadata


def _app(settings: Settings, world: World, tmp_path: Path, **server: Any) -> Flask:
    metadata_dir = tmp_path / "sp-metadata"
    metadata_dir.mkdir(exist_ok=True)
    (metadata_dir / "mail.xml").write_text(sp_metadata(world.sp_pem))
    quiet = settings.metadata.model_copy(update={"refresh_poll": 0, "dir": metadata_dir})
    return create_app(
        settings.model_copy(update={"metadata": quiet, "server": settings.server.model_copy(update=server)})
    )


@pytest.fixture
def app(settings: Settings, world: World, tmp_path: Path) -> Flask:
    return _app(settings, world, tmp_path)


def _stored(app: Flask) -> set[str]:
    return {p.name for p in (services_of(app).settings.server.data_dir / "sessions").iterdir()}


def _reasons(app: Flask) -> list[str | None]:
    with services_of(app).db.session() as db:
        return [row.reason for row in db.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def _token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def _reason_of(page: str) -> str | None:
    found = re.search(r'data-reason="([^"]+)"', page)
    return found.group(1) if found else None


# ---- the login page ------------------------------------------------------------------------------------------


def test_the_anonymous_login_page_stores_nothing_yet_its_form_keeps_csrf_protection(app: Flask) -> None:
    before = _stored(app)
    client = app.test_client()
    page = client.get("/login")
    assert page.status_code == 200
    assert _stored(app) == before
    cookies = page.headers.getlist("Set-Cookie")
    assert not any(c.startswith("idp_session=") for c in cookies)
    [csrf_cookie] = [c for c in cookies if c.startswith("__Host-idp_login=")]  # https: no subdomain can plant it
    assert "HttpOnly" in csrf_cookie and "SameSite=Lax" in csrf_cookie and "Secure" in csrf_cookie
    token = _token(page.get_data(as_text=True))

    # A second page in the same browser keeps the cookie, so the first tab's form still works.
    assert not any("idp_login=" in c for c in client.get("/login").headers.getlist("Set-Cookie"))

    def post(c: FlaskClient, csrf: str | None) -> str | None:
        fields = {"username": "", "password": "x", **({"csrf_token": csrf} if csrf is not None else {})}
        return _reason_of(c.post("/login", data=fields).get_data(as_text=True))

    assert post(client, None) == "csrf"
    assert post(client, "forged") == "csrf"
    assert post(client, token[:-2] + "xx") == "csrf"
    other_browser = app.test_client()
    other_browser.get("/login")
    assert post(other_browser, token) == "csrf"  # a token belongs to the browser it was shown to
    assert post(app.test_client(), token) == "csrf"  # and means nothing without that browser's cookie
    assert post(client, token) is None  # past the CSRF check: the pipeline asks for the missing username
    assert client.post("/login", data={"username": "", "password": "x", "csrf_token": token}).status_code == 401
    assert _stored(app) == before


# ---- the login form at /saml/sso -----------------------------------------------------------------------------


def test_a_redirect_request_gets_the_form_at_once_and_a_reload_is_the_same_request(app: Flask, world: World) -> None:
    """One request fewer per sign-in: the form comes with the answer to the SP's request. Reloading that page
    sends the answered request again; the browser that parked it gets its form back, anyone else a refusal."""
    client = app.test_client()
    _, _, query = redirect_request(world.sp())
    shown = client.get("/saml/sso?" + query)
    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
    page = shown.get_data(as_text=True)
    assert 'name="password"' in page and 'id="service"' in page
    found = re.search(r'name="k" value="([^"]+)"', page)
    assert found, page
    key = found.group(1)
    # The language switch comes back to the form's own address, not to the SP's request.
    switch = re.search(r'href="([^"]+)" lang="zh-CN"', page)
    assert switch, page
    assert parse_qs(urlsplit(switch.group(1).replace("&amp;", "&")).query)["next"] == [f"/login?k={key}"]

    reloaded = client.get("/saml/sso?" + query)
    assert reloaded.status_code == 303 and reloaded.headers["Location"].endswith(f"/login?k={key}")
    assert 'id="service"' in client.get(reloaded.headers["Location"]).get_data(as_text=True)
    assert _reasons(app) == []

    stranger = app.test_client().get("/saml/sso?" + query)
    assert stranger.status_code == 400 and _reason_of(stranger.get_data(as_text=True)) == "replayed_request"
    assert _reasons(app) == ["replayed_request"]


# ---- parked POSTs --------------------------------------------------------------------------------------------


def test_a_posted_request_that_fails_its_checks_is_not_parked(app: Flask) -> None:
    before = _stored(app)
    client = app.test_client()
    junk = base64.b64encode(b"<a>" + b"x" * 6000 + b"</a>").decode()
    for path in ("/saml/sso", "/saml/slo"):
        answer = client.post(path, data={"SAMLRequest": junk, "RelayState": "r"})
        assert answer.status_code == 400
        assert _reason_of(answer.get_data(as_text=True)) == "malformed"
    assert _stored(app) == before
    assert _reasons(app) == ["malformed", "malformed"]


def test_a_checked_request_is_parked_and_resumed_without_being_parsed_again(app: Flask, world: World) -> None:
    before = _stored(app)
    client = app.test_client()
    saml_request, _ = post_request(world.sp(), sign=False)
    parked = client.post("/saml/sso", data={"SAMLRequest": saml_request, "RelayState": "/inbox"})
    assert parked.status_code == 303
    resume = parked.headers["Location"]
    assert len(_stored(app) - before) == 1

    login = client.get(resume)  # parsing it again here would find its ID used up: replayed_request
    assert login.status_code == 303 and "/login?k=" in login.headers["Location"]
    page = client.get(login.headers["Location"]).get_data(as_text=True)
    assert 'id="service"' in page
    assert "replayed_request" not in _reasons(app)
    assert _reason_of(client.get(resume).get_data(as_text=True)) == "error.login_expired"  # once only


def test_a_parked_sign_in_request_does_not_resume_as_a_logout(app: Flask, world: World) -> None:
    client = app.test_client()
    saml_request, _ = post_request(world.sp(), sign=False)
    key = client.post("/saml/sso", data={"SAMLRequest": saml_request}).headers["Location"].rsplit("resume=", 1)[1]
    answer = client.get("/saml/slo", query_string={"resume": key})
    assert _reason_of(answer.get_data(as_text=True)) == "error.login_expired"


def test_a_posted_logout_request_is_parked_checked_and_resumed(app: Flask, world: World) -> None:
    client = app.test_client()
    sp = world.sp(sign_requests=True)
    xml = OneLogin_Saml2_Logout_Request(sp, name_id="alice@example.test", session_index="s1").get_xml()
    key, cert = sp.get_sp_data()["privateKey"], sp.get_sp_data()["x509cert"]
    signed = OneLogin_Saml2_Utils.add_sign(xml, key, cert, sign_algorithm=C.RSA_SHA256, digest_algorithm=C.SHA256)
    parked = client.post("/saml/slo", data={"SAMLRequest": base64.b64encode(signed).decode()})
    assert parked.status_code == 303, _reasons(app)
    answer = client.get(parked.headers["Location"])
    assert answer.status_code in (200, 303)
    assert "replayed_request" not in _reasons(app)


# ---- the stores forget what expired --------------------------------------------------------------------------


def test_expired_files_are_swept_at_most_once_a_minute(tmp_path: Path) -> None:
    real_now = time.time()  # cachelib stamps expiry by the real clock; the sweep's is moved past it
    clock = [real_now]
    cache = SessionFileCache(str(tmp_path), default_timeout=60, now=lambda: clock[0])

    def files() -> int:
        return sum(1 for _ in cache._list_dir())  # without cachelib's own file count

    cache.set("a", {"x": 1}, timeout=60)
    cache.set("b", {"x": 1}, timeout=60)
    assert files() == 2
    clock[0] = real_now + 30  # within the sweep interval: nothing is read
    cache.set("c", {"x": 1}, timeout=3600)
    assert files() == 3
    clock[0] = real_now + PRUNE_INTERVAL + 61
    cache.set("d", {"x": 1}, timeout=3600)
    assert files() == 2
    assert cache.get("c") == {"x": 1} and cache.get("a") is None


def test_the_file_store_holds_at_most_max_files(tmp_path: Path) -> None:
    cache = SessionFileCache(str(tmp_path), default_timeout=3600, max_files=20)
    for i in range(100):
        cache.set(f"k{i}", {"i": i})
    assert sum(1 for _ in cache._list_dir()) <= 21  # cachelib evicts down to max_files, then writes
    assert cache.get("k99") == {"i": 99}  # the newest stay


def test_the_file_store_writes_only_the_sessions_themselves(tmp_path: Path) -> None:
    """No shared count file to read before and rewrite after each write: a new session is one file write."""
    cache = SessionFileCache(str(tmp_path), default_timeout=3600)
    for key in ("a", "b", "c"):
        cache.set(key, {"k": key})
    cache.delete("b")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(cache._get_filename(k)).name for k in ("a", "c"))


def test_redis_keys_expire(settings: Settings, world: World, tmp_path: Path) -> None:
    """Against the real Redis: nothing for an anonymous login page, and a TTL on everything that is kept."""
    store = redis.Redis.from_url(require_redis())
    before = set(store.keys("idp:*"))
    app = _app(settings, world, tmp_path, session_backend="redis", redis_url=REDIS_URL)
    client = app.test_client()
    client.get("/login")
    assert set(store.keys("idp:*")) == before
    saml_request, _ = post_request(world.sp(), sign=False)
    parked = client.post("/saml/sso", data={"SAMLRequest": saml_request})
    written = set(store.keys("idp:*")) - before
    ttls = {key.decode().split(":")[1]: store.ttl(key) for key in written}
    login = client.get(parked.headers["Location"])  # takes the parked request out again
    assert "/login?k=" in login.headers["Location"]
    written |= set(store.keys("idp:*")) - before
    ttls |= {key.decode().split(":")[1]: store.ttl(key) for key in set(store.keys("idp:*")) - before}
    assert set(ttls) == {"pending", "session"}
    assert all(0 < ttl <= settings.server.session_lifetime for ttl in ttls.values()), ttls
    assert max(ttls.values()) >= settings.server.session_lifetime - 2  # the session lives as long as it may
    store.delete(*written)


def test_pending_entries_round_trip_through_messagepack(tmp_path: Path) -> None:
    pending = PendingPosts(SessionFileCache(str(tmp_path), default_timeout=60))
    logout = LogoutRequestInfo("_id", "https://sp", "alice", ("s1", "s2"), None, "binding", "https://sp/slo")
    key = pending.put(logout)
    assert pending.pop(key, AuthnRequestInfo) is None  # and the key is spent either way
    assert pending.pop(pending.put(logout), LogoutRequestInfo) == logout


# ---- the rate limit ------------------------------------------------------------------------------------------


def test_the_bucket_refills_at_its_rate_and_audits_once_a_minute() -> None:
    clock = [0.0]
    limiter = RateLimiter(60, now=lambda: clock[0])
    assert all(limiter.take("192.0.2.1") is None for _ in range(60))
    first, second = limiter.take("192.0.2.1"), limiter.take("192.0.2.1")
    assert first is not None and first.audit and first.retry_after >= 1
    assert second is not None and not second.audit
    assert limiter.take("192.0.2.2") is None  # another address has its own bucket
    clock[0] = 1.0  # one token a second
    assert limiter.take("192.0.2.1") is None
    assert limiter.take("192.0.2.1") is not None
    clock[0] = 61.0
    answers = [limiter.take("192.0.2.1") for _ in range(61)]
    assert answers[:60] == [None] * 60
    assert answers[60] is not None and answers[60].audit  # a minute after the last row: one more


def test_an_ipv6_host_is_one_address_per_64() -> None:
    limiter = RateLimiter(2)
    assert limiter.take("2001:db8:1:2::1") is None and limiter.take("2001:db8:1:2:ffff::9") is None
    assert limiter.take("2001:db8:1:2::abcd") is not None
    assert limiter.take("2001:db8:1:3::1") is None


def test_the_bucket_map_is_bounded() -> None:
    limiter = RateLimiter(1, max_addresses=100)
    for i in range(1000):
        limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) == 100


@pytest.mark.parametrize(("lang", "words"), [("en", "Too many requests"), ("zh-CN", "请求过多")])
def test_over_the_limit_is_a_429_page_in_the_browser_language(
    settings: Settings, world: World, tmp_path: Path, lang: str, words: str
) -> None:
    app = _app(settings, world, tmp_path, rate_limit_per_minute=5)
    client = app.test_client()
    headers = {"Accept-Language": lang}
    assert [client.get("/login", headers=headers).status_code for _ in range(5)] == [200] * 5
    answers = [client.post("/saml/sso", data={"SAMLRequest": "x"}, headers=headers) for _ in range(30)]
    assert {a.status_code for a in answers} == {429}
    assert words in answers[0].get_data(as_text=True)
    assert _reason_of(answers[0].get_data(as_text=True)) == "rate_limited"
    assert int(answers[0].headers["Retry-After"]) >= 1
    assert _reasons(app) == ["rate_limited"]  # 30 refusals, one row
    assert client.get("/healthz").status_code != 429  # only the anonymous sign-in endpoints are limited
