"""Liveness, readiness and Prometheus metrics for load balancers and monitoring."""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from idp.directory.check import unreachable
from idp.keys.keyring import Keyring
from idp.keys.material import read_persistent_secret
from idp.settings import LdapSettings
from idp.store.db import Database
from idp.store.models import OutboxRow, SyncLeaseRow, SyncRunRow, utcnow
from idp.web.node_secrets import NodeSecrets, fingerprint
from idp.web.services import services

bp = Blueprint("health", __name__)

DC_PROBE_SECONDS = 5.0
"""A domain controller's answer is reused this long: a load balancer asking every second costs each DC at
most one TCP connection per worker every few seconds, and never a bind."""
DC_PROBE_TIMEOUT = 2.0
"""Longest wait for one DC to accept a connection (or ldap.connect_timeout, when shorter)."""
WRITE_WAIT_MS = 1000
"""How long the write check waits for a lock before it reports the database as not taking writes."""


@bp.get("/healthz")
def healthz() -> Response:
    """Alive: the process answers. Nothing outside it is asked (a DC or a database being down is /readyz's
    business; restarting the process would not fix either)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when a sign-in can succeed here: a domain controller answers, the database takes a write (every
    sign-in writes an audit row), the signing key signs, and, on a database several nodes can share
    (PostgreSQL), every other live node holds the same secrets (idp.web.node_secrets). The body names the check
    that failed."""
    svc = services()
    controllers = _dc_probe().answers(svc.settings.ldap)
    checks = {
        "database": _check(lambda: _take_a_write(svc.db)),
        "signing_key": _check(svc.saml_server.metadata_xml),
        "directory": "ok"
        if any(answer == "ok" for answer in controllers.values())
        else "error: no domain controller answers",
    }
    if svc.db.engine.dialect.name != "sqlite":  # a database nodes can share: compare with the others
        checks["shared_secrets"] = _shared_secrets()
    ok = all(value == "ok" for value in checks.values())
    body = jsonify(status="ok" if ok else "error", checks=checks, domain_controllers=controllers)
    return body, 200 if ok else 503


def _check(probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as exc:  # readiness must report any failure, whatever its type
        cause = getattr(exc, "orig", None) or exc
        words = str(cause).splitlines()[0][:120] if str(cause) else ""
        return f"error: {type(cause).__name__}" + (f": {words}" if words else "")
    return "ok"


def _take_a_write(db: Database) -> None:
    """A real write, rolled back: an INSERT into the small sync_leases table. On SQLite it needs the write
    lock every sign-in's audit row needs (``SELECT 1`` succeeds while another process holds it for minutes);
    on PostgreSQL, a primary that accepts writes."""
    with db.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            patience = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
            conn.exec_driver_sql(f"PRAGMA busy_timeout={WRITE_WAIT_MS}")
        else:
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {WRITE_WAIT_MS}")
        try:
            conn.execute(insert(SyncLeaseRow).values(name="readiness probe", holder="readyz", expires_at=utcnow()))
        finally:
            conn.rollback()
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={int(patience or 0)}")
                conn.commit()


def _shared_secrets() -> str:
    """ "ok" when every live node sharing the database holds this node's secrets; else which differ where."""
    try:
        return _node_secrets().check().words
    except Exception as exc:  # the database check above names a database failure; this one says it could not compare
        return f"error: could not compare with the other nodes: {type(getattr(exc, 'orig', None) or exc).__name__}"


def _node_secrets() -> NodeSecrets:
    secrets: NodeSecrets | None = current_app.extensions.get("idp.node_secrets")
    if secrets is None:
        svc = services()
        app = current_app._get_current_object()  # type: ignore[attr-defined]

        def mine() -> dict[str, str]:
            active = Keyring.for_settings(svc.settings).state().fingerprints()["active"]
            return {
                "secret_key": fingerprint(app.config["SECRET_KEY"]),
                "signing_key": active.replace(":", "").lower()[:12],
                "persistent_id_secret": fingerprint(read_persistent_secret(svc.settings.idp.persistent_id_secret_file)),
                "mfa_key": _key_file_fingerprint(svc.settings.mfa.key_file),
            }

        secrets = current_app.extensions.setdefault("idp.node_secrets", NodeSecrets(svc.db, mine))
    return secrets


def _key_file_fingerprint(path: Path) -> str:
    """The MFA key is made at the first enrolment: "none" until then. A node without it beside one with it
    would make its own, and the factors it enrols would not open on the other nodes."""
    try:
        return fingerprint(path.read_bytes())
    except FileNotFoundError:
        return "none"


class DcProbe:
    """Whether each domain controller accepts a TCP connection, asked at most once per DC_PROBE_SECONDS."""

    def __init__(self) -> None:
        # Held while probing: readiness checks arriving meanwhile wait and reuse the answer.
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[float, str]] = {}

    def answers(self, settings: LdapSettings) -> dict[str, str]:
        """Per DC URL: "ok", or why it does not answer."""
        timeout = min(settings.connect_timeout, DC_PROBE_TIMEOUT)
        with self._lock:
            for url in settings.urls:
                asked = self._answers.get(url)
                if asked is None or time.monotonic() - asked[0] >= DC_PROBE_SECONDS:
                    self._answers[url] = (time.monotonic(), unreachable(url, timeout) or "ok")
            return {url: self._answers[url][1] for url in settings.urls}


