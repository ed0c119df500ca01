"""What a person sees when a request fails on our side, and what is kept of it: nothing.

A database that is restarting, locked or full, or a session store (Redis) that is down, is a moment to wait
through, not a defect: the person gets our "try again" page (HTTP 503, their language, the request id) and
the log one error line naming what was unavailable, not a traceback. Anything else is a 500 with the same
page's "something went wrong" and the traceback in the log.

Either way the session changes the failed request made are dropped, never saved: a sign-in whose audit row
(or any later write) failed must not leave the browser signed in. Flask saves the session after an error
page exactly as after any other response, so the handler swaps in a null session first.
"""

from __future__ import annotations

import logging
from types import TracebackType

import redis.exceptions
import sqlalchemy.exc
from flask import Flask, Response, render_template
from flask.globals import request_ctx
from werkzeug.exceptions import InternalServerError

from idp.web import request_log
from idp.web.i18n import translate

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
"""What the 503 tells a client (and nginx's error page) to wait: a database or Redis restart takes seconds."""

UNAVAILABLE: dict[type[Exception], str] = {
    # Connection refused or dropped (a restart), "database is locked", "database or disk is full".
    sqlalchemy.exc.OperationalError: "database",
    sqlalchemy.exc.InterfaceError: "database",
    redis.exceptions.ConnectionError: "session store (Redis)",
    redis.exceptions.TimeoutError: "session store (Redis)",
}
"""Failures of a service the IdP waits for, by what the log line calls the service."""

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


def install(app: Flask, *, trust_incoming_request_id: bool) -> None:
    """Register the 500 handler and the handlers for an unavailable service."""

    def unavailable(exc: BaseException) -> Response:
        _drop_session_changes(app)
        request_log.ensure_request_id(trust_incoming=trust_incoming_request_id)
        cause = getattr(exc, "orig", None) or exc
        first_line = (str(cause).splitlines() or [""])[0][:200]
        log.error("%s unavailable, answered 503: %s: %s", _service(exc), type(cause).__name__, first_line)
        return _page("error.unavailable", "unavailable", 503, retry_after=RETRY_AFTER_SECONDS)

    def internal(exc: InternalServerError) -> Response:
        # Reached for an exception raised outside a view too (opening the session, saving it), which the
        # per-class handlers below never see.
        cause = exc.original_exception
        if cause is not None and _service(cause) is not None:
            return unavailable(cause)
        _drop_session_changes(app)
        request_log.ensure_request_id(trust_incoming=trust_incoming_request_id)
        return _page("error.internal", "internal", 500)

    for kind in UNAVAILABLE:
        app.register_error_handler(kind, unavailable)
    app.register_error_handler(InternalServerError, internal)

    logs_traceback = app.log_exception

    def log_exception(exc_info: _ExcInfo) -> None:
        # The 503 handler writes the one line an unavailable service is worth.
        if exc_info[1] is None or _service(exc_info[1]) is None:
            logs_traceback(exc_info)

    app.log_exception = log_exception  # type: ignore[method-assign]


def _service(exc: BaseException) -> str | None:
    return next((name for kind, name in UNAVAILABLE.items() if isinstance(exc, kind)), None)


def _page(message_key: str, reason: str, status: int, *, retry_after: int | None = None) -> Response:
    body = render_template("error.html", message=translate(message_key), reason=reason, detail=None)
    resp = Response(body, status=status)
    resp.headers["Cache-Control"] = "no-store"
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def _drop_session_changes(app: Flask) -> None:
    """Nothing of this request's session is written: the browser keeps what it had before the request (or,
    when the session store itself failed, nothing is attempted)."""
    # Flask saves ``_session`` after the response (process_response), and after a failure to open it, it is
    # None, which the session interface would try to save too.
    request_ctx._session = app.session_interface.make_null_session(app)
