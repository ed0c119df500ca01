"""Liveness, readiness and Prometheus metrics for load balancers and monitoring."""

from __future__ import annotations

import hmac
import os

from flask import Blueprint, Response, abort, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from sqlalchemy import text

from idp.web.services import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when this worker can write audit rows and sign: the two things every sign-in needs.
    The directory is reported but does not fail readiness: with every DC down, taking all IdP nodes out of
    the load balancer would only replace a clear message with a connection error."""
    svc = services()
    checks: dict[str, str] = {}
    try:
        with svc.db.session() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # readiness must report any failure, whatever its type
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        svc.saml_server.metadata_xml()
        checks["signing_key"] = "ok"
    except Exception as exc:
        checks["signing_key"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ok else "error", checks=checks), 200 if ok else 503


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text, for a scraper that sends ``Authorization: Bearer <server.metrics_token>``. Without a
    configured token the page does not exist: the counters say who signs in to which SP, and when."""
    expected = services().settings.server.metrics_secret()
    if not expected:
        abort(404)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        abort(403)
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
