"""IdP-initiated sign-in (/saml/init?sp=ENTITY_ID) and the app launcher (/apps) that links to it.

An employee starts here instead of at the SP: we send the SP an unsolicited Response (no InResponseTo) on
the same sign-in pipeline as SP-initiated sign-in (group check, roles, JIT provisioning, audit). Only SPs
whose policy says ``idp_initiated`` take part: an SP that never expects unsolicited responses may treat one
as an attack, and the launcher must not show a tile that cannot work.

Tile order: SPs filled from the mailbox preset first (webmail is what most people open), then by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Response, redirect, render_template, request, url_for

from idp import metrics
from idp.directory.person import Person
from idp.saml.attributes import matching_roles
from idp.saml.idp import SamlRequestError
from idp.sps.registry import SpEntry
from idp.web.i18n import add_messages
from idp.web.services import services
from idp.web.sso import answer, client_ip, error_page
from idp.web.sso_session import current_sso

bp = Blueprint("launcher", __name__)

MAILBOX_PRESETS = frozenset({"mailbox"})
_STATUS = {"unknown_sp": 404, "idp_initiated_not_allowed": 403, "sp_disabled": 403}


@dataclass(frozen=True)
class Tile:
    entity_id: str
    name: str
    mailbox: bool


@bp.get("/saml/init")
def idp_initiated() -> Response | str:
    """The SP is checked before the person is asked to sign in: nobody types a password for a refusal."""
    entity_id = request.args.get("sp", "").strip()
    sso = current_sso()
    username = sso.person.username if sso else None
    if not entity_id:
        return _refused(SamlRequestError("unknown_sp", "No service (sp=) was named.", None), username)
    try:
        req = services().saml.unsolicited_request(entity_id, request.args.get("RelayState"))
    except SamlRequestError as exc:
        return _refused(exc, username)
    if sso is None:
        return redirect(url_for("login.login", next=request.full_path), code=303)
    return answer(req, sso, reused=True)


@bp.get("/apps")
def apps() -> Response | str:
    sso = current_sso()
    if sso is None:
        return redirect(url_for("login.login", next=url_for("launcher.apps")), code=303)
    return render_template("apps.html", person=sso.person, tiles=tiles_for(sso.person))


def tiles_for(person: Person) -> list[Tile]:
    """The SPs this person can start from here: enabled, open to IdP-initiated sign-in, and their groups
    (and, for role-based SSO, a role) let the person in."""
    tiles = [
        Tile(entry.entity_id, entry.policy.display_name or entry.name, entry.policy.preset in MAILBOX_PRESETS)
        for entry in services().registry.list()
        if _open_to(entry, person)
    ]
    return sorted(tiles, key=lambda t: (not t.mailbox, t.name.casefold(), t.entity_id))


def _open_to(entry: SpEntry, person: Person) -> bool:
    policy = entry.policy
    if not (policy.enabled and policy.idp_initiated):
        return False
    if policy.allowed_groups and not person.in_any_group(policy.allowed_groups):
        return False
    return not policy.roles or bool(matching_roles(person, policy.roles))


def _refused(exc: SamlRequestError, username: str | None) -> Response:
    services().audit.record(
        "idp_initiated",
        "refused",
        reason=exc.reason,
        username=username,
        sp=exc.sp_entity_id,
        ip=client_ip(),
        detail=exc.message,
    )
    metrics.SAML_REFUSED.labels(reason=exc.reason).inc()
    return error_page(exc.reason, _STATUS.get(exc.reason, 400), detail=exc.message)


add_messages(
    {
        "en": {
            "launcher.title": "Your applications",
            "launcher.heading": "Your applications",
            "launcher.greeting": "Signed in as {name}. Choose an application to open it; you will not be asked "
            "for your password again.",
            "launcher.empty": "No applications are available to you here yet. Open an application directly, or "
            "ask the help desk.",
            "launcher.open": "Open {name}",
            # sign-in refusals, by audit reason (see idp.signin and idp.saml.idp.unsolicited_request)
            "idp_initiated_not_allowed": "{sp} cannot be opened from the sign-in service. Open it directly instead.",
            "no_role_for_user": "Your account has no role in {sp}. Ask the help desk to add you to a group that "
            "grants one.",
            "sp_cannot_encrypt": "{sp} is not set up correctly for sign-in (it has no encryption certificate). "
            "Please contact the help desk.",
        },
        "zh-CN": {
            "launcher.title": "我的应用",
            "launcher.heading": "我的应用",
            "launcher.greeting": "当前用户：{name}。选择一个应用即可打开，无需再次输入密码。",
            "launcher.empty": "目前这里没有可供您使用的应用。请直接打开应用，或联系服务台。",
            "launcher.open": "打开 {name}",
            "idp_initiated_not_allowed": "无法从登录服务打开 {sp}，请直接访问该应用。",
            "no_role_for_user": "您的账号在 {sp} 中没有可用的角色。请联系服务台将您加入授予角色的用户组。",
            "sp_cannot_encrypt": "{sp} 的登录配置不正确（缺少加密证书），请联系服务台。",
        },
    }
)
