"""What an operator sees of a running IdP: /readyz that tells the truth, request ids, log lines, /metrics.

The app is the real one on a real SQLite file; a "domain controller" that answers is a listening TCP socket
(the readiness probe asks for nothing more), one that does not is a loopback address nobody listens on."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from idp.app import create_app
from idp.logs import configure_logging, logging_config
from idp.provisioning.outbox import Outbox
from idp.provisioning.provider import MailboxSpec
from idp.settings import Settings
from idp.store.db import Database
from idp.store.sync_runs import SyncRuns
from idp.web.node_secrets import NodeSecrets, fingerprint
from tests.support import scratch_database

DEAD_DC = "ldaps://127.0.0.99:1636"


@pytest.fixture
def listening_dc() -> Iterator[str]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"ldaps://127.0.0.1:{server.getsockname()[1]}"


def make_app(settings: Settings, urls: list[str], database_url: str = "", **server: object) -> Flask:
    quiet = settings.metadata.model_copy(update={"refresh_poll": 0})
    return create_app(
        settings.model_copy(
            update={
                "metadata": quiet,
                "server": settings.server.model_copy(update=server),
                "ldap": settings.ldap.model_copy(update={"urls": urls}),
                "database": settings.database.model_copy(update={"url": database_url}),
            }
        )
    )


def test_ready_when_a_dc_answers_and_the_database_takes_a_write(settings: Settings, listening_dc: str) -> None:
    page = make_app(settings, [DEAD_DC, listening_dc]).test_client().get("/readyz")
    assert page.status_code == 200, page.json
    assert page.json["checks"] == {"database": "ok", "signing_key": "ok", "directory": "ok"}
    assert page.json["domain_controllers"][listening_dc] == "ok"
    assert "refused" in page.json["domain_controllers"][DEAD_DC]


def test_not_ready_when_no_dc_answers(settings: Settings) -> None:
    browser = make_app(settings, [DEAD_DC]).test_client()
    page = browser.get("/readyz")
    assert page.status_code == 503
    assert page.json["checks"]["directory"] == "error: no domain controller answers"
    assert page.json["checks"]["database"] == "ok"
    assert browser.get("/healthz").status_code == 200  # liveness does not depend on AD


def test_the_dc_probe_is_cached(settings: Settings) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"ldaps://127.0.0.1:{server.getsockname()[1]}"
        browser = make_app(settings, [url]).test_client()
        assert browser.get("/readyz").status_code == 200
    # The DC went away a moment ago: the answer of the last few seconds stands, no probe per request.
    assert browser.get("/readyz").status_code == 200


def test_not_ready_while_another_process_holds_the_write_lock(settings: Settings, listening_dc: str) -> None:
    app = make_app(settings, [listening_dc])
    browser = app.test_client()
    assert browser.get("/readyz").status_code == 200
    path = Path(settings.database_url.removeprefix("sqlite:///"))
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        page = browser.get("/readyz")
        assert page.status_code == 503
        assert page.json["checks"]["database"].startswith("error: OperationalError: database is locked")
        assert browser.get("/healthz").status_code == 200
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert browser.get("/readyz").status_code == 200
    # Nothing the probe wrote stays behind.
    assert sqlite3.connect(path).execute("SELECT count(*) FROM sync_leases").fetchone() == (0,)


def test_not_ready_while_postgresql_refuses_writes(settings: Settings, listening_dc: str, tmp_path: Path) -> None:
    with scratch_database("postgresql", tmp_path) as db:
        url = db.engine.url
        assert (
            make_app(settings, [listening_dc], url.render_as_string(False)).test_client().get("/readyz").status_code
            == 200
        )
        # A server that takes no writes (a standby, a full disk that made an admin set it read-only) still
        # answers SELECT 1.
        read_only = url.update_query_dict({"options": url.query["options"] + " -cdefault_transaction_read_only=on"})
        page = make_app(settings, [listening_dc], read_only.render_as_string(False)).test_client().get("/readyz")
        assert page.status_code == 503
        assert page.json["checks"]["database"].startswith("error: ReadOnlySqlTransaction")


def test_every_response_carries_a_request_id_shown_on_error_pages(settings: Settings) -> None:
    browser = make_app(settings, [DEAD_DC]).test_client()
    first, second = browser.get("/healthz"), browser.get("/no-such-page")
    assert len(first.headers["X-Request-Id"]) == 32
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]
    assert second.status_code == 404
    assert f'id="request-id">Request ID: {second.headers["X-Request-Id"]}' in second.text
    zh = browser.get("/no-such-page", headers={"Accept-Language": "zh-CN"})
    assert "请求编号" in zh.text and zh.headers["X-Request-Id"] in zh.text


def test_the_audit_row_of_a_request_carries_its_request_id(settings: Settings) -> None:
    """The id a person reads to the help desk from an error page finds the audit row of what happened."""
    app = make_app(settings, [DEAD_DC])
    refused = app.test_client().get("/saml/sso")  # no SAMLRequest: refused, and audited
    assert refused.status_code == 400
    audit = app.extensions["idp"].audit
    row = audit.recent(1)[0]
    assert row.event == "saml_request" and row.result == "refused"
    assert row.request_id == refused.headers["X-Request-Id"]
    audit.record("signin", "success", username="written outside a request")
    assert audit.recent(1)[0].request_id is None


def test_an_incoming_request_id_is_kept_only_behind_a_trusted_proxy(settings: Settings) -> None:
    direct = make_app(settings, [DEAD_DC]).test_client()
    assert direct.get("/healthz", headers={"X-Request-Id": "from-a-client"}).headers["X-Request-Id"] != "from-a-client"
    proxied = make_app(settings, [DEAD_DC], trusted_proxy_count=1).test_client()
    assert proxied.get("/healthz", headers={"X-Request-Id": "nginx-7f3a"}).headers["X-Request-Id"] == "nginx-7f3a"
    forged = proxied.get("/healthz", headers={"X-Request-Id": "<script>\u2028"}).headers["X-Request-Id"]
    assert len(forged) == 32 and forged.isalnum()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The real logging configuration, its handler's stream swapped for one the test reads."""
    stream = io.StringIO()
    yield stream
    configure_logging("text", "WARNING")


