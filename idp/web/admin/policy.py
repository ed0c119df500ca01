"""/admin/sps/policy?entity_id=...: what one SP receives (NameID, attributes and their SAML names, Alibaba Cloud
roles), who may use it, and how its responses are protected; plus the presets that fill all of that for the
providers our users meet first.

Saving goes through SpService.update_policy (the CLI's code path), which audits the policy before and after,
and refusals too. A preset only fills the form: the admin reviews the result and saves it like any other edit.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from idp.directory.errors import DirectoryError
from idp.saml.attributes import CATALOGUE, ROLE_ATTRIBUTE, ROLE_SESSION_NAME_ATTRIBUTE, is_uri_name
from idp.saml.nameid import FORMAT_URIS
from idp.sps import presets
from idp.sps.errors import PolicyInvalidError, SpRegistryError
from idp.sps.policy import SpPolicy
from idp.sps.registry import SpEntry
from idp.sps.service import SpService
from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.i18n import add_messages, translate
from idp.web.services import services

BLANK_ROLE_ROWS = 2
"""Empty role rows under the filled ones: the page works without JavaScript, so there is no "add row" button."""
_FLAGS = ("sign_response", "sign_assertion", "encrypt_assertion", "require_signed_requests", "idp_initiated", "enabled")


@bp.route("/sps/policy", methods=["GET", "POST"])
def sp_policy() -> str | Response | tuple[str, int]:
    entry = _entry()
    if request.method == "GET":
        return _render(entry, _state(entry.policy))
    raw = _raw_policy(request.form)
    try:
        saved = SpService.of(services()).update_policy(
            entry.entity_id, raw, actor=current_admin().username, ip=request.remote_addr
        )
    except PolicyInvalidError:
        return _render(entry, raw, errors=_field_errors(raw)), 400
    except SpRegistryError as exc:
        flash(translate("admin.policy.save_failed", error=str(exc)), "error")
        return _render(entry, raw), 500
    flash(translate("admin.policy.saved"), "message")
    for warning in _warnings(entry, saved):
        flash(warning, "warning")
    return redirect(url_for("admin.sp_policy", entity_id=entry.entity_id))


@bp.post("/sps/policy/preset")
def sp_policy_preset() -> str | tuple[str, int]:
    """Fill the form from a preset and show it, unsaved: nothing changes until the admin presses Save."""
    entry = _entry()
    key = request.form.get("preset", "")
    try:
        preset = presets.get(key)
    except presets.UnknownPreset:
        abort(400)
    params = {p.name: request.form.get(f"param_{p.name}", "") for p in preset.params}
    try:
        policy = presets.apply(key, params, keep=entry.policy)
    except presets.PresetError as exc:
        return _render(entry, _state(entry.policy), preset=key, params=params, preset_errors=exc.errors), 400
    flash(translate("admin.policy.preset_applied", preset=translate(f"admin.policy.preset.{key}")), "warning")
    return _render(entry, _state(policy), preset=key, params=params, applied=True)


# -- the form <-> SpPolicy ---------------------------------------------------------------------------------


def _entry() -> SpEntry:
    entity_id = request.args.get("entity_id", "")
    entry = services().registry.get(entity_id) if entity_id else None
    if entry is None:
        abort(404)
    return entry


def _state(policy: SpPolicy) -> dict[str, Any]:
    return policy.model_dump(mode="json")


def _raw_policy(form: MultiDict) -> dict[str, Any]:
    """What the form says, shaped as SpPolicy's fields but not yet validated (the page shows it back as typed
    when SpPolicy refuses it). Empty text means "not set"."""
    attributes = form.getlist("attributes")
    roles = [
        {"group": g.strip(), "role_arn": r.strip(), "provider_arn": p.strip()}
        for g, r, p in zip(
            form.getlist("role_group"), form.getlist("role_arn"), form.getlist("role_provider"), strict=False
        )
        if g.strip() or r.strip() or p.strip()
    ]
    names = {k: form.get(f"attr_name.{k}", "").strip() for k in attributes}
    return {
        "display_name": form.get("display_name", "").strip() or None,
        "preset": form.get("preset") or None,
        "nameid_format": form.get("nameid_format", ""),
        "nameid_attribute": form.get("nameid_attribute") or None,
        "nameid_domain": form.get("nameid_domain", "").strip() or None,
        "attributes": attributes,
        "attribute_name_format": form.get("attribute_name_format", ""),
        "attribute_names": {k: v for k, v in names.items() if v},
        "roles": roles,
        "role_session_name_attribute": (form.get("role_session_name_attribute") or None) if roles else None,
        "allowed_groups": [line.strip() for line in form.get("allowed_groups", "").splitlines() if line.strip()],
        "assertion_lifetime": form.get("assertion_lifetime", "").strip() or None,
        "default_relay_state": form.get("default_relay_state", "").strip() or None,
        **{flag: form.get(flag) == "on" for flag in _FLAGS},
    }


def _field_errors(raw: dict[str, Any]) -> dict[str, str]:
    """SpPolicy's complaints by the form field they belong to, so each shows next to its field."""
    try:
        SpPolicy.model_validate(raw)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            loc, message = error["loc"], error["msg"].removeprefix("Value error, ")
            if not loc:  # a rule across fields: its message names the field it is about
                field = next((f for f in SpPolicy.model_fields if message.startswith(f)), "policy")
            else:
                field = str(loc[0])
                if field == "roles" and len(loc) > 1 and isinstance(loc[1], int):
                    message = translate("admin.policy.row", row=str(loc[1] + 1)) + " " + message
            errors[field] = f"{errors[field]}; {message}" if field in errors else message
        return errors
    return {"policy": translate("admin.policy.save_refused")}


