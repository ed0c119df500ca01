"""/admin/sps: the registered service providers, and the ways to add one (a metadata file, a metadata URL kept
refreshed, or three fields typed from a SaaS console), each through a preview before anything is saved.

The previewed document stays on the server, in the admin's session under a one-time token: Save registers
exactly what was shown, and the SP service checks it again (nothing the browser posts back is trusted).
Every change goes through SpService, the code path of `idp sp`, which writes the audit rows.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TypedDict
from urllib.parse import urlencode

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from idp.connectors.direct_app import ENTITY_ID as DIRECT_APP
from idp.sps.errors import MetadataError, SpRegistryError
from idp.sps.fetch import redacted
from idp.sps.origins import SpOrigin, file_name_of
from idp.sps.registry import SpEntry, metadata_filename
from idp.sps.remote import UrlSource
from idp.sps.service import Preview, SpService
from idp.sps.validate import EXPIRY_WARNING
from idp.sps.vocabulary import FORMAT_URIS
from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.admin.oidc_clients import listing as oidc_listing
from idp.web.admin.sp_names import display_name
from idp.web.i18n import translate
from idp.web.services import services

_PENDING = "admin_sp_pending"
"""Session key of the document waiting on the preview page (one at a time per admin session)."""


def _service() -> SpService:
    return SpService.of(services())


class _Who(TypedDict):
    """Who is acting, as the SpService methods take it (``**_who()``)."""

    actor: str
    ip: str | None


def _who() -> _Who:
    return {"actor": current_admin().username, "ip": request.remote_addr}


@bp.get("/sps")
def sps() -> str:
    svc = _service()
    try:
        entries = svc.registry.list()
        error = None
    except SpRegistryError as exc:
        entries, error = [], str(exc)
    sources = svc.url_sources()
    origins = svc.origins()
    last_signin = services().audit.last_success_by_sp()
    now = datetime.now(UTC)
    rows = [
        _row(e, sources.get(e.entity_id), origins.get(e.entity_id), last_signin.get(e.entity_id), now) for e in entries
    ]
    direct = services().settings.alimail_direct
    return render_template(
        "admin/sps_list.html",
        rows=rows,
        error=error,
        nameid_formats=list(FORMAT_URIS),
        direct=direct,
        direct_last_signin=last_signin.get(DIRECT_APP),
        **oidc_listing(last_signin),
    )


@bp.post("/sps/upload")
def sps_upload() -> tuple[str, int] | str:
    upload = request.files.get("metadata")
    if upload is None or not upload.filename:
        return _problem(MetadataError(translate("admin.sps.no_file")), "upload")
    name = file_name_of(upload.filename)
    preview = _service().preview(upload.read(), source=f"upload: {name}", **_who())
    return _show(preview, {"kind": "file", "source": f"upload: {name}", "file_name": name})


@bp.post("/sps/url")
def sps_url() -> tuple[str, int] | str:
    url = request.form.get("url", "").strip()
    pinned = request.form.get("pinned_cert", "").strip() or None
    allow_http = request.form.get("allow_http") == "on"
    preview = _service().preview_url(url, pinned, allow_http=allow_http, **_who())
    return _show(preview, {"kind": "url", "url": url, "pinned_cert": pinned, "allow_http": allow_http})


@bp.post("/sps/manual")
def sps_manual() -> tuple[str, int] | str:
    form = request.form
    preview = _service().preview_manual(
        form.get("entity_id", ""),
        form.get("acs_url", ""),
        form.get("certificate", ""),
        name=form.get("name", "").strip() or None,
        nameid_format=form.get("nameid_format") or None,
        **_who(),
    )
    return _show(preview, {"kind": "manual", "source": "manual"})


@bp.post("/sps/save")
def sps_save() -> Response | tuple[str, int]:
    pending = session.get(_PENDING)
    if not pending or not secrets.compare_digest(pending.get("token", ""), request.form.get("token", "")):
        flash(translate("admin.sps.preview_expired"), "error")
        return redirect(url_for("admin.sps"))
    replace = request.form.get("replace") == "on"
    svc = _service()
    try:
        if pending["kind"] == "url":
            entry = svc.add_from_url(
                pending["url"],
                pinned_cert=pending["pinned_cert"],
                allow_http=pending.get("allow_http", False),
                xml=pending["xml"],
                replace=replace,
                **_who(),
            )
        else:
            entry = svc.add(
                pending["xml"],
                replace=replace,
                source=pending["source"],
                origin="manual" if pending["kind"] == "manual" else "file",
                file_name=pending.get("file_name"),
                **_who(),
            )
    except SpRegistryError as exc:
        return _problem(exc, pending["kind"])
    session.pop(_PENDING, None)
    flash(translate("admin.sps.saved", name=entry.name), "message")
    return redirect(url_for("admin.sps"))


@bp.post("/sps/enabled")
def sps_enabled() -> Response:
    entity_id = request.form.get("entity_id", "")
    enabled = request.form.get("enabled") == "1"
    svc = _service()
    name = _name_of(svc, entity_id)
    try:
        svc.set_enabled(entity_id, enabled, **_who())
    except SpRegistryError as exc:
        flash(str(exc), "error")
    else:
        flash(translate("admin.sps.enabled" if enabled else "admin.sps.disabled", name=name), "message")
    return redirect(url_for("admin.sps"))


@bp.post("/sps/refresh")
def sps_refresh() -> Response:
    entity_id = request.form.get("entity_id", "")
    try:
        result = _service().refresh(entity_id, actor=current_admin().username)
    except SpRegistryError as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.sps"))
    if result.error is not None:
        flash(translate("admin.sps.refresh_failed", error=str(result.error).rstrip(".")), "error")
    else:
        flash(translate("admin.sps.refresh_changed" if result.changed else "admin.sps.refresh_same"), "message")
    return redirect(url_for("admin.sps"))


@bp.get("/sps/delete")
def sps_delete_confirm() -> str:
    entry = _service().registry.get(request.args.get("entity_id", ""))
    if entry is None:
        abort(404)
    return render_template(
        "admin/confirm_delete.html",
        title=translate("admin.sps.delete_title"),
        text=translate(
            "admin.sps.delete_text", name=entry.policy.display_name or entry.name, entity_id=entry.entity_id
        ),
        action=url_for("admin.sps_delete"),
        form_id="sp-delete",
        field="entity_id",
        value=entry.entity_id,
    )


@bp.post("/sps/delete")
def sps_delete() -> Response:
    entity_id = request.form.get("entity_id", "")
    svc = _service()
    name = _name_of(svc, entity_id)
    try:
        svc.remove(entity_id, **_who())
    except SpRegistryError as exc:
        flash(str(exc), "error")
    else:
        flash(translate("admin.sps.deleted", name=name), "message")
    return redirect(url_for("admin.sps"))


# -- helpers -----------------------------------------------------------------------------------------------


def _show(preview: Preview, carry: dict) -> tuple[str, int] | str:
    if preview.error is not None:
        return _problem(preview.error, carry["kind"])
    token = secrets.token_urlsafe(24)
    session[_PENDING] = {**carry, "token": token, "xml": preview.xml}
    info = preview.info
    now = datetime.now(UTC)
    certificates = [(c, _badge(c.not_after, now)) for c in info.certificates] if info else []
    return render_template(
        "admin/sps_preview.html",
        info=info,
        token=token,
        registered=preview.registered,
        certificates=certificates,
        url=redacted(carry["url"]) if carry.get("url") else None,
        pinned=bool(carry.get("pinned_cert")),
        allow_http=bool(carry.get("allow_http")),
    )


def _name_of(svc: SpService, entity_id: str) -> str:
    """The SP's display name for a message, with its entityID when the two differ."""
    try:
        entry = svc.registry.get(entity_id)
    except SpRegistryError:
        entry = None
    name = display_name(entry) if entry else entity_id
    return name if name == entity_id else f"{name} ({entity_id})"


