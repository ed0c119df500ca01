"""/admin/sessions: who is signed in now, and revoking a session (or all of a person's) on every node.

The list and the revoke are idp.signin.sessions, the same code `idp sessions` runs, which also writes the
audit row."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.admin.sp_names import sp_names
from idp.web.i18n import translate
from idp.web.services import services

_MAX_USERNAME = 256


@bp.get("/sessions")
def sessions() -> str:
    user = request.args.get("user", "").strip()[:_MAX_USERNAME]
    live = services().sessions.live(user or None)
    return render_template("admin/sessions.html", sessions=live, user=user, sp_names=sp_names())


@bp.post("/sessions/revoke")
def sessions_revoke() -> Response:
    user = request.form.get("user", "").strip()
    if not user or len(user) > _MAX_USERNAME:
        abort(400)
    count = services().sessions.revoke(
        user,
        actor=current_admin().username,
        ip=request.remote_addr,
        session_index=request.form.get("session") or None,
    )
    if count:
        flash(translate("admin.sessions.revoked", user=user, count=str(count)), "message")
    else:
        flash(translate("admin.sessions.nothing_revoked", user=user), "error")
    return redirect(url_for("admin.sessions", user=request.form.get("filter") or None))
