"""Adding a passkey or security key (WebAuthn) as a second factor: from the person's list of factors, or at
enrolment instead of an authenticator app. The browser creates the key (static/passkey.js); idp.mfa.passkeys
checks what it answers against the challenge kept in the server-side session."""

from __future__ import annotations

import time
from dataclasses import replace

from flask import Blueprint, Response, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as HttpResponse

from idp.mfa.passkeys import MAX_RESPONSE, PasskeyRefused
from idp.web.login import local_path
from idp.web.passkey_page import allow_script
from idp.web.services import services
from idp.web.signin_flow import client_ip
from idp.web.sso_session import SsoSession, current_sso, record_mfa

bp = Blueprint("passkeys", __name__, url_prefix="/mfa/passkey")

_PENDING = "passkey_registration"
"""The challenge of the passkey being created, in the server-side session, until the browser answers it."""


@bp.route("", methods=["GET", "POST"])
def register() -> HttpResponse:
    sso = current_sso()
    key, after = request.values.get("k", ""), local_path(request.values.get("next"))
    if sso is None:
        return redirect(url_for("login.login", next=url_for("passkeys.register")), code=303)
    # As for an authenticator app: a new factor is added with a first one, never with the password alone.
    if sso.mfa_at is None and services().factors.has_any(sso.person.guid):
        here = url_for("passkeys.register", k=key or None)
        return redirect(url_for("mfa.verify", k=key or None, next=here), code=303)
    pending = session.pop(_PENDING, None)
    if request.method == "GET" or not isinstance(pending, dict) or pending.get("guid") != str(sso.person.guid):
        return _page(sso, key, after)
    try:
        enrolled = services().passkeys.register(
            sso.person.guid, sso.person.username, request.form.get("passkey", "")[:MAX_RESPONSE], pending["challenge"]
        )
    except PasskeyRefused as exc:
        services().audit.record(
            "mfa_enrolled", "failure", reason="passkey", username=sso.person.username, ip=client_ip(), detail=str(exc)
        )
        return _page(sso, key, after, error=True, status=400)
    services().audit.record(
        "mfa_enrolled", "success", reason="passkey", username=sso.person.username, ip=client_ip(), detail=None
    )
    record_mfa(replace(sso.for_signin(), mfa_at=time.time()))
    then = url_for("mfa.resume", k=key) if key else (after or url_for("mfa.factors_page"))
    if not enrolled.recovery_codes:
        return redirect(then, code=303)
    resp = Response(render_template("mfa_recovery.html", codes=enrolled.recovery_codes, then=then))
    resp.headers["Cache-Control"] = "no-store"  # the recovery codes are shown once
    return resp


def _page(sso: SsoSession, key: str, after: str | None, *, error: bool = False, status: int = 200) -> HttpResponse:
    person = sso.person
    ceremony = services().passkeys.registration(person.guid, person.upn or person.username, person.display_name)
    session[_PENDING] = {"guid": str(person.guid), "challenge": ceremony.challenge}
    body = render_template("mfa_passkey.html", options=ceremony.options_json, key=key, after=after, error=error)
    resp = Response(body, status=status)
    resp.headers["Cache-Control"] = "no-store"
    return allow_script(resp)
