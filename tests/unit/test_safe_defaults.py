"""What an install gets without asking: private files, no pickle in the session store, /metrics behind a
token, signed responses, and no proxy trusted that is not there."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from pydantic import ValidationError

from idp.app import create_app
from idp.settings import Settings, SpDefaults
from idp.sps.policy import SpPolicy
from tests.support import REDIS_URL, require_redis

ROOT = Path(__file__).resolve().parents[2]


def _app(settings: Settings, **server: object) -> Flask:
    # Without the metadata refresh thread: nothing here reads SP metadata.
    quiet = settings.metadata.model_copy(update={"refresh_poll": 0})
    return create_app(
        settings.model_copy(update={"metadata": quiet, "server": settings.server.model_copy(update=server)})
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _not_pickled(raw: bytes) -> None:
    # Pickle protocol 2 and later start with PROTO (0x80); cachelib's Redis serializer puts "!" in front.
    assert not raw.startswith((b"\x80", b"!\x80")), raw[:20]
    assert b"csrf_token" in raw  # the session itself, in a format that names its keys as data


def _signed_in(browser: FlaskClient) -> None:
    """Store a session as a page with a form does for someone signed in: an anonymous login page stores none."""
    with browser.session_transaction() as session:
        session["csrf_token"] = "a7" * 20


def _session_files(app: Flask) -> list[Path]:
    return [Path(p) for p in app.config["SESSION_CACHELIB"]._list_dir()]  # without cachelib's file count


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)  # the common default, under which files come out world-readable unless asked not to
    try:
        yield
    finally:
        os.umask(old)


def test_the_data_directory_database_and_sessions_are_private(settings: Settings, tmp_path: Path, umask) -> None:
    data = tmp_path / "fresh"
    app = _app(settings, data_dir=data)
    _signed_in(app.test_client())
    assert _mode(data) == 0o700
    assert _mode(data / "idp.db") == 0o600
    assert _session_files(app)
    assert all(_mode(p) == 0o600 for p in (data / "sessions").iterdir())
    assert all(_mode(p) & 0o077 == 0 for p in data.glob("idp.db*"))


def test_session_files_are_not_pickled(settings: Settings) -> None:
    app = _app(settings)
    _signed_in(app.test_client())
    [stored] = _session_files(app)
    _not_pickled(stored.read_bytes()[4:])  # after cachelib's 4-byte expiry time


def test_redis_sessions_are_not_pickled(settings: Settings) -> None:
    client = redis.Redis.from_url(require_redis(), socket_connect_timeout=2)
    before = set(client.keys("idp:session:*"))
    app = _app(settings, session_backend="redis", redis_url=REDIS_URL)
    browser = app.test_client()
    _signed_in(browser)
    new = set(client.keys("idp:session:*")) - before
    assert len(new) == 1
    [key] = new
    try:
        _not_pickled(client.get(key) or b"")
        assert browser.get("/login").status_code == 200  # and it reads back
    finally:
        client.delete(key)


def test_a_pickled_session_is_not_loaded(settings: Settings) -> None:
    """A value written by an older version, or planted by someone who can write to the store: treated as no
    session, never unpickled."""
    app = _app(settings)
    browser = app.test_client()
    _signed_in(browser)
    [stored] = _session_files(app)
    header = stored.read_bytes()[:4]
    stored.write_bytes(header + b"\x80\x05\x95\x00\x00\x00\x00\x00\x00\x00\x00}\x94.")
    assert browser.get("/login").status_code == 200


def test_metrics_need_the_token(settings: Settings, tmp_path: Path) -> None:
    assert _app(settings).test_client().get("/metrics").status_code == 404

    token_file = tmp_path / "metrics.token"
    token_file.write_text("s3cr3t-scrape\n")
    for app in (_app(settings, metrics_token="s3cr3t-scrape"), _app(settings, metrics_token_file=token_file)):
        browser = app.test_client()
        assert browser.get("/metrics").status_code == 403
        assert browser.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
        page = browser.get("/metrics", headers={"Authorization": "Bearer s3cr3t-scrape"})
        assert page.status_code == 200 and b"# TYPE" in page.data


def test_a_policy_keeps_at_least_one_signature() -> None:
    assert SpPolicy(sign_response=False).sign_assertion
    assert SpPolicy(sign_assertion=False).sign_response
    with pytest.raises(ValidationError, match="cannot both be off"):
        SpPolicy(sign_response=False, sign_assertion=False)
    with pytest.raises(ValidationError, match="cannot both be off"):
        SpDefaults(sign_response=False, sign_assertion=False)


def test_the_example_config_trusts_no_proxy() -> None:
    example = tomllib.loads((ROOT / "idp.example.toml").read_text())
    assert example["server"]["trusted_proxy_count"] == 0