def _dc_probe() -> DcProbe:
    probe: DcProbe = current_app.extensions.setdefault("idp.dc_probe", DcProbe())
    return probe


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text, for a scraper that sends ``Authorization: Bearer <server.metrics_token>``. Without a
    configured token the page does not exist: the counters say who signs in to which SP, and when."""
    svc = services()
    expected = svc.settings.server.metrics_secret()
    if not expected:
        abort(404)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        abort(403)
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    stored = CollectorRegistry()
    stored.register(StoredFigures(svc.db))
    return Response(generate_latest(processes) + generate_latest(stored), mimetype=CONTENT_TYPE_LATEST)


class StoredFigures(Collector):
    """What the database knows, read at each scrape: the provisioning outbox and the sync runs. Any node
    reports the same figures, whichever process queued the work or ran the sync."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("idp_metrics_database_up", "1 when the figures below could be read")
        try:
            families = self._read()
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> list[GaugeMetricFamily]:
        outbox = GaugeMetricFamily(
            "idp_outbox_items", "Provisioning work queued by sign-ins, by state (pending, failed)", labels=["state"]
        )
        oldest = GaugeMetricFamily("idp_outbox_oldest_pending_seconds", "Age of the oldest pending outbox item")
        runs = GaugeMetricFamily(
            "idp_sync_runs", "Sync runs in the history (dry runs left out), by status", labels=["status"]
        )
        last = GaugeMetricFamily(
            "idp_sync_last_finished_timestamp_seconds", "When the last sync run ended", labels=["status"]
        )
        failed = GaugeMetricFamily("idp_sync_last_failed_actions", "Actions that failed in the last sync run")
        duration = GaugeMetricFamily("idp_sync_last_duration_seconds", "How long the last sync run took")
        with self._db.engine.connect() as conn:
            by_state = dict(
                conn.execute(
                    select(OutboxRow.state, func.count()).where(OutboxRow.state != "done").group_by(OutboxRow.state)
                ).all()
            )
            first = conn.scalar(select(func.min(OutboxRow.enqueued_at)).where(OutboxRow.state == "pending"))
            by_status = dict(
                conn.execute(
                    select(SyncRunRow.status, func.count())
                    .where(SyncRunRow.dry_run.is_(False))
                    .group_by(SyncRunRow.status)
                ).all()
            )
            latest = conn.execute(
                select(SyncRunRow.status, SyncRunRow.started_at, SyncRunRow.finished_at, SyncRunRow.failed)
                .where(SyncRunRow.dry_run.is_(False), SyncRunRow.finished_at.is_not(None))
                .order_by(SyncRunRow.id.desc())
                .limit(1)
            ).first()
        for state in ("pending", "failed"):
            outbox.add_metric([state], by_state.get(state, 0))
        oldest.add_metric([], (utcnow() - _utc(first)).total_seconds() if first is not None else 0)
        for status, count in by_status.items():
            runs.add_metric([status], count)
        families = [outbox, oldest, runs]
        if latest is not None:
            last.add_metric([latest.status], _utc(latest.finished_at).timestamp())
            failed.add_metric([], latest.failed)
            duration.add_metric([], (_utc(latest.finished_at) - _utc(latest.started_at)).total_seconds())
            families += [last, failed, duration]
        return families


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
