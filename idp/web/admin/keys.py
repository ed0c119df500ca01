"""/admin/keys: the signing certificates SPs trust, their expiry, and the rollover one step at a time.

The page offers only the step the keyring allows now; the form says which step the admin saw, so a step
another admin (or `idp keys rotate`) took meanwhile is refused instead of repeated. Steps go through
idp.saml.rollover, the same code the CLI runs, which also writes the audit row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast
from urllib.parse import urlsplit

from flask import Response, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as Redirect

from idp.saml.keyring import KeyPair, Keyring, RolloverStepRefused, Step
from idp.saml.keys import KeysError
from idp.saml.rollover import STEPS, take_step
from idp.web.admin.blueprint import bp
from idp.web.admin.dashboard import KEY_EXPIRY_WARNING
from idp.web.admin.guard import current_admin
from idp.web.i18n import add_messages, translate
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
    if step not in STEPS:
        abort(400)
    svc = services()
    try:
        take_step(svc.settings, cast(Step, step), svc.audit, actor=current_admin().username, ip=request.remote_addr)
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
        services().saml.metadata_xml(),
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


add_messages(
    {
        "en": {
            "admin.keys.active": "Active signing certificate",
            "admin.keys.subject": "Subject",
            "admin.keys.valid_from": "Valid from",
            "admin.keys.valid_to": "Valid until",
            "admin.keys.days_left": "Days left",
            "admin.keys.fingerprint": "SHA-256 fingerprint",
            "admin.keys.expiring": "This certificate expires in {days} days. Start a key rollover now: every "
            "application must import our new metadata before the old certificate expires.",
            "admin.keys.healthy": "valid",
            "admin.keys.published": "Certificates in our metadata",
            "admin.keys.col.role": "Role",
            "admin.keys.col.state": "What it does",
            "admin.keys.col.expires": "Expires",
            "admin.keys.col.download": "Certificate",
            "admin.keys.role.active": "Active",
            "admin.keys.role.next": "Next",
            "admin.keys.role.previous": "Previous",
            "admin.keys.state.active": "Signs every response, logout response and our metadata.",
            "admin.keys.state.next": "Published so that applications learn it; does not sign yet.",
            "admin.keys.state.previous": "Signed until the switch; still published until it is retired.",
            "admin.keys.download_pem": "Download (PEM)",
            "admin.keys.rollover": "Key rollover",
            "admin.keys.rollover_intro": "A rollover replaces the signing key without interrupting sign-in. It "
            "takes three steps, and between them every application must re-read our metadata.",
            "admin.keys.step.add": "Add the next key",
            "admin.keys.step.switch": "Switch signing to the next key",
            "admin.keys.step.retire": "Retire the previous key",
            "admin.keys.now": "next step",
            "admin.keys.explain.add": "Creates a new key and publishes its certificate in our metadata beside "
            "the active one. Nothing is signed with it yet, so sign-in is not affected. Afterwards, re-import "
            "our metadata at every application (download it below, or let applications that read it from our "
            "metadata URL refresh it), then come back and switch.",
            "admin.keys.explain.switch": "Signs every response with the next key from now on. Only do this when "
            "every application has re-imported our metadata since the key was added: an application that still "
            "knows only the old certificate will refuse every sign-in. The old certificate stays published.",
            "admin.keys.explain.retire": "Removes the previous certificate from our metadata and deletes its "
            "private key. Do this once sign-in works everywhere with the new key; applications can then "
            "re-import our metadata to forget the old certificate.",
            "admin.keys.button.add": "Add next key",
            "admin.keys.button.switch": "Switch signing now",
            "admin.keys.button.retire": "Retire previous key",
            "admin.keys.metadata": "Our metadata",
            "admin.keys.metadata_help": "Applications import this file, or read it from this address:",
            "admin.keys.download_metadata": "Download metadata",
            "admin.keys.last_change": "Last rollover step: {when}",
            "admin.keys.done.add": "The next key was added and published. Now have every application re-import "
            "our metadata, then switch.",
            "admin.keys.done.switch": "Signing switched to the new key. Check that sign-in works at every "
            "application, then retire the previous key.",
            "admin.keys.done.retire": "The previous key was retired: it is no longer published and its private "
            "key was deleted.",
            "admin.keys.refused.next_key_exists": "A next key is already published; switch to it before adding "
            "another. (Someone may have taken this step a moment ago.)",
            "admin.keys.refused.previous_not_retired": "The previous key must be retired before a new one is "
            "added. (Someone may have taken a step a moment ago.)",
            "admin.keys.refused.no_next_key": "There is no next key to switch to. (Someone may have taken this "
            "step a moment ago.)",
            "admin.keys.refused.nothing_to_retire": "There is no previous key to retire. (Someone may have taken "
            "this step a moment ago.)",
            "admin.keys.failed": "The step could not be taken: {detail}",
            "admin.keys.error": "The signing keys cannot be read: {detail}",
        },
        "zh-CN": {
            "admin.keys.active": "当前签名证书",
            "admin.keys.subject": "主题",
            "admin.keys.valid_from": "生效时间",
            "admin.keys.valid_to": "到期时间",
            "admin.keys.days_left": "剩余天数",
            "admin.keys.fingerprint": "SHA-256 指纹",
            "admin.keys.expiring": "该证书将在 {days} 天后到期。请立即开始密钥轮换：在旧证书到期前，"
            "每个应用都必须导入我们的新元数据。",
            "admin.keys.healthy": "有效",
            "admin.keys.published": "元数据中发布的证书",
            "admin.keys.col.role": "角色",
            "admin.keys.col.state": "作用",
            "admin.keys.col.expires": "到期",
            "admin.keys.col.download": "证书",
            "admin.keys.role.active": "当前",
            "admin.keys.role.next": "下一个",
            "admin.keys.role.previous": "上一个",
            "admin.keys.state.active": "为所有登录响应、注销响应和我们的元数据签名。",
            "admin.keys.state.next": "已发布，供应用提前获取；尚未用于签名。",
            "admin.keys.state.previous": "切换前用于签名；在停用前仍会发布。",
            "admin.keys.download_pem": "下载（PEM）",
            "admin.keys.rollover": "密钥轮换",
            "admin.keys.rollover_intro": "密钥轮换可在不中断登录的情况下更换签名密钥。共三步，"
            "每两步之间，所有应用都必须重新读取我们的元数据。",
            "admin.keys.step.add": "添加下一个密钥",
            "admin.keys.step.switch": "切换到下一个密钥签名",
            "admin.keys.step.retire": "停用上一个密钥",
            "admin.keys.now": "下一步",
            "admin.keys.explain.add": "生成新密钥，并将其证书与当前证书一起发布在我们的元数据中。"
            "此时尚不使用它签名，登录不受影响。之后请在每个应用中重新导入我们的元数据"
            "（在下方下载，或让通过元数据地址读取的应用自动刷新），然后回到此处进行切换。",
            "admin.keys.explain.switch": "从现在起使用下一个密钥为所有响应签名。只有在添加密钥后每个应用都已"
            "重新导入我们的元数据时才可执行：仍只认识旧证书的应用将拒绝所有登录。旧证书会继续发布。",
            "admin.keys.explain.retire": "从我们的元数据中移除上一个证书并删除其私钥。请在确认所有应用使用新密钥"
            "均能正常登录后执行；之后各应用可重新导入元数据以删除旧证书。",
            "admin.keys.button.add": "添加下一个密钥",
            "admin.keys.button.switch": "立即切换签名",
            "admin.keys.button.retire": "停用上一个密钥",
            "admin.keys.metadata": "我们的元数据",
            "admin.keys.metadata_help": "应用可导入此文件，或从以下地址读取：",
            "admin.keys.download_metadata": "下载元数据",
            "admin.keys.last_change": "上次轮换操作：{when}",
            "admin.keys.done.add": "已添加并发布下一个密钥。请让每个应用重新导入我们的元数据，然后进行切换。",
            "admin.keys.done.switch": "已切换到新密钥签名。请确认每个应用都能正常登录，然后停用上一个密钥。",
            "admin.keys.done.retire": "上一个密钥已停用：不再发布，其私钥已删除。",
            "admin.keys.refused.next_key_exists": "已发布下一个密钥；请先切换到该密钥，再添加新的密钥。"
            "（可能有人刚刚执行了此操作。）",
            "admin.keys.refused.previous_not_retired": "添加新密钥前必须先停用上一个密钥。（可能有人刚刚执行了操作。）",
            "admin.keys.refused.no_next_key": "没有可切换的下一个密钥。（可能有人刚刚执行了此操作。）",
            "admin.keys.refused.nothing_to_retire": "没有需要停用的上一个密钥。（可能有人刚刚执行了此操作。）",
            "admin.keys.failed": "无法执行此操作：{detail}",
            "admin.keys.error": "无法读取签名密钥：{detail}",
        },
    }
)
