"""The login form's CSRF token, kept in the browser so that showing the form stores nothing on the server.

flask-wtf keeps its CSRF secret in the session, and a session written for every anonymous GET /login is
8 hours of disk (or Redis) per request that anyone can ask for. The login form uses a double-submit token
instead: a random value in an HttpOnly, SameSite=Lax cookie, and in the form that value signed with the
app's secret key and the time. A cross-site page can neither read the cookie nor, without the secret key,
sign a value of its own; a cross-site POST does not even carry a Lax cookie. Over HTTPS the cookie is
``__Host-`` prefixed, so a sibling subdomain cannot plant one. Every other form (the console, sign-out)
belongs to someone with a session and keeps flask-wtf's session-bound token.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import current_app, render_template, request
from flask_wtf.csrf import CSRFError
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from idp.web.services import services

_SALT = "idp-login-csrf"
_NONCE_LENGTH = 43  # secrets.token_urlsafe(32)


def _cookie_name() -> str:
    return "__Host-idp_login" if services().settings.server.is_https else "idp_login"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=_SALT)  # type: ignore[arg-type]


def _nonce_of_browser() -> str | None:
    nonce = request.cookies.get(_cookie_name(), "")
    return nonce if len(nonce) == _NONCE_LENGTH else None


def issue(resp: Response) -> str:
    """The token for a login form in ``resp``; the cookie it is checked against is set when the browser has
    none yet (kept when it has: a second tab's form must not invalidate the first's)."""
    nonce = _nonce_of_browser()
    if nonce is None:
        nonce = secrets.token_urlsafe(32)
        resp.set_cookie(
            _cookie_name(),
            nonce,
            httponly=True,
            secure=services().settings.server.is_https,
            samesite="Lax",
            path="/",
        )
    return str(_serializer().dumps(nonce))


def check() -> None:
    """Raise CSRFError (the app's "form expired" page) unless the posted token signs this browser's cookie
    and is younger than WTF_CSRF_TIME_LIMIT."""
    nonce = _nonce_of_browser()
    token = request.form.get("csrf_token", "")
    if nonce is None or not token:
        raise CSRFError("The login form's CSRF token or cookie is missing.")
    try:
        signed = _serializer().loads(token, max_age=current_app.config["WTF_CSRF_TIME_LIMIT"])
    except BadData:
        raise CSRFError("The login form's CSRF token is invalid or expired.") from None
    if not isinstance(signed, str) or not hmac.compare_digest(signed, nonce):
        raise CSRFError("The login form's CSRF token was issued to another browser.")


def form_page(template: str, *, status: int = 200, **context: Any) -> Response:
    """A page with one of the sign-in forms: a fresh token in the form and in its cookie, never cached."""
    resp = Response(status=status, mimetype="text/html")
    resp.set_data(render_template(template, csrf=issue(resp), **context))
    resp.headers["Cache-Control"] = "no-store"
    return resp
