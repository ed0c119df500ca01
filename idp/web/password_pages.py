"""The change-password form and the expiry warning, as pages: what the sign-in flow shows when the pipeline
says a password must change now or expires soon (the routes that take the answers are in password.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, render_template
from werkzeug.wrappers import Response as HttpResponse

from idp.web import login_csrf
from idp.web.services import services

EXPIRY_COOKIE = "idp_pw_warned"
"""Set when the expiry warning is shown: the browser is not warned again for a day."""
_DAY = 86400


def change_form(
    username: str,
    *,
    key: str = "",
    after: str | None = None,
    reason: str | None = None,
    sp: str | None = None,
    error: str | None = None,
    status: int = 200,
    done: bool = False,
) -> HttpResponse:
    """The form for ``username``. ``reason`` (password_expired, password_must_change): AD asked for it at
    sign-in, and the sign-in goes on with the new password; None: the signed-in person's own choice."""
    rules = None if done else services().password.rules(username)
    return login_csrf.form_page(
        "change_password.html",
        status=status,
        username=username,
        key=key,
        after=after,
        reason=reason,
        sp=sp,
        error=error,
        rules=rules,
        done=done,
    )


def expiry_warning(
    expires_at: datetime, *, key: str = "", after: str | None = None, sp: str | None = None
) -> HttpResponse:
    """ "Your password expires in N days": change now, or later (on to the SP). Remembered for a day."""
    resp = Response()
    token = login_csrf.issue(resp)
    days = max(0, (expires_at - datetime.now(UTC)).days)
    resp.set_data(
        render_template(
            "expiry_warning.html",
            days=str(days),
            date=expires_at.strftime("%Y-%m-%d %H:%M UTC"),
            key=key,
            after=after,
            sp=sp,
            csrf=token,
        )
    )
    resp.set_cookie(
        EXPIRY_COOKIE,
        "1",
        max_age=_DAY,
        httponly=True,
        secure=services().settings.server.is_https,
        samesite="Lax",
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp
