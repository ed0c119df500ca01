"""SAML endpoints: metadata, SSO (Redirect and POST) and single logout."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, redirect, request, url_for
from werkzeug.wrappers import Response as HttpResponse

from idp import metrics
from idp.codes import AuditEvent
from idp.saml.errors import SamlRequestError
from idp.saml.messages import AuthnRequestInfo, LogoutRequestInfo
from idp.web import negotiate, single_logout
from idp.web.pending import Parked
from idp.web.services import services
from idp.web.signin_flow import client_ip, error_page, parked_key, sign_in

bp = Blueprint("saml", __name__, url_prefix="/saml")


@bp.get("/metadata")
def metadata() -> HttpResponse:
    return Response(services().saml_server.metadata_xml(), mimetype="application/samlmetadata+xml")


def _received(endpoint: str, parse: Callable[..., Parked], kind: type[Parked]) -> Parked | HttpResponse:
    """The request of a Redirect-binding GET, of a POST, or of the GET a POST was parked for (see
    idp.web.pending); a Response when there is none to answer. A POST is checked in full before it is
    parked, so nothing a stranger posts is stored unless an SP we know signed or sent it."""
    if request.method == "GET" and "resume" in request.args:
        parked = services().pending.pop(request.args["resume"], kind)
        return parked if parked is not None else error_page("error.login_expired", 400)
    if request.method == "POST":
        binding, saml_request, relay_state = "post", request.form.get("SAMLRequest"), request.form.get("RelayState")
        query = None
    else:
        binding, saml_request, relay_state = "redirect", request.args.get("SAMLRequest"), request.args.get("RelayState")
        query = request.query_string.decode("ascii", "replace")
    if not saml_request:
        return refused_request(SamlRequestError("missing_request", "No SAMLRequest was received.", None))
    try:
        accepted = parse(binding, saml_request, relay_state, query_string=query)
    except SamlRequestError as exc:
        return _reloaded(exc) or refused_request(exc)
    if request.method == "POST":  # come back as a same-site GET so the session cookie is sent
        return redirect(url_for(endpoint, resume=services().pending.put(accepted)), code=303)
    return accepted


def _reloaded(exc: SamlRequestError) -> HttpResponse | None:
    """A replay from the browser that parked this very request: it reloaded the login form shown at this URL
    (or went back to it). It gets its form again, at /login; anyone else's replay is refused."""
    if exc.reason != "replayed_request" or exc.request_id is None or request.method != "GET":
        return None
    key = parked_key(exc.sp_entity_id, exc.request_id)
    return redirect(url_for("login.login", k=key), code=303) if key is not None else None


@bp.route("/sso", methods=["GET", "POST"])
def sso() -> HttpResponse:
    req = _received("saml.sso", services().saml_requests.parse_authn_request, AuthnRequestInfo)
    if isinstance(req, HttpResponse):
        return req
    # The login form is shown at this URL rather than after a redirect to /login: one request fewer per
    # sign-in. Not for a POST resumed by key (a reload would find the key used), nor where Windows sign-in is
    # offered (its 401 handshake is /login's).
    form_here = "SAMLRequest" in request.args and not negotiate.offered()
    return sign_in(req, password_form_here=form_here)


def refused_request(
    exc: SamlRequestError, *, event: AuditEvent = "saml_request", status: int = 400, username: str | None = None
) -> HttpResponse:
    """A SAML request (or an IdP-initiated start) we will not answer: an audit row and a page that says why."""
    services().audit.record(
        event, "refused", reason=exc.reason, username=username, sp=exc.sp_entity_id, ip=client_ip(), detail=exc.message
    )
    metrics.SAML_REFUSED.labels(reason=exc.reason).inc()
    return error_page(exc.reason, status, detail=exc.message)


# --- Single logout -----------------------------------------------------------------------------------------


@bp.route("/slo", methods=["GET", "POST"])
def slo() -> HttpResponse:
    """An SP's LogoutRequest, or its LogoutResponse to ours (see idp.web.single_logout)."""
    if "SAMLResponse" in (request.form if request.method == "POST" else request.args):
        try:
            return single_logout.answer_received()
        except SamlRequestError as exc:
            return refused_request(exc)
    req = _received("saml.slo", services().saml_requests.parse_logout_request, LogoutRequestInfo)
    if isinstance(req, HttpResponse):
        return req
    return single_logout.sp_asked(req)


@bp.get("/slo/next")
def slo_next() -> HttpResponse:
    try:
        return single_logout.next_step()
    except SamlRequestError as exc:
        return refused_request(exc)
