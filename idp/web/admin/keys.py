"""/admin/keys: the signing certificates SPs trust, their expiry, and the rollover one step at a time.

The page offers only the step the keyring allows now; the form says which step the admin saw, so a step
another admin (or `idp keys rotate`) took meanwhile is refused instead of repeated. Steps go through
idp.keys.rollover, the same code the CLI runs, which also writes the audit row."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import Response, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as Redirect

from idp.keys.keyring import KeyPair, Keyring, RolloverStepRefused
from idp.keys.material import KeysError
from idp.keys.rollover import STEPS, take_step
from idp.web.admin.blueprint import bp
from idp.web.admin.dashboard import KEY_EXPIRY_WARNING
from idp.web.admin.guard import current_admin
from idp.web.i18n import translate
from idp.web.services import services


@bp.get("/keys")
def keys() -> str:
    svc = services()
    now = datetime.now(UTC)
    try:
        state = Keyring.for_settings(svc.settings).state()
        described = state.describe()
    except KeysError as exc:
        return render_template("admin/keys.html", error=str(exc), published=[], state=None)
    published = [
        {
            "role": role,
            "info": described[role],
            "days_left": (described[role].not_after - now).days,
            "expiring": described[role].not_after - now < KEY_EXPIRY_WARNING,
        }
        for role, _ in state.published()
    ]
    return render_template(
        "admin/keys.html",
        error=None,
        state=state,
        published=published,
        active=published[0],
        metadata_url=svc.settings.server.base_url + "/saml/metadata",
    )


@bp.post("/keys/step")
def keys_step() -> Redirect:
    step = request.form.get("step", "")
    if step not in STEPS:  # (this test also narrows step to a Step for the type checker)
        abort(400)
    svc = services()
    try:
        take_step(svc.settings, step, svc.audit, actor=current_admin().username, ip=request.remote_addr)
    except RolloverStepRefused as exc:
        flash(translate(f"admin.keys.refused.{exc.reason}"), "error")
    except KeysError as exc:
        flash(translate("admin.keys.failed", detail=str(exc)), "error")
    else:
        flash(translate(f"admin.keys.done.{step}"), "message")
    return redirect(url_for("admin.keys"))


@bp.get("/keys/metadata.xml")
def keys_metadata() -> Response:
    """Our signed metadata as a file to hand to an SP's admin (the same bytes as /saml/metadata)."""
    host = urlsplit(services().settings.server.base_url).hostname or "idp"
    return Response(
        services().saml_server.metadata_xml(),
        mimetype="application/samlmetadata+xml",
        headers={"Content-Disposition": f'attachment; filename="{host}-idp-metadata.xml"'},
    )


@bp.get("/keys/<role>.pem")
def keys_certificate(role: str) -> Response:
    """A published certificate, for SP consoles that ask for the IdP certificate instead of metadata."""
    try:
        pairs: dict[str, KeyPair] = dict(Keyring.for_settings(services().settings).state().published())
    except KeysError:
        abort(404)
    pair = pairs.get(role)
    if pair is None:
        abort(404)
    return Response(
        pair.cert_file.read_bytes(),
        mimetype="application/x-pem-file",
        headers={"Content-Disposition": f'attachment; filename="idp-signing-{role}.pem"'},
    )