def _problem(error: SpRegistryError, kind: str) -> tuple[str, int]:
    element = getattr(error, "element", None)
    problem = getattr(error, "problem", None) or str(error)
    return (
        render_template("admin/sps_problem.html", element=element, problem=problem, reason=error.reason, kind=kind),
        400,
    )


def _badge(moment: datetime | None, now: datetime) -> str | None:
    """Badge class: bad when past, warn within the warning time, ok otherwise."""
    if moment is None:
        return None
    if moment <= now:
        return "bad"
    return "warn" if moment - now < EXPIRY_WARNING else "ok"


def _row(
    entry: SpEntry, source: UrlSource | None, origin: SpOrigin | None, last_signin: datetime | None, now: datetime
) -> dict:
    return {
        "entry": entry,
        "name": display_name(entry),
        "origin": origin,
        # A file copied into the metadata directory by hand keeps the name it was given there; the registry's
        # own files are named by a hash of the entityID, which says nothing.
        "file_on_disk": None if entry.path.name == metadata_filename(entry.entity_id) else entry.path.name,
        "cert_badge": _badge(entry.cert_expiry, now),
        "valid_badge": _badge(entry.valid_until, now),
        "last_signin": last_signin,
        "source": source,
        "source_url": redacted(source.url) if source is not None else None,
        "policy_url": _policy_url(entry.entity_id),
    }


def _policy_url(entity_id: str) -> str:
    if "admin.sp_policy" in current_app.view_functions:
        return url_for("admin.sp_policy", entity_id=entity_id)
    # The policy page is built beside this one; until it is registered, its address is known all the same.
    return url_for("admin.sps") + "/policy?" + urlencode({"entity_id": entity_id})