# -- what the page shows -----------------------------------------------------------------------------------


def _render(
    entry: SpEntry,
    state: dict[str, Any],
    *,
    errors: dict[str, str] | None = None,
    preset: str | None = None,
    params: dict[str, str] | None = None,
    preset_errors: dict[str, str] | None = None,
    applied: bool = False,
) -> str:
    chosen = preset or request.args.get("preset") or None
    if chosen is not None and chosen not in presets.PRESETS:
        chosen = None
    roles = list(state.get("roles") or [])
    side = presets.provider_side(chosen, params or {}) if chosen and (applied or params) else None
    return render_template(
        "admin/policy.html",
        entry=entry,
        v=state,
        errors=errors or {},
        catalogue=CATALOGUE,
        formats=FORMAT_URIS,
        role_rows=roles + [{"group": "", "role_arn": "", "provider_arn": ""}] * BLANK_ROLE_ROWS,
        receives=_receives(state),
        group_problems=_group_problems(state),
        encryption_warning=bool(state.get("encrypt_assertion")) and not services().saml.sp_can_encrypt(entry.entity_id),
        presets=presets.PRESETS,
        preset=presets.PRESETS.get(chosen) if chosen else None,
        params=params or {},
        preset_errors=preset_errors or {},
        applied=applied,
        provider=side,
        idp_metadata_url=services().settings.server.base_url.rstrip("/") + "/saml/metadata",
        sps_url=url_for("admin.sps") if "admin.sps" in current_app.view_functions else None,
    )


def _receives(state: dict[str, Any]) -> dict[str, Any]:
    """The NameID rule and the attributes (by SAML Name) this policy releases, as the response side builds them."""
    fmt = state.get("nameid_format")
    source = state.get("nameid_attribute") or {"emailAddress": "mail", "unspecified": "samAccountName"}.get(fmt)
    names = state.get("attribute_names") or {}
    rows = []
    for key in state.get("attributes") or []:
        definition = CATALOGUE.get(key)
        if definition is None:
            continue
        if key in names:
            name = names[key]
        elif state.get("attribute_name_format") == "basic":
            name = definition.friendly_name
        else:
            name = definition.name
        rows.append({"key": key, "name": name, "format": "uri" if is_uri_name(name) else "basic"})
    if state.get("roles"):
        rows.append({"key": "roles", "name": ROLE_ATTRIBUTE, "format": "uri"})
        rows.append(
            {
                "key": state.get("role_session_name_attribute") or "",
                "name": ROLE_SESSION_NAME_ATTRIBUTE,
                "format": "uri",
            }
        )
    opaque = fmt in ("persistent", "transient")
    return {
        "format": FORMAT_URIS.get(fmt, fmt),
        "source": None if opaque else source,
        "domain": None if opaque else state.get("nameid_domain"),
        "opaque": opaque,
        "attributes": rows,
    }


