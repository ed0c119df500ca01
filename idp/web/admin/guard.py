"""Who may use the console: someone signed in through the ordinary AD login who is a member (nested
membership counts) of one of ``[admin] groups``. Membership is read again from AD every
``recheck_seconds``, so removing someone from the group takes effect while they are still signed in."""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from idp.directory.errors import DirectoryError
from idp.web.i18n import add_messages, translate
from idp.web.services import services
from idp.web.sso_session import current_sso

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
    if sso is None:
        return redirect(url_for("login.login", next=request.full_path.rstrip("?")))
    svc = services()
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
        if current is None or not current.in_any_group(settings.groups):
            session.pop(_CHECKED_KEY, None)
            return _refuse(person.username, "admin_not_member", "required: " + ", ".join(settings.groups))
        session[_CHECKED_KEY] = {"user": person.username, "at": time.time()}
        person = current
    g.admin = Admin(username=person.username, display_name=person.display_name or person.username)
    return None


def _refuse(username: str, reason: str, detail: str, *, status: int = 403) -> tuple[str, int]:
    svc = services()
    svc.audit.record(
        "admin_access", "refused", reason=reason, username=username, ip=request.remote_addr, detail=detail
    )
    groups = ", ".join(svc.settings.admin.groups)
    message = translate(f"admin.refused.{reason}", user=username, groups=groups)
    return render_template("error.html", message=message, reason=reason, detail=None), status


add_messages(
    {
        "en": {
            "admin.refused.admin_not_member": "You are signed in as {user}, who is not an administrator of this "
            "sign-in service. Only members of {groups} may open the admin console.",
            "admin.refused.admin_not_configured": "The admin console is switched off: no administrator group is "
            "configured ([admin] groups in the configuration file).",
            "admin.refused.admin_directory_down": "The company directory cannot be reached, so your administrator "
            "rights cannot be checked. Please try again in a few minutes.",
            "admin.upload_too_large": "The upload is larger than {limit} KB, far more than one application's "
            "metadata needs. Check that you chose the right file.",
        },
        "zh-CN": {
            "admin.refused.admin_not_member": "您当前以 {user} 登录，该账号不是本登录服务的管理员。"
            "只有 {groups} 的成员可以进入管理控制台。",
            "admin.refused.admin_not_configured": "管理控制台未启用：配置文件中未设置管理员组（[admin] groups）。",
            "admin.refused.admin_directory_down": "暂时无法连接公司目录服务，无法核实您的管理员权限，请几分钟后重试。",
            "admin.upload_too_large": "上传的文件超过 {limit} KB，远大于一个应用的元数据所需，请确认选择了正确的文件。",
        },
    }
)