def _capture(stream: io.StringIO, log_format: str) -> None:
    configure_logging(log_format, "INFO")  # type: ignore[arg-type]
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)


def test_json_log_lines_carry_timestamp_level_logger_and_request_id(
    settings: Settings, log_stream: io.StringIO
) -> None:
    app = make_app(settings, [DEAD_DC])

    @app.get("/log-something")
    def _log_something() -> str:
        logging.getLogger("idp.test").info("something happened")
        return "ok"

    _capture(log_stream, "json")
    request_id = app.test_client().get("/log-something").headers["X-Request-Id"]
    logging.getLogger("idp.test").warning("outside a request")
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    inside = next(line for line in lines if line["message"] == "something happened")
    assert inside["level"] == "INFO" and inside["logger"] == "idp.test" and inside["request_id"] == request_id
    assert inside["timestamp"].endswith("Z") and inside["timestamp"][:4].isdigit()
    outside = next(line for line in lines if line["message"] == "outside a request")
    assert outside["request_id"] is None


def test_text_log_lines_have_a_timestamp(log_stream: io.StringIO) -> None:
    _capture(log_stream, "text")
    logging.getLogger("idp.test").warning("disk almost full")
    [line] = log_stream.getvalue().splitlines()
    stamp, level, rest = line.split(" ", 2)
    assert stamp[:2] == "20" and stamp.endswith("Z") and "T" in stamp
    assert (level, rest) == ("WARNING", "idp.test: disk almost full")


def test_metrics_cover_latency_the_outbox_and_the_sync(settings: Settings) -> None:
    app = make_app(settings, [DEAD_DC], metrics_token="scrape")
    db = Database(settings.database_url)
    try:
        spec = MailboxSpec(email="bob@example.test", display_name="Bob")
        Outbox(db).enqueue("guid-bob", "bob", spec, "provider down")
    finally:
        db.dispose()
    browser = app.test_client()
    browser.get("/healthz")
    page = browser.get("/metrics", headers={"Authorization": "Bearer scrape"}).text
    assert 'idp_http_request_duration_seconds_bucket{endpoint="health.healthz"' in page
    assert 'idp_http_responses_total{endpoint="health.healthz",status="200"}' in page
    assert 'idp_outbox_items{state="pending"} 1.0' in page
    assert "idp_outbox_oldest_pending_seconds" in page
    assert "idp_metrics_database_up 1.0" in page


def test_the_grafana_dashboard_draws_only_metrics_the_idp_exports(settings: Settings) -> None:
    dashboard = json.loads((Path(__file__).parents[2] / "docs/grafana-dashboard.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"\bidp_[a-z_]+", target["expr"])
    }
    assert len(used) >= 15
    app = make_app(settings, [DEAD_DC], metrics_token="scrape")
    db = Database(settings.database_url)
    try:
        runs = SyncRuns(db)
        runs.finish(runs.start(started_by="cron", origin="cli", dry_run=False, lease_holder="n1"), status="ok")
    finally:
        db.dispose()
    browser = app.test_client()
    browser.get("/healthz")
    page = browser.get("/metrics", headers={"Authorization": "Bearer scrape"}).text
    assert sorted(name for name in used if name not in page) == []


def test_log_lines_go_to_syslog_when_asked(log_stream: io.StringIO) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        logging.config.dictConfig(logging_config("json", "INFO", syslog=f"127.0.0.1:{receiver.getsockname()[1]}"))
        logging.getLogger("idp.audit").info("signin success reason=password user=alice")
        datagram = receiver.recv(4096).decode()
    # <priority>: facility auth (4) * 8 + info (6) = 38.
    assert datagram.startswith("<38>")
    assert json.loads(datagram[4:].rstrip("\x00"))["message"] == "signin success reason=password user=alice"


def test_a_node_with_another_mfa_key_is_not_ready(settings: Settings, listening_dc: str, tmp_path: Path) -> None:
    """On a shared database (PostgreSQL) /readyz compares the MFA key too: a factor enrolled through one node
    must open on every other. A node that has none yet would make its own at the first enrolment."""
    theirs = b"the key the other nodes hold"
    with scratch_database("postgresql", tmp_path) as db:
        assert NodeSecrets(db, lambda: {"mfa_key": fingerprint(theirs)}, node="host-b 2").check().ok
        url = db.engine.url.render_as_string(hide_password=False)
        key_file = tmp_path / "mfa.key"
        for_key = settings.model_copy(update={"mfa": settings.mfa.model_copy(update={"key_file": key_file})})

        page = make_app(for_key, [listening_dc], url).test_client().get("/readyz")
        assert page.status_code == 503
        assert page.json["checks"]["shared_secrets"] == "error: node host-b 2 has another mfa_key"

        key_file.write_bytes(theirs)
        page = make_app(for_key, [listening_dc], url).test_client().get("/readyz")
        assert page.status_code == 200, page.json
        assert page.json["checks"]["shared_secrets"] == "ok"
