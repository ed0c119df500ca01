"""/admin/sps: the registered service providers, and the ways to add one (a metadata file, a metadata URL kept
refreshed, or three fields typed from a SaaS console), each through a preview before anything is saved.

The previewed document stays on the server, in the admin's session under a one-time token: Save registers
exactly what was shown, and the SP service checks it again (nothing the browser posts back is trusted).
Every change goes through SpService, the code path of `idp sp`, which writes the audit rows.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from urllib.parse import urlencode

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from idp.saml.nameid import FORMAT_URIS
from idp.sps.errors import MetadataError, SpRegistryError
from idp.sps.fetch import redacted
from idp.sps.registry import SpEntry
from idp.sps.service import Preview, SpService
from idp.sps.validate import EXPIRY_WARNING
from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.i18n import add_messages, translate
from idp.web.services import services

_PENDING = "admin_sp_pending"
"""Session key of the document waiting on the preview page (one at a time per admin session)."""


def _service() -> SpService:
    return SpService.of(services())


def _who() -> dict[str, str | None]:
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
    last_signin = services().audit.last_success_by_sp()
    now = datetime.now(UTC)
    rows = [_row(e, sources.get(e.entity_id), last_signin.get(e.entity_id), now) for e in entries]
    return render_template("admin/sps_list.html", rows=rows, error=error, nameid_formats=list(FORMAT_URIS))


@bp.post("/sps/upload")
def sps_upload() -> tuple[str, int] | str:
    upload = request.files.get("metadata")
    if upload is None or not upload.filename:
        return _problem(MetadataError(translate("admin.sps.no_file")), "upload")
    name = upload.filename[:200]
    preview = _service().preview(upload.read(), source=f"upload: {name}", **_who())
    return _show(preview, {"kind": "file", "source": f"upload: {name}"})


@bp.post("/sps/url")
def sps_url() -> tuple[str, int] | str:
    url = request.form.get("url", "").strip()
    pinned = request.form.get("pinned_cert", "").strip() or None
    preview = _service().preview_url(url, pinned, **_who())
    return _show(preview, {"kind": "url", "url": url, "pinned_cert": pinned})


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
                pending["url"], pinned_cert=pending["pinned_cert"], xml=pending["xml"], replace=replace, **_who()
            )
        else:
            entry = svc.add(pending["xml"], replace=replace, source=pending["source"], **_who())
    except SpRegistryError as exc:
        return _problem(exc, pending["kind"])
    session.pop(_PENDING, None)
    flash(translate("admin.sps.saved", name=entry.name), "message")
    return redirect(url_for("admin.sps"))


@bp.post("/sps/enabled")
def sps_enabled() -> Response:
    entity_id = request.form.get("entity_id", "")
    enabled = request.form.get("enabled") == "1"
    try:
        _service().set_enabled(entity_id, enabled, **_who())
    except SpRegistryError as exc:
        flash(str(exc), "error")
    else:
        flash(translate("admin.sps.enabled" if enabled else "admin.sps.disabled", entity_id=entity_id), "message")
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
        flash(translate("admin.sps.refresh_failed", error=str(result.error)), "error")
    else:
        flash(translate("admin.sps.refresh_changed" if result.changed else "admin.sps.refresh_same"), "message")
    return redirect(url_for("admin.sps"))


@bp.get("/sps/delete")
def sps_delete_confirm() -> str:
    entry = _service().registry.get(request.args.get("entity_id", ""))
    if entry is None:
        abort(404)
    return render_template("admin/sps_delete.html", entry=entry)


@bp.post("/sps/delete")
def sps_delete() -> Response:
    entity_id = request.form.get("entity_id", "")
    try:
        _service().remove(entity_id, **_who())
    except SpRegistryError as exc:
        flash(str(exc), "error")
    else:
        flash(translate("admin.sps.deleted", entity_id=entity_id), "message")
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
    )


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


def _row(entry: SpEntry, source: object, last_signin: datetime | None, now: datetime) -> dict:
    return {
        "entry": entry,
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


add_messages(
    {
        "en": {
            "admin.sps.title": "Applications",
            "admin.sps.none": "No application is registered yet. Add one below.",
            "admin.sps.col.name": "Name",
            "admin.sps.col.entity_id": "Entity ID",
            "admin.sps.col.acs": "Sign-in address (ACS)",
            "admin.sps.col.cert": "Certificate expires",
            "admin.sps.col.last_signin": "Last sign-in",
            "admin.sps.col.state": "State",
            "admin.sps.col.source": "Metadata from",
            "admin.sps.col.actions": "Actions",
            "admin.sps.no_cert": "no certificate",
            "admin.sps.expired": "expired",
            "admin.sps.expires_soon": "expires soon",
            "admin.sps.metadata_until": "metadata valid until {date}",
            "admin.sps.never": "never",
            "admin.sps.on": "enabled",
            "admin.sps.off": "disabled",
            "admin.sps.enable": "Enable",
            "admin.sps.disable": "Disable",
            "admin.sps.policy": "Policy",
            "admin.sps.delete": "Delete",
            "admin.sps.refresh": "Refresh now",
            "admin.sps.file": "file {name}",
            "admin.sps.refreshed_at": "last downloaded {when}",
            "admin.sps.next_refresh": "next {when}",
            "admin.sps.refresh_error": "last download failed: {error}",
            "admin.sps.pinned": "signature required",
            "admin.sps.add_file": "Upload a metadata file",
            "admin.sps.add_file_help": "The XML file the application's administrator gives you (SAML 2.0 SP metadata).",
            "admin.sps.add_url": "Register a metadata URL",
            "admin.sps.add_url_help": "The metadata is downloaded again on a schedule that follows its "
            "cacheDuration and validUntil.",
            "admin.sps.url": "Metadata URL",
            "admin.sps.pinned_cert": "Pinned signing certificate (optional, PEM)",
            "admin.sps.pinned_cert_help": "When given, only metadata signed with this certificate's key is accepted.",
            "admin.sps.add_manual": "Register by hand",
            "admin.sps.add_manual_help": "For consoles that show the fields instead of a metadata file.",
            "admin.sps.entity_id": "Entity ID (SP identifier)",
            "admin.sps.acs_url": "ACS URL (where the sign-in response is posted)",
            "admin.sps.certificate": "The application's certificate (PEM or base64)",
            "admin.sps.name": "Display name (optional)",
            "admin.sps.nameid_format": "NameID format the application asks for (optional)",
            "admin.sps.nameid_any": "not stated",
            "admin.sps.preview": "Preview",
            "admin.sps.preview_title": "Check before saving",
            "admin.sps.replaces": "An application with this entity ID is registered already: saving replaces its "
            "metadata (its policy is kept).",
            "admin.sps.replace": "Replace the registered application",
            "admin.sps.acs_endpoints": "Sign-in addresses (ACS)",
            "admin.sps.slo_endpoints": "Sign-out addresses (SLO)",
            "admin.sps.certificates": "Certificates",
            "admin.sps.nameid_formats": "NameID formats",
            "admin.sps.requests_signed": "Signs its requests",
            "admin.sps.yes": "yes",
            "admin.sps.no": "no",
            "admin.sps.valid_until": "Metadata valid until",
            "admin.sps.cache_duration": "Download again after",
            "admin.sps.warnings": "Warnings",
            "admin.sps.source_url": "Downloaded from",
            "admin.sps.signature_ok": "signature verified with the pinned certificate",
            "admin.sps.save": "Save",
            "admin.sps.cancel": "Cancel",
            "admin.sps.problem_title": "This metadata cannot be registered",
            "admin.sps.problem_element": "Where",
            "admin.sps.problem_reason": "Problem",
            "admin.sps.problem_code": "Code",
            "admin.sps.back": "Back to applications",
            "admin.sps.no_file": "no file was chosen",
            "admin.sps.preview_expired": "That preview is no longer available; please add the application again.",
            "admin.sps.saved": "Saved {name}.",
            "admin.sps.enabled": "Sign-in to {entity_id} is enabled.",
            "admin.sps.disabled": "Sign-in to {entity_id} is disabled.",
            "admin.sps.deleted": "Deleted {entity_id}.",
            "admin.sps.refresh_changed": "The metadata changed and was saved.",
            "admin.sps.refresh_same": "The metadata is unchanged.",
            "admin.sps.refresh_failed": "Download failed; the last good copy is kept: {error}",
            "admin.sps.delete_title": "Delete this application?",
            "admin.sps.delete_text": "Employees can no longer sign in to {name} ({entity_id}). Its metadata and its "
            "policy are deleted; registering it again starts from the default policy.",
            "admin.sps.delete_confirm": "Delete",
            "sp_metadata_expired": "The registration of {sp} has expired. Please contact the help desk.",
        },
        "zh-CN": {
            "admin.sps.title": "应用",
            "admin.sps.none": "尚未注册任何应用，请在下方添加。",
            "admin.sps.col.name": "名称",
            "admin.sps.col.entity_id": "实体 ID",
            "admin.sps.col.acs": "登录地址（ACS）",
            "admin.sps.col.cert": "证书到期",
            "admin.sps.col.last_signin": "最近登录",
            "admin.sps.col.state": "状态",
            "admin.sps.col.source": "元数据来源",
            "admin.sps.col.actions": "操作",
            "admin.sps.no_cert": "无证书",
            "admin.sps.expired": "已过期",
            "admin.sps.expires_soon": "即将到期",
            "admin.sps.metadata_until": "元数据有效期至 {date}",
            "admin.sps.never": "从未",
            "admin.sps.on": "已启用",
            "admin.sps.off": "已停用",
            "admin.sps.enable": "启用",
            "admin.sps.disable": "停用",
            "admin.sps.policy": "策略",
            "admin.sps.delete": "删除",
            "admin.sps.refresh": "立即刷新",
            "admin.sps.file": "文件 {name}",
            "admin.sps.refreshed_at": "上次下载 {when}",
            "admin.sps.next_refresh": "下次 {when}",
            "admin.sps.refresh_error": "上次下载失败：{error}",
            "admin.sps.pinned": "要求签名",
            "admin.sps.add_file": "上传元数据文件",
            "admin.sps.add_file_help": "由应用管理员提供的 XML 文件（SAML 2.0 SP 元数据）。",
            "admin.sps.add_url": "登记元数据 URL",
            "admin.sps.add_url_help": "系统会按元数据中的 cacheDuration 和 validUntil 定期重新下载。",
            "admin.sps.url": "元数据 URL",
            "admin.sps.pinned_cert": "固定的签名证书（可选，PEM）",
            "admin.sps.pinned_cert_help": "填写后，只接受用该证书密钥签名的元数据。",
            "admin.sps.add_manual": "手动登记",
            "admin.sps.add_manual_help": "适用于只显示各项参数、不提供元数据文件的控制台。",
            "admin.sps.entity_id": "实体 ID（SP 标识）",
            "admin.sps.acs_url": "ACS URL（接收登录响应的地址）",
            "admin.sps.certificate": "应用的证书（PEM 或 base64）",
            "admin.sps.name": "显示名称（可选）",
            "admin.sps.nameid_format": "应用要求的 NameID 格式（可选）",
            "admin.sps.nameid_any": "未说明",
            "admin.sps.preview": "预览",
            "admin.sps.preview_title": "保存前请核对",
            "admin.sps.replaces": "已有相同实体 ID 的应用：保存将替换其元数据（策略保持不变）。",
            "admin.sps.replace": "替换已注册的应用",
            "admin.sps.acs_endpoints": "登录地址（ACS）",
            "admin.sps.slo_endpoints": "注销地址（SLO）",
            "admin.sps.certificates": "证书",
            "admin.sps.nameid_formats": "NameID 格式",
            "admin.sps.requests_signed": "对请求签名",
            "admin.sps.yes": "是",
            "admin.sps.no": "否",
            "admin.sps.valid_until": "元数据有效期至",
            "admin.sps.cache_duration": "重新下载间隔",
            "admin.sps.warnings": "警告",
            "admin.sps.source_url": "下载自",
            "admin.sps.signature_ok": "签名已通过固定证书验证",
            "admin.sps.save": "保存",
            "admin.sps.cancel": "取消",
            "admin.sps.problem_title": "该元数据无法注册",
            "admin.sps.problem_element": "位置",
            "admin.sps.problem_reason": "问题",
            "admin.sps.problem_code": "代码",
            "admin.sps.back": "返回应用列表",
            "admin.sps.no_file": "未选择文件",
            "admin.sps.preview_expired": "该预览已失效，请重新添加应用。",
            "admin.sps.saved": "已保存 {name}。",
            "admin.sps.enabled": "已启用 {entity_id} 的登录。",
            "admin.sps.disabled": "已停用 {entity_id} 的登录。",
            "admin.sps.deleted": "已删除 {entity_id}。",
            "admin.sps.refresh_changed": "元数据已变更并已保存。",
            "admin.sps.refresh_same": "元数据没有变化。",
            "admin.sps.refresh_failed": "下载失败，仍使用上一份有效副本：{error}",
            "admin.sps.delete_title": "删除此应用？",
            "admin.sps.delete_text": "员工将无法再登录 {name}（{entity_id}）。其元数据和策略都会被删除；"
            "重新注册时将使用默认策略。",
            "admin.sps.delete_confirm": "删除",
            "sp_metadata_expired": "{sp} 的注册已过期，请联系服务台。",
        },
    }
)
