"""Changing one's AD password here: when AD asks for it at sign-in, or as "Change my password" when signed
in; and "later" on the expiry warning. The rules live in idp.signin.password_change."""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for
from werkzeug.wrappers import Response as HttpResponse

from idp.signin.context import Credentials
from idp.signin.password_change import ChangeRefused
from idp.web import login_csrf
from idp.web.i18n import translate
from idp.web.login import MAX_PASSWORD, MAX_USERNAME, local_path
from idp.web.password_pages import change_form
from idp.web.services import services
from idp.web.signin_flow import client_ip, error_page, parked_request, sign_in
from idp.web.sso_session import current_sso

bp = Blueprint("password", __name__)

_AT_SIGN_IN = ("password_expired", "password_must_change")
_STATUS = {"invalid_credentials": 401, "empty_password": 401, "throttled": 429, "directory_unavailable": 503}


@bp.route("/password/change", methods=["GET", "POST"])
def change() -> HttpResponse:
    key = request.values.get("k", "")
    req = parked_request(key) if key else None
    if key and req is None:
        return error_page("error.login_expired", 400)
    after = local_path(request.values.get("next"))
    reason = request.values.get("reason")
    reason = reason if reason in _AT_SIGN_IN else None
    sso = current_sso()
    if reason is None and sso is None:
        # "Change my password" is for the signed-in person; AD's request at sign-in carries its reason.
        return redirect(url_for("login.login", next=url_for("password.change")), code=303)
    username = request.form.get("username", "")[:MAX_USERNAME] if reason else sso.person.username if sso else ""
    if request.method == "GET":
        return change_form(username, key=key, after=after, reason=reason, sp=req.sp_name if req else None)
    login_csrf.check()
    new = request.form.get("new_password", "")[:MAX_PASSWORD]
    try:
        changed = services().password.change(
            username,
            request.form.get("old_password", "")[:MAX_PASSWORD],
            new,
            request.form.get("new_password2", "")[:MAX_PASSWORD],
            ip=client_ip(),
        )
    except ChangeRefused as exc:
        words = "password.wrong_old" if exc.reason == "invalid_credentials" else exc.reason
        message = translate(words, sp=(req.sp_name if req else None) or translate("this.service"))
        status = _STATUS.get(exc.reason, 400)
        sp = req.sp_name if req else None
        return change_form(username, key=key, after=after, reason=reason, sp=sp, error=message, status=status)
    if reason is not None:
        # The sign-in AD interrupted goes on, proven by the new password.
        return sign_in(req, credentials=Credentials(changed, new), parked_as=key or None, after=after)
    if req is not None:
        return sign_in(req, parked_as=key, after=after)  # "change now" on the expiry warning
    return change_form(changed, done=True)


@bp.post("/password/later")
def later() -> HttpResponse:
    """ "Later" on the expiry warning: on to where the sign-in was going (the SSO session is already there)."""
    login_csrf.check()
    key = request.form.get("k", "")
    after = local_path(request.form.get("next"))
    req = parked_request(key) if key else None
    if key and req is None:
        return error_page("error.login_expired", 400)
    if req is None:
        return redirect(after or url_for("login.home"), code=303)
    return sign_in(req, parked_as=key, after=after)
