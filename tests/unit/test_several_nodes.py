"""What several nodes need from each node: the same secrets (and /readyz saying when they differ), metrics
folders that a starting node does not wipe under a live neighbour, and a "try again" page, not a 500, when the
session store is down."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from pathlib import Path

import pytest

from idp.app import create_app
from idp.commands.serve import metrics_directory
from idp.settings import Settings
from idp.store.db import Database
from idp.web.node_secrets import ROW_LIFETIME, NodeSecrets, fingerprint
from tests.support import FakeClock

SAME = {"secret_key": fingerprint(b"k" * 32), "signing_key": "aa11", "persistent_id_secret": fingerprint(b"p" * 16)}


def test_a_node_with_another_secret_key_is_named_by_both(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'idp.db'}")
    clock = FakeClock()
    other = {**SAME, "secret_key": fingerprint(b"x" * 32)}
    first = NodeSecrets(db, lambda: SAME, node="host-a 100", now=clock.now)
    second = NodeSecrets(db, lambda: other, node="host-b 200", now=clock.now)
    assert first.check().ok  # alone so far
    verdict = second.check()
    assert not verdict.ok and verdict.words == "error: node host-a 100 has another secret_key"
    clock.advance(30)
    assert first.check().words == "error: node host-b 200 has another secret_key"
    db.dispose()


def test_nodes_with_the_same_secrets_agree_and_a_stopped_node_is_forgotten(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'idp.db'}")
    clock = FakeClock()
    stopped = NodeSecrets(db, lambda: {**SAME, "signing_key": "bb22"}, node="old 1", now=clock.now)
    assert stopped.check().ok
    clock.advance(ROW_LIFETIME.total_seconds() + 1)
    assert NodeSecrets(db, lambda: SAME, node="a 1", now=clock.now).check().ok
    assert NodeSecrets(db, lambda: SAME, node="b 2", now=clock.now).check().ok
    db.dispose()


def test_fingerprints_tell_secrets_apart_and_do_not_contain_them() -> None:
    secret = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert fingerprint(secret) != fingerprint(secret[:-1] + b"\x00")
    assert secret.hex()[:12] not in fingerprint(secret)


def test_a_starting_server_keeps_a_live_neighbours_metrics_and_clears_dead_ones(tmp_path: Path) -> None:
    host = socket.gethostname()
    dead = subprocess.Popen(["true"])
    dead.wait()
    folders = {
        "dead": tmp_path / f"{host}-{dead.pid}",
        "neighbour": tmp_path / f"{host}-{os.getppid()}",  # a process that runs: the test's parent
        "other host": tmp_path / "another-host-1",
    }
    for folder in folders.values():
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"figures")
    mine = metrics_directory(tmp_path)
    assert mine == tmp_path / f"{host}-{os.getpid()}" and not any(mine.iterdir())
    assert not folders["dead"].exists()
    assert (folders["neighbour"] / "counter_1.db").exists()
    assert (folders["other host"] / "counter_1.db").exists()


def test_session_store_down_is_a_503_try_again_page_not_a_500(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    server = settings.server.model_copy(update={"session_backend": "redis", "redis_url": f"redis://127.0.0.1:{port}/0"})
    quiet = settings.metadata.model_copy(update={"refresh_poll": 0})
    app = create_app(settings.model_copy(update={"server": server, "metadata": quiet}))
    client = app.test_client()
    client.set_cookie("idp_session", "a-session-id")  # the store is asked only for a session that exists
    with caplog.at_level(logging.ERROR):
        page = client.get("/login", headers={"Accept-Language": "zh-CN"})
    assert page.status_code == 503 and page.headers["Retry-After"]
    text = page.get_data(as_text=True)
    assert 'data-reason="unavailable"' in text and "请稍等几秒后重试" in text
    assert page.headers["X-Request-Id"] in text
    assert "Set-Cookie" not in page.headers
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(":")[0] for r in errors] == ["session store (Redis) unavailable, answered 503"]
    assert not any(r.exc_info for r in errors), "an unavailable store is one log line, not a traceback"
