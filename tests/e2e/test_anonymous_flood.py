"""A flood of anonymous requests against `idp serve` leaves storage where it was: 10,000 requests (the login
page, junk POSTs up to the size limit to /saml/sso and /saml/slo, junk Redirect-binding GETs) write no
session, park nothing, and add audit rows only up to what the per-address rate limit lets through. The
requests an SP really sent are parked, and what expired in the session directory is swept.

No AD is needed: nobody types a password, so the IdP is pointed at a directory that is not there."""

from __future__ import annotations

import base64
import os
import random
import sqlite3
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import httpx

from idp.web.session_store import SessionFileCache
from tests.e2e.harness import base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, write_metadata

REQUESTS = 10_000
RATE = 600  # the shipped default
WORKERS = 2
NO_AD = {"urls": ["ldaps://127.0.0.1:9"], "base_dn": "DC=nowhere,DC=test", "bind_dn": "svc", "bind_password": "x"}


def _footprint(directory: Path) -> tuple[int, int]:
    files = [p for p in directory.iterdir() if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _junk_requests(base_url: str, max_request_bytes: int) -> list[tuple[str, str, dict[str, str] | None]]:
    rng = random.Random(20261201)
    # Base64 of up to max_request_bytes: the largest a POST can be and still be read up to the SAML checks.
    bodies = [base64.b64encode(rng.randbytes(n)).decode() for n in (10, 3000, 40_000, max_request_bytes)]
    queries = [urlencode({"SAMLRequest": b, "RelayState": "r"}) for b in ("x", bodies[1][:2000])]
    shapes = [
        ("GET", base_url + "/login", None),
        ("GET", base_url + "/login?next=/apps", None),
        *(
            ("POST", base_url + path, {"SAMLRequest": b, "RelayState": "r" * 80})
            for path in ("/saml/sso", "/saml/slo")
            for b in bodies
        ),
        *(("GET", base_url + "/saml/sso?" + q, None) for q in queries),
        ("GET", base_url + "/saml/slo?SAMLRequest=%%%", None),
    ]
    return [rng.choice(shapes) for _ in range(REQUESTS)]


def test_ten_thousand_anonymous_requests_leave_storage_bounded(tmp_path: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    config = base_config(tmp_path, base_url, NO_AD)
    config["metadata"]["refresh_poll"] = 0
    server = serve_idp(prepare_idp(tmp_path, config), port, workers=WORKERS)
    try:
        sp = IndependentSp("https://flood.sp.test/saml", "http://127.0.0.1:9/acs", False, server.metadata())
        server.idp("sp", "add", str(write_metadata(sp, tmp_path)))
        data = tmp_path / "data"
        sessions = data / "sessions"
        # An entry that expired while the IdP ran: the first write of a worker sweeps it.
        planted = SessionFileCache(str(sessions), default_timeout=1)
        planted.set("pending:expired-long-ago", {"kind": "AuthnRequestInfo"}, timeout=1)
        time.sleep(2.1)  # cachelib counts expiry in whole seconds
        files_before, bytes_before = _footprint(sessions)
        db_bytes_before = _database_bytes(data)
        rows_before = _audit_rows(data)

        requests = _junk_requests(base_url, 64 * 1024)
        started = time.monotonic()
        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=8)) as http, ThreadPoolExecutor(8) as pool:

            def send(r: tuple[str, str, dict[str, str] | None]) -> int | str:
                try:
                    # A connection per request: reusing one that gunicorn's keep-alive timer just closed fails in
                    # the client (about 2% of requests here) and says nothing about the IdP.
                    return http.request(r[0], r[1], data=r[2], headers={"Connection": "close"}).status_code
                except httpx.TransportError as exc:
                    return f"{r[0]} {r[1][:40]} {len(str(r[2]))}: {type(exc).__name__}"

            statuses = Counter(pool.map(send, requests))
        elapsed = time.monotonic() - started

        files_after, bytes_after = _footprint(sessions)
        db_bytes_after = _database_bytes(data)
        rows = _audit_rows(data) - rows_before
        through = statuses[200] + statuses[400]
        report = (
            f"{REQUESTS} requests in {elapsed:.1f} s: {dict(statuses)}; sessions {files_before} files/{bytes_before} B"
            f" -> {files_after}/{bytes_after} B; database {db_bytes_before} -> {db_bytes_after} B, {rows} audit rows"
        )
        print(report)
        assert 500 not in statuses and statuses[429] > 0, report
        assert not any(c.name.startswith("idp_session") for c in http.cookies.jar), "a session cookie was handed out"
        # The limit per worker: RATE at once, then RATE a minute; gunicorn may hand a worker more than half.
        assert through <= WORKERS * (RATE + RATE * elapsed / 60) + 50, report
        assert (files_after, bytes_after) == (files_before, bytes_before), report  # nothing stored, nothing parked
        assert rows <= through + 2 * WORKERS * (1 + elapsed / 60), report  # one row per refused SAML request
        assert db_bytes_after - db_bytes_before < 2 * 1024 * 1024, report

        # What an SP really sent is parked, and the first write of each worker sweeps what expired.
        time.sleep(2)  # ten tokens a second come back to each worker's bucket
        with httpx.Client(timeout=30) as http:
            for _ in range(6):
                answer = http.post(base_url + "/saml/sso", data=sp.post_login_fields())
                assert answer.status_code == 303 and "resume=" in answer.headers["Location"], answer.text[:300]
        names = {p.name for p in sessions.iterdir()}
        assert os.path.basename(planted._get_filename("pending:expired-long-ago")) not in names
        assert len(names) <= files_before - 1 + 6
    finally:
        server.stop()


def _database_bytes(data: Path) -> int:
    """The database file after moving the write-ahead log into it: the log is a journal SQLite reuses, not
    data, and its size says when the last checkpoint ran rather than what is kept."""
    with sqlite3.connect(data / "idp.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return (data / "idp.db").stat().st_size


def _audit_rows(data: Path) -> int:
    with sqlite3.connect(data / "idp.db") as db:
        return int(db.execute("SELECT count(*) FROM audit_events").fetchone()[0])