def _group_problems(state: dict[str, Any]) -> dict[str, Any]:
    """Groups the policy names that AD does not have (a typo locks everyone out): a warning, not a refusal,
    since a group may be created in AD after the policy that names it."""
    named = list(dict.fromkeys([*state.get("allowed_groups", []), *(r["group"] for r in state.get("roles") or [])]))
    if not named:
        return {"unknown": [], "unchecked": None}
    try:
        known = _ad_group_names()
    except DirectoryError as exc:
        return {"unknown": [], "unchecked": exc.detail or exc.reason}
    return {"unknown": [g for g in named if g.lower() not in known], "unchecked": None}


def _ad_group_names() -> set[str]:
    """Every group's cn and DN, lower-cased: the two ways a policy may name a group."""
    groups = services().directory.groups()
    return {n.lower() for g in groups for n in (g.cn, g.dn)}


def _warnings(entry: SpEntry, policy: SpPolicy) -> list[str]:
    out = []
    problems = _group_problems(_state(policy))
    if problems["unknown"]:
        out.append(translate("admin.policy.unknown_groups", groups=", ".join(problems["unknown"])))
    if problems["unchecked"]:
        out.append(translate("admin.policy.groups_unchecked", error=problems["unchecked"]))
    if policy.encrypt_assertion and not services().saml.sp_can_encrypt(entry.entity_id):
        out.append(translate("admin.policy.no_encryption_cert"))
    return out


