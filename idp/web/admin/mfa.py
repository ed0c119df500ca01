"""/admin/mfa: a person's second factors, and resetting them (a lost phone). The reset is idp.mfa.reset, the
same code `idp mfa reset` runs, which writes the audit row naming the admin."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from idp.mfa.reset import reset_factors
from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.i18n import translate
from idp.web.services import services

_MAX_USERNAME = 256


@bp.get("/mfa")
def mfa() -> str:
    user = request.args.get("user", "").strip()[:_MAX_USERNAME]
    factors = services().factors
    guid = factors.guid_of(user) if user else None
    listed = factors.list(guid) if guid is not None else []
    return render_template("admin/mfa.html", user=user, factors=listed)


@bp.post("/mfa/reset")
def mfa_reset() -> Response:
    user = request.form.get("user", "").strip()
    if not user or len(user) > _MAX_USERNAME:
        abort(400)
    svc = services()
    removed = reset_factors(svc.factors, svc.audit, user, actor=current_admin().username, ip=request.remote_addr)
    if removed:
        flash(translate("admin.mfa.reset_done", user=user, count=str(removed)), "message")
    else:
        flash(translate("admin.mfa.nothing", user=user), "error")
    return redirect(url_for("admin.mfa", user=user))
