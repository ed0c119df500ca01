"""Every request gets an id and a measured duration.

The id is returned in ``X-Request-Id``, shown on error pages (so a person can read it to the help desk) and
put on every log line written while the request is served (idp.logs). An incoming ``X-Request-Id`` is kept
only behind trusted proxies (``server.trusted_proxy_count``): nginx's ``$request_id`` then links its access
log to ours. From anyone else it is ignored, or a client could make its requests look like someone else's
in the logs.
"""

from __future__ import annotations

import re
import time
import uuid

from flask import Flask, Response, g, request

from idp import metrics
from idp.logs import REQUEST_ID

HEADER = "X-Request-Id"
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
"""What an incoming id may look like: safe in a header, a log line and a page."""


def ensure_request_id(*, trust_incoming: bool) -> str:
    """The request's id, given now if it has none yet: an error page for a failure before the first
    before_request hook (the session store down while the session is opened) carries one too."""
    request_id: str | None = g.get("request_id")
    if request_id is None:
        incoming = request.headers.get(HEADER, "")
        request_id = incoming if trust_incoming and _ACCEPTABLE.match(incoming) else uuid.uuid4().hex
        g.request_id = request_id
        REQUEST_ID.set(request_id)
    return request_id


def install(app: Flask, *, trust_incoming: bool) -> None:
    """Register the hooks; call it before any other before_request hook, so that a request ended early (a
    rate limit's 429) has its id too."""

    @app.before_request
    def _start() -> None:
        g.request_started = time.perf_counter()
        ensure_request_id(trust_incoming=trust_incoming)

    @app.after_request
    def _finish(resp: Response) -> Response:
        request_id = g.get("request_id")
        if request_id is not None:
            resp.headers[HEADER] = request_id
        started = g.get("request_started")
        # Unmatched URLs share one label: a scanner must not create a time series per path it tries.
        endpoint = request.endpoint or "unmatched"
        if started is not None:
            metrics.HTTP_SECONDS.labels(endpoint=endpoint).observe(time.perf_counter() - started)
        metrics.HTTP_RESPONSES.labels(endpoint=endpoint, status=str(resp.status_code)).inc()
        return resp

    @app.teardown_request
    def _forget(_exc: BaseException | None) -> None:
        # The thread serves another request next: its log lines must not carry this id.
        REQUEST_ID.set(None)

    @app.context_processor
    def _request_id() -> dict[str, str | None]:
        return {"request_id": g.get("request_id")}
