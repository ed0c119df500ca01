"""Who may use the console: someone signed in through the ordinary AD login who is a member (nested
membership counts) of one of ``[admin] groups``. Membership is read again from AD every
``recheck_seconds``, so removing someone from the group takes effect while they are still signed in; a revoked
SSO session (idp.signin.sessions) is turned away at its next page."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

from flask import g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from idp.codes import AdminAccessReason
from idp.directory.errors import DirectoryError
from idp.directory.groups import GroupNotResolved, resolve_group
from idp.person import group_refs
from idp.web.i18n import translate
from idp.web.services import services
from idp.web.sso_session import current_sso, end_sso

log = logging.getLogger(__name__)

_CHECKED_KEY = "admin_checked_at"


@dataclass(frozen=True)
class Admin:
    username: str
    display_name: str


def current_admin() -> Admin:
    """The admin of this request; only valid inside /admin (the guard has run)."""
    return g.admin


def require_admin() -> Response | tuple[str, int] | None:
    """None lets the request through; otherwise the login page, or a refusal that says why."""
    sso = current_sso()
    svc = services()
    if sso is not None and svc.sessions.revoked(sso.session_index):
        # The console never runs the sign-in pipeline, so it drops a revoked session itself.
        end_sso()
        sso = None
    if sso is None:
        return redirect(url_for("login.login", next=request.full_path.rstrip("?")))
    settings = svc.settings.admin
    person = sso.person
    if not settings.groups:
        return _refuse(person.username, "admin_not_configured", "no [admin] groups are configured")
    checked = session.get(_CHECKED_KEY, {})
    fresh = checked.get("user") == person.username and time.time() - checked.get("at", 0) < settings.recheck_seconds
    if not fresh:
        try:
            current = svc.directory.find(person.username)
        except DirectoryError as exc:
            # Fail closed: without AD we cannot tell whether this person is still an admin.
            return _refuse(person.username, "admin_directory_down", exc.detail or exc.reason, status=503)
        if current is None or not current.in_any_group(group_refs(settings.groups)):
            session.pop(_CHECKED_KEY, None)
            groups = _admin_groups()
            return _refuse(person.username, "admin_not_member", "required: " + groups, groups=groups)
        session[_CHECKED_KEY] = {"user": person.username, "at": time.time()}
        person = current
    g.admin = Admin(username=person.username, display_name=person.display_name or person.username)
    return None


def _refuse(
    username: str, reason: AdminAccessReason, detail: str, *, status: int = 403, groups: str = ""
) -> tuple[str, int]:
    svc = services()
    svc.audit.record("admin_access", "refused", reason=reason, username=username, ip=request.remote_addr, detail=detail)
    message = translate(f"admin.refused.{reason}", user=username, groups=groups)
    # Signed in as someone who is not an admin: the way out is another account, not "go back".
    sign_out = reason != "admin_directory_down"
    return render_template("error.html", message=message, reason=reason, detail=None, sign_out=sign_out), status


def _admin_groups() -> str:
    """[admin] groups for the refusal, each name that does not lead to exactly one security group (and so
    admits nobody) followed by why: otherwise a console that opens to nobody would look like a wrong account."""
    refs = group_refs(services().settings.admin.groups)
    known = None
    if any(ref.name for ref in refs):
        # One search of the domain's groups, not one per name. AD down: the names are shown as configured,
        # and the refusal stands either way.
        with contextlib.suppress(DirectoryError):
            known = services().directory.groups()
    out = []
    for ref in refs:
        if ref.name and known is not None:
            try:
                resolve_group(ref.name, known)
            except GroupNotResolved as exc:
                log.error("[admin] groups: %s; it admits nobody until it is replaced by a DN or SID", exc)
                out.append(f"{ref.name} ({exc})")
                continue
        out.append(ref.label)
    return ", ".join(out)
