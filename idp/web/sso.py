"""SAML endpoints: metadata, SSO (Redirect and POST) and single logout."""

from __future__ import annotations

import dataclasses
import secrets

from flask import Blueprint, Response, redirect, render_template, request, session, url_for
from flask_wtf.csrf import generate_csrf

from idp import metrics
from idp.saml.idp import AuthnRequestInfo, PostForm, RedirectTo, SamlRequestError
from idp.signin import SignInRefused, SsoContext
from idp.sps.policy import SpPolicy
from idp.web.i18n import translate
from idp.web.services import services
from idp.web.sso_session import SsoSession, current_sso, end_sso, remember_sp

bp = Blueprint("saml", __name__, url_prefix="/saml")

_REQUESTS_KEY = "authn_requests"
_MAX_OPEN_REQUESTS = 10


def client_ip() -> str | None:
    return request.remote_addr


@bp.get("/metadata")
def metadata() -> Response:
    return Response(services().saml.metadata_xml(), mimetype="application/samlmetadata+xml")


def _received(endpoint: str) -> tuple[str, str, str | None, str | None] | Response:
    """(binding, SAMLRequest, RelayState, raw query) from a GET, or from a POST parked by _park_post;
    a Response when there is nothing to go on."""
    if request.method == "POST":
        return _park_post(endpoint)
    if "resume" in request.args:
        fields = services().pending.pop(request.args["resume"])
        if fields is None:
            return error_page("error.login_expired", 400)
        binding, saml_request, relay_state, query = "post", fields.get("SAMLRequest"), fields.get("RelayState"), None
    else:
        binding, saml_request, relay_state = "redirect", request.args.get("SAMLRequest"), request.args.get("RelayState")
        query = request.query_string.decode("ascii", "replace")
    if not saml_request:
        return _refused_request(SamlRequestError("missing_request", "No SAMLRequest was received.", None))
    return binding, saml_request, relay_state, query


def _park_post(endpoint: str) -> Response:
    """See idp.web.pending: come back as a same-site GET so the session cookie is sent."""
    saml_request = request.form.get("SAMLRequest")
    if not saml_request:
        return _refused_request(SamlRequestError("missing_request", "No SAMLRequest was posted.", None))
    fields = {"SAMLRequest": saml_request}
    if "RelayState" in request.form:
        fields["RelayState"] = request.form["RelayState"]
    key = services().pending.put(fields)
    return redirect(url_for(endpoint, resume=key), code=303)


@bp.route("/sso", methods=["GET", "POST"])
def sso() -> Response | str:
    received = _received("saml.sso")
    if isinstance(received, Response):
        return received
    binding, saml_request, relay_state, query = received
    try:
        req = services().saml.parse_authn_request(binding, saml_request, relay_state, query_string=query)
    except SamlRequestError as exc:
        return _refused_request(exc)
    return continue_authn(req)


def continue_authn(req: AuthnRequestInfo) -> Response | str:
    """An SSO session answers at once (unless ForceAuthn); otherwise IsPassive fails or the login page asks."""
    sso = current_sso()
    if sso is not None and not req.force_authn:
        return answer(req, sso, reused=True)
    if req.is_passive:
        services().audit.record(
            "signin",
            "failure",
            reason="no_passive",
            sp=req.sp_entity_id,
            ip=client_ip(),
            username=sso.person.username if sso else None,
        )
        metrics.SIGNINS.labels(result="failure", reason="no_passive").inc()
        return post_form(services().saml.error_response(req, "NoPassive"), req.sp_name)
    return redirect(url_for("login.login", k=stash_request(req)))


def answer(req: AuthnRequestInfo, sso: SsoSession, *, reused: bool) -> Response | str:
    try:
        form = services().signin.respond(
            req, sso.person, SsoContext(sso.session_index, sso.authn_instant), ip=client_ip(), reused_session=reused
        )
    except SignInRefused as exc:
        return error_page(exc.reason, 403, sp=req.sp_name)
    remember_sp(req.sp_entity_id)
    return post_form(form, req.sp_name)


def post_form(form: PostForm, sp_name: str) -> Response:
    """The auto-POST page. The nonce lets exactly our one script run; form-action pins the ACS origin."""
    nonce = secrets.token_urlsafe(16)
    body = render_template("post_form.html", form=form, sp=sp_name, nonce=nonce)
    resp = Response(body)
    resp.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'self'; script-src 'nonce-{nonce}'; form-action {_origin(form.action)}"
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _refused_request(exc: SamlRequestError) -> Response:
    services().audit.record(
        "saml_request", "refused", reason=exc.reason, sp=exc.sp_entity_id, ip=client_ip(), detail=exc.message
    )
    metrics.SAML_REFUSED.labels(reason=exc.reason).inc()
    return error_page(exc.reason, 400, detail=exc.message)


def error_page(reason: str, status: int, *, sp: str | None = None, detail: str | None = None) -> Response:
    message = translate(reason, sp=sp or translate("this.service"))
    return Response(render_template("error.html", message=message, reason=reason, detail=detail), status=status)


# --- AuthnRequests waiting for the person to type their password -------------------------------------------


def stash_request(req: AuthnRequestInfo) -> str:
    key = secrets.token_urlsafe(12)
    waiting = dict(session.get(_REQUESTS_KEY, {}))
    while len(waiting) >= _MAX_OPEN_REQUESTS:  # one browser, many tabs: keep the newest few
        waiting.pop(next(iter(waiting)))
    data = dataclasses.asdict(req)
    data["policy"] = req.policy.model_dump()
    waiting[key] = data
    session[_REQUESTS_KEY] = waiting
    # The login page this request waits on needs a CSRF secret in the session: making it now puts it in
    # this request's session write, so showing the page does not write the session file a second time.
    generate_csrf()
    return key


def load_request(key: str) -> AuthnRequestInfo | None:
    data = session.get(_REQUESTS_KEY, {}).get(key)
    if data is None:
        return None
    return AuthnRequestInfo(**{**data, "policy": SpPolicy(**data["policy"])})


def drop_request(key: str) -> None:
    waiting = dict(session.get(_REQUESTS_KEY, {}))
    waiting.pop(key, None)
    session[_REQUESTS_KEY] = waiting


# --- Single logout -----------------------------------------------------------------------------------------


@bp.route("/slo", methods=["GET", "POST"])
def slo() -> Response | str:
    received = _received("saml.slo")
    if isinstance(received, Response):
        return received
    binding, saml_request, relay_state, query = received
    saml = services().saml
    try:
        req = saml.parse_logout_request(binding, saml_request, relay_state, query_string=query)
    except SamlRequestError as exc:
        return _refused_request(exc)
    ended = end_sso()
    services().audit.record(
        "logout",
        "success",
        reason="sp_initiated",
        sp=req.sp_entity_id,
        ip=client_ip(),
        username=ended.person.username if ended else None,
        detail=None if ended else "no IdP session was open",
    )
    out = saml.logout_response(req)
    if isinstance(out, RedirectTo):
        return redirect(out.url, code=303)
    return post_form(out, req.sp_entity_id)
