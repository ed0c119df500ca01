"""The second-factor pages: the code asked for at sign-in, enrolment (QR code, first code, recovery codes),
and the person's own list of factors. Which sign-in needs a code, and whether one is right, is decided by the
pipeline (idp.signin.steps.SecondFactor); these pages collect what the person types and run it again."""

from __future__ import annotations

import time
from dataclasses import replace

from flask import Blueprint, Response, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as HttpResponse

from idp.mfa import totp
from idp.mfa.passkeys import PasskeyAssertion
from idp.web.login import local_path
from idp.web.passkey_page import take_assertion
from idp.web.services import services
from idp.web.signin_flow import client_ip, code_form, error_page, parked_request, sign_in
from idp.web.sso_session import SsoSession, current_sso, record_mfa

bp = Blueprint("mfa", __name__, url_prefix="/mfa")

_PENDING = "mfa_enrolment"
"""The secret being enrolled, in the server-side session, until its first code is right."""
MAX_CODE = 64


@bp.route("", methods=["GET", "POST"])
def verify() -> HttpResponse:
    sso = current_sso()
    key, after = request.values.get("k", ""), local_path(request.values.get("next"))
    if sso is None:
        return redirect(url_for("login.login", k=key or None, next=after), code=303)
    req = parked_request(key) if key else None
    if key and req is None:
        return error_page("error.login_expired", 400)
    if request.method == "GET":
        return code_form(req, key, after=after)
    given: str | PasskeyAssertion | None = request.form.get("code", "")[:MAX_CODE]
    if "passkey" in request.form:
        given = take_assertion(sso.person.guid, request.form["passkey"])
        if given is None:  # no passkey was offered to this session, or its challenge was answered already
            return error_page("mfa.bad_request", 400)
    remember = request.form.get("remember") == "on"
    # Giving a factor here is asking to give it: it is checked whatever the policy of the waiting SP.
    return sign_in(
        req, parked_as=key or None, after=after, second_factor_code=given, remember_browser=remember, step_up=True
    )


@bp.route("/enrol", methods=["GET", "POST"])
def enrol() -> HttpResponse | str | tuple[str, int]:
    sso = current_sso()
    key, after = request.values.get("k", ""), local_path(request.values.get("next"))
    if sso is None:
        return redirect(url_for("login.login", next=url_for("mfa.enrol")), code=303)
    factors = services().factors
    # A second factor is added with the first one, never with the password alone: else a stolen password
    # would be enough to add the thief's phone.
    if sso.mfa_at is None and factors.has_any(sso.person.guid):
        return redirect(url_for("mfa.verify", k=key or None, next=url_for("mfa.enrol", k=key or None)), code=303)
    pending = session.get(_PENDING)
    if request.method == "GET" or not isinstance(pending, dict) or pending.get("guid") != str(sso.person.guid):
        secret = totp.new_secret()
        session[_PENDING] = {"guid": str(sso.person.guid), "secret": secret}
        return _enrol_page(sso, secret, key, after)
    step = totp.matching_step(pending["secret"], request.form.get("code", "")[:MAX_CODE])
    if step is None:
        return _enrol_page(sso, pending["secret"], key, after, error=True), 400
    session.pop(_PENDING, None)
    enrolled = factors.enrol_totp(sso.person.guid, sso.person.username, pending["secret"], step)
    services().audit.record(
        "mfa_enrolled", "success", reason="totp", username=sso.person.username, ip=client_ip(), detail=None
    )
    record_mfa(replace(sso.for_signin(), mfa_at=time.time()))
    then = url_for("mfa.resume", k=key) if key else (after or url_for("mfa.factors_page"))
    body = render_template("mfa_recovery.html", codes=enrolled.recovery_codes, then=then)
    resp = Response(body)
    resp.headers["Cache-Control"] = "no-store"  # the recovery codes are shown once
    return resp


@bp.get("/continue")
def resume() -> HttpResponse:
    """After enrolment: the sign-in that was waiting goes on (the session now has its second factor)."""
    key = request.args.get("k", "")
    req = parked_request(key) if key else None
    if req is None:
        return error_page("error.login_expired", 400)
    return sign_in(req, parked_as=key)


@bp.route("/factors", methods=["GET", "POST"])
def factors_page() -> HttpResponse | str:
    sso = current_sso()
    if sso is None:
        return redirect(url_for("login.login", next=url_for("mfa.factors_page")), code=303)
    factors = services().factors
    listed = factors.list(sso.person.guid)
    if listed and sso.mfa_at is None:  # managing factors takes one of them first
        return redirect(url_for("mfa.verify", next=url_for("mfa.factors_page")), code=303)
    if request.method == "POST":
        try:
            factor_id = int(request.form.get("remove", ""))
        except ValueError:
            return error_page("mfa.bad_request", 400)
        if factors.remove(sso.person.guid, factor_id):
            services().audit.record(
                "mfa_removed",
                "success",
                reason="self_service",
                username=sso.person.username,
                ip=client_ip(),
                detail=f"factor {factor_id}",
            )
        return redirect(url_for("mfa.factors_page"), code=303)
    left = factors.recovery_codes_left(sso.person.guid) if listed else 0
    return render_template("mfa_factors.html", factors=listed, recovery_left=left)


def _enrol_page(sso: SsoSession, secret: str, key: str, after: str | None, *, error: bool = False) -> str:
    settings = services().settings
    issuer = settings.mfa.issuer or settings.idp.organization
    uri = totp.enrolment_uri(secret, account=sso.person.upn or sso.person.username, issuer=issuer)
    return render_template(
        "mfa_enrol.html",
        qr=totp.qr_svg(uri),
        secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        key=key,
        after=after,
        error=error,
    )
