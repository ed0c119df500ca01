"""Runs the sign-in pipeline for this browser and turns its outcome into HTTP: the one place where the
SSO endpoint, IdP-initiated sign-in and the login form meet the pipeline.

The request a login page waits on is parked in the session as the SP's request only (entityID, ACS,
RelayState, ...), never with the SP's policy: the pipeline reads the policy when it runs again.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence
from uuid import UUID

from flask import Response, after_this_request, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as HttpResponse

from idp.mfa.passkeys import PasskeyAssertion
from idp.saml.messages import AuthnRequestInfo, PostForm
from idp.signin.context import (
    Answer,
    ChangePassword,
    Credentials,
    NeedsPassword,
    NeedsSecondFactor,
    PasswordExpiresSoon,
    Redirect,
    Refused,
    SignedIn,
    SignInContext,
)
from idp.signin.logout import SignedInSp
from idp.web import login_csrf
from idp.web.frontchannel import Frame, frame_src, page_policy
from idp.web.i18n import translate
from idp.web.passkey_page import allow_script, offer_assertion
from idp.web.password_pages import EXPIRY_COOKIE, change_form, expiry_warning
from idp.web.services import services
from idp.web.sso_session import current_sso, end_sso, record_mfa, refresh_sso, remember_sp, start_sso

_REQUESTS_KEY = "authn_requests"
_MAX_OPEN_REQUESTS = 10
REMEMBER_COOKIE = "idp_mfa_browser"
"""Holds the "remember this browser" token (only its digest is stored, idp.mfa.factors)."""


def client_ip() -> str | None:
    return request.remote_addr


def sign_in(
    req: AuthnRequestInfo | None,
    *,
    credentials: Credentials | None = None,
    parked_as: str | None = None,
    after: str | None = None,
    second_factor_code: str | PasskeyAssertion | None = None,
    remember_browser: bool = False,
    step_up: bool = False,
    negotiate_token: bytes | None = None,
    password_form_here: bool = False,
) -> HttpResponse:
    """Run the pipeline for ``req`` (None: no SP is waiting) and answer the browser.

    ``parked_as`` is the key the request waited under while the login form was shown; ``after`` is where a
    sign-in with no SP goes next. ``second_factor_code``: what the second-factor page sent, and whether the
    person asked to be remembered on this browser; ``step_up``: ask for a second factor whatever the policy;
    ``negotiate_token``: the browser's Windows (SPNEGO) token; ``password_form_here``: answer a request that
    needs a password with the login form itself instead of a redirect to it."""
    sso = current_sso()
    ctx = SignInContext(
        ip=client_ip(),
        request=req,
        credentials=credentials,
        session=sso.for_signin() if sso is not None else None,
        expiry_warned=EXPIRY_COOKIE in request.cookies,
        second_factor_code=second_factor_code,
        remembered_browser=request.cookies.get(REMEMBER_COOKIE),
        step_up=step_up,
        negotiate_token=negotiate_token,
    )
    outcome = services().signin.run(ctx)
    if ctx.second_factor_now and remember_browser and ctx.person is not None:
        _remember_browser(ctx.person.guid)
    answered = None
    if isinstance(outcome, Answer) and outcome.refused is None and req is not None:
        answered = SignedInSp(req.sp_entity_id, req.sp_name, ctx.name_id)
    if ctx.signed_in_now and ctx.session is not None:
        start_sso(ctx.session, services().settings.server.session_lifetime, answered)
        if parked_as is not None:
            drop_request(parked_as)
    else:
        if ctx.session_ended:
            end_sso()
        elif ctx.session_rechecked and ctx.session is not None:
            refresh_sso(ctx.session)
        if ctx.second_factor_now and ctx.session is not None:
            record_mfa(ctx.session)
        if answered is not None:
            remember_sp(answered.entity_id, answered.sp_name, answered.name_id)
    if isinstance(outcome, Answer):
        return post_form(outcome.form, outcome.sp_name)
    if isinstance(outcome, Redirect):
        return go_on(outcome.url, outcome.sp_name)
    if isinstance(outcome, Refused):
        if second_factor_code is not None and outcome.status in (401, 429):  # the code was not accepted
            message = translate(outcome.reason, sp=outcome.sp_name or translate("this.service"))
            return code_form(req, parked_as or "", after=after, error=message, status=outcome.status)
        if outcome.status in (401, 429):  # the password was not accepted: the form again, with why
            message = translate(outcome.says or outcome.reason, sp=outcome.sp_name or translate("this.service"))
            typed = credentials.username if credentials is not None else ""
            return login_form(req, parked_as or "", after=after, username=typed, error=message, status=outcome.status)
        return error_page(outcome.reason, outcome.status, sp=outcome.sp_name)
    if isinstance(outcome, ChangePassword):
        message = translate(f"{outcome.reason}.change")
        key = parked_as or (park_request(req) if req is not None else "")
        sp = outcome.sp_name
        return change_form(outcome.username, key=key, after=after, reason=outcome.reason, sp=sp, error=message)
    if isinstance(outcome, PasswordExpiresSoon):
        # The SSO session has started and the parked request was dropped: park it again for "later".
        key = park_request(req) if req is not None else ""
        return expiry_warning(outcome.expires_at, key=key, after=after, sp=outcome.sp_name)
    if isinstance(outcome, NeedsPassword):
        if req is None:
            return redirect(url_for("login.login", next=after) if after else url_for("login.login"), code=303)
        key = parked_as or park_request(req)
        return login_form(req, key) if password_form_here else redirect(url_for("login.login", k=key), code=303)
    if isinstance(outcome, NeedsSecondFactor):
        # After a password the parked request was dropped with the login form: park it again for the code.
        waiting = (parked_as if not ctx.signed_in_now else None) or (park_request(req) if req is not None else None)
        return redirect(url_for("mfa.enrol" if outcome.enrol else "mfa.verify", k=waiting, next=after), code=303)
    assert isinstance(outcome, SignedIn)
    # ``after`` may redirect on to another origin (an OIDC client): see go_on.
    return go_on(after) if after else redirect(url_for("login.home"), code=303)


def go_on(
    url: str, sp_name: str | None = None, *, heading: str | None = None, frames: Sequence[Frame] = ()
) -> HttpResponse:
    """Send the browser on to ``url``. After a form of ours was posted (password, code, new password), browsers
    hold every redirect of that submission to the page's CSP form-action ('self'), so a redirect chain that
    leaves our origin (Alibaba Mail's login, an OIDC client's redirect URI) would stop on our page. A page that
    opens the URL itself (meta refresh, and a link) starts a new navigation instead. Never cached either way:
    the URL may be a one-time login or carry a logout request. ``frames``: clients a logout tells on the way
    (idp.web.frontchannel), whose frames the page loads before it goes on."""
    if request.method != "POST" and not frames:
        resp = redirect(url, code=303)
    else:
        sp = sp_name or translate("this.service")
        nonce = secrets.token_urlsafe(16) if frames else None
        body = render_template(
            "open_app.html",
            url=url,
            heading=heading or translate("open_app.heading", sp=sp),
            frames=frames,
            nonce=nonce,
        )
        resp = Response(body)
        if frames:
            resp.headers["Content-Security-Policy"] = page_policy(frames, nonce)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def login_form(
    req: AuthnRequestInfo | None,
    key: str,
    *,
    after: str | None = None,
    username: str = "",
    error: str | None = None,
    status: int = 200,
) -> HttpResponse:
    sp = req.sp_name if req else None
    # Where the language switch comes back to: this form's own address, wherever it was shown.
    here = url_for("login.login", k=key or None, next=after)
    return login_csrf.form_page(
        "login.html", status=status, sp=sp, key=key, after=after, username=username, error=error, here=here
    )


def code_form(
    req: AuthnRequestInfo | None, key: str, *, after: str | None = None, error: str | None = None, status: int = 200
) -> HttpResponse:
    """The page asking for a second factor (a code from the authenticator app, or a recovery code), with a
    passkey button when the person has one."""
    days = services().settings.mfa.remember_days
    sso = current_sso()
    passkey = offer_assertion(sso.person.guid) if sso is not None else None
    body = render_template(
        "mfa_verify.html",
        sp=req.sp_name if req else None,
        key=key,
        after=after,
        error=error,
        remember_days=days,
        passkey_options=passkey,
    )
    resp = Response(body, status=status)
    resp.headers["Cache-Control"] = "no-store"
    return allow_script(resp) if passkey is not None else resp


def _remember_browser(guid: UUID) -> None:
    days = services().settings.mfa.remember_days
    if days <= 0:
        return
    token = services().factors.remember_browser(guid, days)
    secure = services().settings.server.is_https

    @after_this_request
    def _set(resp: HttpResponse) -> HttpResponse:
        resp.set_cookie(
            REMEMBER_COOKIE, token, max_age=days * 86400, httponly=True, secure=secure, samesite="Lax", path="/"
        )
        return resp


def post_form(
    form: PostForm, sp_name: str, *, heading: str | None = None, frames: Sequence[Frame] = ()
) -> HttpResponse:
    """The auto-POST page. The nonce lets exactly our one script run; form-action pins the ACS origin.
    ``frames``: clients a logout tells on the way (idp.web.frontchannel), loaded before the form is sent."""
    nonce = secrets.token_urlsafe(16)
    body = render_template(
        "post_form.html",
        form=form,
        sp=sp_name,
        nonce=nonce,
        title=heading or translate("post.heading", sp=sp_name),
        frames=frames,
    )
    resp = Response(body)
    resp.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'self'; script-src 'nonce-{nonce}'; form-action {_origin(form.action)}"
        + frame_src(frames)
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def error_page(reason: str, status: int, *, sp: str | None = None, detail: str | None = None) -> HttpResponse:
    message = translate(reason, sp=sp or translate("this.service"))
    return Response(render_template("error.html", message=message, reason=reason, detail=detail), status=status)


# --- AuthnRequests waiting for the person to type their password -------------------------------------------


def park_request(req: AuthnRequestInfo) -> str:
    key = secrets.token_urlsafe(12)
    waiting = dict(session.get(_REQUESTS_KEY, {}))
    while len(waiting) >= _MAX_OPEN_REQUESTS:  # one browser, many tabs: keep the newest few
        waiting.pop(next(iter(waiting)))
    waiting[key] = dataclasses.asdict(req)
    session[_REQUESTS_KEY] = waiting
    return key


def parked_request(key: str) -> AuthnRequestInfo | None:
    data = session.get(_REQUESTS_KEY, {}).get(key)
    if not isinstance(data, dict):
        return None
    try:
        return AuthnRequestInfo(**data)
    except TypeError:  # parked by an older version with other fields: start again
        return None


def parked_key(sp_entity_id: str | None, request_id: str) -> str | None:
    """The key this browser parked the SP's request ``request_id`` under, if it is still waiting."""
    for key, data in session.get(_REQUESTS_KEY, {}).items():
        if isinstance(data, dict) and (data.get("sp_entity_id"), data.get("request_id")) == (sp_entity_id, request_id):
            return key
    return None


def drop_request(key: str) -> None:
    waiting = dict(session.get(_REQUESTS_KEY, {}))
    waiting.pop(key, None)
    session[_REQUESTS_KEY] = waiting