add_messages(
    {
        "en": {
            "admin.policy.title": "Policy of {sp}",
            "admin.policy.back": "All applications",
            "admin.policy.entity_id": "Entity ID",
            "admin.policy.acs": "Sign-in address (ACS)",
            "admin.policy.saved": "The policy is saved; it applies to the next sign-in.",
            "admin.policy.save_failed": "The policy could not be saved: {error}",
            "admin.policy.save_refused": "The policy was refused; nothing was saved.",
            "admin.policy.has_errors": "Some fields need correcting; nothing was saved.",
            "admin.policy.row": "Row {row}:",
            "admin.policy.save": "Save policy",
            "admin.policy.general": "General",
            "admin.policy.display_name": "Display name",
            "admin.policy.display_name.help": "Shown on the app launcher and in the console instead of the name in "
            "the metadata.",
            "admin.policy.enabled": "Sign-in to this application is enabled",
            "admin.policy.from_preset": "Filled from the preset: {preset}",
            "admin.policy.nameid": "NameID (who the person is, for the application)",
            "admin.policy.nameid_format": "NameID format",
            "admin.policy.nameid_attribute": "AD attribute that feeds it",
            "admin.policy.nameid_attribute.default": "Default (mail for emailAddress, sAMAccountName for unspecified)",
            "admin.policy.nameid_attribute.help": "Used for the emailAddress and unspecified formats; persistent "
            "and transient NameIDs are opaque and never come from AD.",
            "admin.policy.nameid_domain": "Domain to put after the name (optional)",
            "admin.policy.nameid_domain.help": "When set, the NameID is the part of the attribute before any @, "
            "then @ and this domain: e.g. the Alibaba Cloud account's default domain <alias>.onaliyun.com.",
            "admin.policy.attributes": "Released attributes",
            "admin.policy.attributes.help": "Exactly the ticked attributes are sent, nothing the application merely "
            "asks for. A custom SAML name replaces the name chosen below for that attribute.",
            "admin.policy.col.release": "Send",
            "admin.policy.col.key": "Attribute",
            "admin.policy.col.oid": "urn:oid name",
            "admin.policy.col.friendly": "Basic / friendly name",
            "admin.policy.col.custom": "Custom SAML name",
            "admin.policy.name_format": "Attribute names",
            "admin.policy.name_format.uri": "urn:oid names (NameFormat uri, the SAML2int standard)",
            "admin.policy.name_format.basic": "Friendly names (NameFormat basic, what many SaaS consoles expect)",
            "admin.policy.access": "Who may use it",
            "admin.policy.allowed_groups": "Allowed AD groups, one per line (cn or DN; nested membership counts)",
            "admin.policy.allowed_groups.help": "Empty: every employee may sign in.",
            "admin.policy.unknown_groups": "These groups are not in AD (check the spelling): {groups}",
            "admin.policy.groups_unchecked": "The groups could not be checked against AD: {error}",
            "admin.policy.security": "Signing and encryption",
            "admin.policy.sign_response": "Sign the response",
            "admin.policy.sign_assertion": "Sign the assertion",
            "admin.policy.encrypt_assertion": "Encrypt the assertion (AES-GCM, key sent with RSA-OAEP)",
            "admin.policy.no_encryption_cert": "The application's metadata has no encryption certificate: its "
            "sign-ins will fail while encryption is on. Upload metadata with one, or turn encryption off.",
            "admin.policy.require_signed_requests": "Require signed sign-in requests",
            "admin.policy.assertion_lifetime": "Assertion lifetime in seconds (30 to 3600; empty: the IdP default)",
            "admin.policy.idp_initiated": "Employees may start sign-in here (app launcher, /saml/init)",
            "admin.policy.default_relay_state": "Default RelayState for sign-ins started here (optional)",
            "admin.policy.default_relay_state.help": "Where the application should take the person afterwards.",
            "admin.policy.roles": "Alibaba Cloud roles (role-based SSO)",
            "admin.policy.roles.help": "Members of the group may assume the role; each mapping is sent as "
            '"role-ARN,provider-ARN". Leave empty for other applications.',
            "admin.policy.col.group": "AD group",
            "admin.policy.col.role_arn": "Role ARN (acs:ram::<account>:role/<name>)",
            "admin.policy.col.provider_arn": "Provider ARN (acs:ram::<account>:saml-provider/<name>)",
            "admin.policy.role_session_name": "RoleSessionName comes from",
            "admin.policy.none": "(none)",
            "admin.policy.receives": "What the application will receive",
            "admin.policy.receives.nameid": "NameID",
            "admin.policy.receives.rule": "{source}",
            "admin.policy.receives.rule_domain": "{source} (name part) + @{domain}",
            "admin.policy.receives.opaque": "an opaque identifier, never taken from AD",
            "admin.policy.receives.none": "No attributes are released.",
            "admin.policy.col.saml_name": "SAML Name",
            "admin.policy.col.name_format": "NameFormat",
            "admin.policy.col.from": "From",
            "admin.policy.presets": "Start from a preset",
            "admin.policy.presets.help": "A preset fills this form with what the provider documents; review the "
            "result and save it. Nothing changes until you save.",
            "admin.policy.choose": "Choose",
            "admin.policy.apply": "Fill the form",
            "admin.policy.preset_applied": "The form now holds the {preset} preset. Review it and press Save; "
            "nothing is saved yet.",
            "admin.policy.preset.aliyun_ram_user": "Alibaba Cloud RAM user-based SSO",
            "admin.policy.preset.aliyun_ram_role": "Alibaba Cloud RAM role-based SSO",
            "admin.policy.preset.aliyun_idaas": "Alibaba Cloud IDaaS (we are its external SAML IdP)",
            "admin.policy.preset.mailbox": "Enterprise mailbox",
            "admin.policy.param.site": "Alibaba Cloud site",
            "admin.policy.param.site.cn": "China (aliyun.com)",
            "admin.policy.param.site.intl": "International (alibabacloud.com)",
            "admin.policy.param.account_id": "Alibaba Cloud account ID",
            "admin.policy.param.nameid_domain": "Logon suffix / mail domain",
            "admin.policy.param.nameid_attribute": "AD attribute for the name",
            "admin.policy.param.default_relay_state": "Default RelayState (optional)",
            "admin.policy.param.allowed_groups": "Allowed AD groups, one per line (optional)",
            "admin.policy.param.roles": "Role mappings, one per line: AD group, role ARN, provider ARN",
            "admin.policy.param.role_session_name_attribute": "RoleSessionName from",
            "admin.policy.param.match_on": "IDaaS finds the account by",
            "admin.policy.help.aliyun_ram_user": "RAM finds the RAM user by <name>@<logon suffix>; the suffix is "
            "the account's default domain (<alias>.onaliyun.com), a domain alias or the auxiliary domain.",
            "admin.policy.help.aliyun_ram_role": "In RAM, create a SAML identity provider from our metadata and "
            "roles that trust it; map AD groups to them here. Only members of mapped groups may sign in.",
            "admin.policy.help.aliyun_idaas": "In IDaaS, add an inbound SAML identity provider with our metadata URL "
            "and bind accounts by the value chosen here; register IDaaS's SP metadata with us.",
            "admin.policy.help.mailbox": "The mailbox finds the person by e-mail address and reads the name and "
            "department from plain attribute names; it also appears on the app launcher.",
            "admin.policy.provider": "At the provider",
            "admin.policy.provider.our_metadata": "Give the provider our metadata",
            "admin.policy.provider.entity_id": "The provider's entity ID",
            "admin.policy.provider.acs": "The provider's ACS URL",
            "admin.policy.provider.metadata": "The provider's SP metadata",
            "admin.policy.provider.unpublished": "not published as a fixed value: copy it from the provider's console",
            "admin.policy.provider.docs": "Provider documentation",
        },
        "zh-CN": {
            "admin.policy.title": "{sp} 的策略",
            "admin.policy.back": "全部应用",
            "admin.policy.entity_id": "实体 ID",
            "admin.policy.acs": "登录地址（ACS）",
            "admin.policy.saved": "策略已保存，下次登录时生效。",
            "admin.policy.save_failed": "策略未能保存：{error}",
            "admin.policy.save_refused": "策略被拒绝，未保存任何内容。",
            "admin.policy.has_errors": "部分字段需要更正，未保存任何内容。",
            "admin.policy.row": "第 {row} 行：",
            "admin.policy.save": "保存策略",
            "admin.policy.general": "基本设置",
            "admin.policy.display_name": "显示名称",
            "admin.policy.display_name.help": "在应用门户和控制台中代替元数据中的名称显示。",
            "admin.policy.enabled": "允许登录此应用",
            "admin.policy.from_preset": "由预设填写：{preset}",
            "admin.policy.nameid": "NameID（应用据此识别用户）",
            "admin.policy.nameid_format": "NameID 格式",
            "admin.policy.nameid_attribute": "取值的 AD 属性",
            "admin.policy.nameid_attribute.default": "默认（emailAddress 用 mail，unspecified 用 sAMAccountName）",
            "admin.policy.nameid_attribute.help": "用于 emailAddress 和 unspecified 格式；persistent 与 transient "
            "为不透明标识，从不取自 AD。",
            "admin.policy.nameid_domain": "附加在名称后的域名（可选）",
            "admin.policy.nameid_domain.help": "设置后，NameID 取属性值中 @ 之前的部分，再加上 @ 和此域名，"
            "例如阿里云账号的默认域名 <别名>.onaliyun.com。",
            "admin.policy.attributes": "发送的属性",
            "admin.policy.attributes.help": "只发送勾选的属性，应用额外请求的属性不会发送。"
            "自定义 SAML 名称会替代下方为该属性选择的名称。",
            "admin.policy.col.release": "发送",
            "admin.policy.col.key": "属性",
            "admin.policy.col.oid": "urn:oid 名称",
            "admin.policy.col.friendly": "基本名称 / 友好名称",
            "admin.policy.col.custom": "自定义 SAML 名称",
            "admin.policy.name_format": "属性名称",
            "admin.policy.name_format.uri": "urn:oid 名称（NameFormat uri，SAML2int 标准）",
            "admin.policy.name_format.basic": "友好名称（NameFormat basic，许多 SaaS 控制台使用）",
            "admin.policy.access": "可使用的人员",
            "admin.policy.allowed_groups": "允许的 AD 组，每行一个（cn 或 DN；嵌套成员身份有效）",
            "admin.policy.allowed_groups.help": "留空：所有员工均可登录。",
            "admin.policy.unknown_groups": "以下组在 AD 中不存在（请检查拼写）：{groups}",
            "admin.policy.groups_unchecked": "无法在 AD 中核对这些组：{error}",
            "admin.policy.security": "签名与加密",
            "admin.policy.sign_response": "签名响应",
            "admin.policy.sign_assertion": "签名断言",
            "admin.policy.encrypt_assertion": "加密断言（AES-GCM，密钥以 RSA-OAEP 传送）",
            "admin.policy.no_encryption_cert": "该应用的元数据中没有加密证书：开启加密期间其登录将会失败。"
            "请上传包含加密证书的元数据，或关闭加密。",
            "admin.policy.require_signed_requests": "要求登录请求必须签名",
            "admin.policy.assertion_lifetime": "断言有效期（秒，30 到 3600；留空：使用 IdP 默认值）",
            "admin.policy.idp_initiated": "允许员工从本站发起登录（应用门户、/saml/init）",
            "admin.policy.default_relay_state": "从本站发起登录时的默认 RelayState（可选）",
            "admin.policy.default_relay_state.help": "登录后应用应将用户带往的地址。",
            "admin.policy.roles": "阿里云角色（角色 SSO）",
            "admin.policy.roles.help": "组成员可以扮演对应角色；每个映射以“角色 ARN,身份提供商 ARN”发送。"
            "其他应用请留空。",
            "admin.policy.col.group": "AD 组",
            "admin.policy.col.role_arn": "角色 ARN（acs:ram::<账号>:role/<名称>）",
            "admin.policy.col.provider_arn": "身份提供商 ARN（acs:ram::<账号>:saml-provider/<名称>）",
            "admin.policy.role_session_name": "RoleSessionName 取自",
            "admin.policy.none": "（无）",
            "admin.policy.receives": "应用将收到的内容",
            "admin.policy.receives.nameid": "NameID",
            "admin.policy.receives.rule": "{source}",
            "admin.policy.receives.rule_domain": "{source}（@ 之前的部分）+ @{domain}",
            "admin.policy.receives.opaque": "不透明标识，从不取自 AD",
            "admin.policy.receives.none": "不发送任何属性。",
            "admin.policy.col.saml_name": "SAML 名称",
            "admin.policy.col.name_format": "NameFormat",
            "admin.policy.col.from": "来源",
            "admin.policy.presets": "从预设开始",
            "admin.policy.presets.help": "预设会按服务商文档填写此表单；请检查结果后保存。保存之前不会有任何改动。",
            "admin.policy.choose": "选择",
            "admin.policy.apply": "填写表单",
            "admin.policy.preset_applied": "表单已按“{preset}”预设填写。请检查后点击保存；目前尚未保存。",
            "admin.policy.preset.aliyun_ram_user": "阿里云 RAM 用户 SSO",
            "admin.policy.preset.aliyun_ram_role": "阿里云 RAM 角色 SSO",
            "admin.policy.preset.aliyun_idaas": "阿里云 IDaaS（本服务作为其外部 SAML 身份提供方）",
            "admin.policy.preset.mailbox": "企业邮箱",
            "admin.policy.param.site": "阿里云站点",
            "admin.policy.param.site.cn": "中国站（aliyun.com）",
            "admin.policy.param.site.intl": "国际站（alibabacloud.com）",
            "admin.policy.param.account_id": "阿里云账号 ID",
            "admin.policy.param.nameid_domain": "登录名后缀 / 邮件域名",
            "admin.policy.param.nameid_attribute": "用作名称的 AD 属性",
            "admin.policy.param.default_relay_state": "默认 RelayState（可选）",
            "admin.policy.param.allowed_groups": "允许的 AD 组，每行一个（可选）",
            "admin.policy.param.roles": "角色映射，每行一个：AD 组, 角色 ARN, 身份提供商 ARN",
            "admin.policy.param.role_session_name_attribute": "RoleSessionName 取自",
            "admin.policy.param.match_on": "IDaaS 据此匹配账户",
            "admin.policy.help.aliyun_ram_user": "RAM 按 <用户名>@<登录名后缀> 查找 RAM 用户；后缀为账号的默认域名"
            "（<别名>.onaliyun.com）、域别名或辅助域名。",
            "admin.policy.help.aliyun_ram_role": "请在 RAM 中用本服务的元数据创建 SAML 身份提供商，并创建信任它的角色；"
            "在此将 AD 组映射到这些角色。只有已映射组的成员可以登录。",
            "admin.policy.help.aliyun_idaas": "请在 IDaaS 中用本服务的元数据地址添加入站 SAML 身份提供方，"
            "并按此处选择的值绑定账户；再将 IDaaS 的 SP 元数据注册到本服务。",
            "admin.policy.help.mailbox": "邮箱按电子邮件地址识别用户，并从普通属性名读取姓名和部门；"
            "该应用也会显示在应用门户中。",
            "admin.policy.provider": "服务商一侧",
            "admin.policy.provider.our_metadata": "向服务商提供本服务的元数据",
            "admin.policy.provider.entity_id": "服务商的实体 ID",
            "admin.policy.provider.acs": "服务商的 ACS 地址",
            "admin.policy.provider.metadata": "服务商的 SP 元数据",
            "admin.policy.provider.unpublished": "没有公布固定值：请从服务商控制台复制",
            "admin.policy.provider.docs": "服务商文档",
        },
    }
)
