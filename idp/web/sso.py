"""SAML endpoints: metadata, SSO (Redirect and POST) and single logout."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, request, url_for
from werkzeug.wrappers import Response as HttpResponse

from idp import metrics
from idp.codes import AuditEvent
from idp.saml.errors import SamlRequestError
from idp.saml.messages import RedirectTo
from idp.web.services import services
from idp.web.signin_flow import client_ip, error_page, post_form, sign_in
from idp.web.sso_session import end_sso

bp = Blueprint("saml", __name__, url_prefix="/saml")


@bp.get("/metadata")
def metadata() -> HttpResponse:
    return Response(services().saml_server.metadata_xml(), mimetype="application/samlmetadata+xml")


def _received(endpoint: str) -> tuple[str, str, str | None, str | None] | HttpResponse:
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
        return refused_request(SamlRequestError("missing_request", "No SAMLRequest was received.", None))
    return binding, saml_request, relay_state, query


def _park_post(endpoint: str) -> HttpResponse:
    """See idp.web.pending: come back as a same-site GET so the session cookie is sent."""
    saml_request = request.form.get("SAMLRequest")
    if not saml_request:
        return refused_request(SamlRequestError("missing_request", "No SAMLRequest was posted.", None))
    fields = {"SAMLRequest": saml_request}
    if "RelayState" in request.form:
        fields["RelayState"] = request.form["RelayState"]
    key = services().pending.put(fields)
    return redirect(url_for(endpoint, resume=key), code=303)


@bp.route("/sso", methods=["GET", "POST"])
def sso() -> HttpResponse:
    received = _received("saml.sso")
    if isinstance(received, HttpResponse):
        return received
    binding, saml_request, relay_state, query = received
    try:
        req = services().saml_requests.parse_authn_request(
            "post" if binding == "post" else "redirect", saml_request, relay_state, query_string=query
        )
    except SamlRequestError as exc:
        return refused_request(exc)
    return sign_in(req)


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
    received = _received("saml.slo")
    if isinstance(received, HttpResponse):
        return received
    binding, saml_request, relay_state, query = received
    try:
        req = services().saml_requests.parse_logout_request(
            "post" if binding == "post" else "redirect", saml_request, relay_state, query_string=query
        )
    except SamlRequestError as exc:
        return refused_request(exc)
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
    out = services().saml_responses.logout_response(req)
    if isinstance(out, RedirectTo):
        return redirect(out.url, code=303)
    return post_form(out, req.sp_entity_id)
