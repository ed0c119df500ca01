"""The login page and the IdP's own landing and sign-out pages."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request, url_for

from idp.signin import SignInRefused
from idp.web.i18n import LANGUAGE_COOKIE, LANGUAGES, translate
from idp.web.services import services
from idp.web.sso import answer, client_ip, drop_request, error_page, load_request
from idp.web.sso_session import current_sso, end_sso, start_sso

bp = Blueprint("login", __name__)

MAX_USERNAME = 256
MAX_PASSWORD = 512


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    key = request.values.get("k", "")
    req = load_request(key) if key else None
    if key and req is None:
        return error_page("error.login_expired", 400)
    sp_name = req.sp_name if req else None
    after = local_path(request.values.get("next"))
    if request.method == "GET":
        if req is None and after and current_sso() is not None:
            return redirect(after, code=303)
        return _form(sp_name, key, after=after)

    username = request.form.get("username", "")[:MAX_USERNAME]
    password = request.form.get("password", "")[:MAX_PASSWORD]
    svc = services()
    try:
        person = svc.signin.authenticate(username, password, ip=client_ip(), sp=req.sp_entity_id if req else None)
    except SignInRefused as exc:
        status = 429 if exc.reason == "throttled" else 401
        return _form(sp_name, key, after=after, username=username, error=translate(exc.reason), status=status)
    sso = start_sso(person, svc.settings.server.session_lifetime)
    if req is None:
        svc.signin.audit_login_without_sp(person, ip=client_ip())
        return redirect(after or url_for("login.home"), code=303)
    drop_request(key)
    return answer(req, sso, reused=False)


def local_path(target: str | None) -> str | None:
    """``target`` when it is a path on this site, else None: a ``next`` that could leave the site (//evil,
    https://evil, /\\evil) would make the login page an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or any(c in target for c in "\r\n\\"):
        return None
    return target


def _form(
    sp_name: str | None,
    key: str,
    *,
    after: str | None = None,
    username: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    body = render_template("login.html", sp=sp_name, key=key, after=after, username=username, error=error)
    resp = Response(body, status=status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/")
def home() -> Response | str:
    sso = current_sso()
    if sso is None:
        return redirect(url_for("login.login"))
    return render_template("signed_in.html", person=sso.person)


@bp.post("/logout")
def logout() -> str:
    ended = end_sso()
    services().audit.record(
        "logout", "success", reason="idp_page", ip=client_ip(), username=ended.person.username if ended else None
    )
    return render_template("logged_out.html")


@bp.get("/lang")
def language() -> Response:
    """The language switch on every page: remembered in a cookie for a year, then back where it was."""
    resp = redirect(local_path(request.args.get("next")) or url_for("login.home"), code=303)
    chosen = request.args.get("to")
    if chosen in LANGUAGES:
        resp.set_cookie(LANGUAGE_COOKIE, chosen, max_age=365 * 86400, samesite="Lax", httponly=True)
    return resp
