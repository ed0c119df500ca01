"""The login page and the IdP's own landing and sign-out pages."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as HttpResponse

from idp.signin.context import Credentials
from idp.web import login_csrf, negotiate, single_logout
from idp.web.i18n import LANGUAGE_COOKIE, LANGUAGES
from idp.web.signin_flow import error_page, login_form, parked_request, sign_in
from idp.web.sso_session import current_sso, end_sso

bp = Blueprint("login", __name__)

MAX_USERNAME = 256
MAX_PASSWORD = 512


@bp.route("/login", methods=["GET", "POST"])
def login() -> HttpResponse:
    key = request.values.get("k", "")
    req = parked_request(key) if key else None
    if key and req is None:
        return error_page("error.login_expired", 400)
    after = local_path(request.values.get("next"))
    if request.method == "GET":
        if req is None and after and current_sso() is not None:
            return redirect(after, code=303)
        if not negotiate.offered():
            return login_form(req, key, after=after)
        ticket = negotiate.token()
        if ticket is not None:
            return sign_in(req, negotiate_token=ticket, parked_as=key or None, after=after)
        # A browser that does not speak Negotiate shows the body: the form, not an error page.
        resp = login_form(req, key, after=after, status=401)
        resp.headers["WWW-Authenticate"] = "Negotiate"
        return resp
    login_csrf.check()
    credentials = Credentials(
        username=request.form.get("username", "")[:MAX_USERNAME],
        password=request.form.get("password", "")[:MAX_PASSWORD],
    )
    return sign_in(req, credentials=credentials, parked_as=key or None, after=after)


def local_path(target: str | None) -> str | None:
    """``target`` when it is a path on this site, else None: a ``next`` that could leave the site (//evil,
    https://evil, /\\evil) would make the login page an open redirect. Browsers drop tabs and newlines from a
    URL and read a backslash as a slash, so "/<tab>/evil" is "//evil" to them: any whitespace, control
    character or backslash refuses the target rather than being judged after the browser's clean-up."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if any(c == "\\" or c.isspace() or not c.isprintable() for c in target):
        return None
    return target


@bp.get("/")
def home() -> HttpResponse | str:
    sso = current_sso()
    if sso is None:
        return redirect(url_for("login.login"))
    return render_template("signed_in.html", person=sso.person)


@bp.post("/logout")
def logout() -> HttpResponse:
    return single_logout.start(end_sso(), None)


@bp.get("/lang")
def language() -> HttpResponse:
    """The language switch on every page: remembered in a cookie for a year, then back where it was."""
    resp = redirect(local_path(request.args.get("next")) or url_for("login.home"), code=303)
    chosen = request.args.get("to")
    if chosen in LANGUAGES:
        resp.set_cookie(LANGUAGE_COOKIE, chosen, max_age=365 * 86400, samesite="Lax", httponly=True)
    return resp
