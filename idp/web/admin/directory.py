"""/admin/directory: the Active Directory settings in force (the service account's password never shown),
the same step-by-step check as `idp ldap test`, and a lookup of one person: what AD says about them, and
what one registered SP would receive for them.

The preview is built by the SAML layer's own functions (SamlIdp.name_id_for, SamlIdp.attribute_statement_for),
so it cannot drift from what a sign-in sends. Checks and lookups are admin actions: each writes an audit row.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import render_template, request
from ldap3.core.exceptions import LDAPException

from idp.directory.check import STEPS, DirectoryReport, check_directory
from idp.directory.errors import DirectoryError
from idp.directory.person import Person
from idp.saml.attributes import matching_roles
from idp.saml.idp import AuthnRequestInfo, NameIdPolicyError
from idp.saml.nameid import FORMAT_URIS
from idp.settings import LdapSettings
from idp.sps.errors import SpRegistryError
from idp.sps.registry import SpEntry
from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.i18n import add_messages, translate
from idp.web.services import services

_MAX_USERNAME = 256


@dataclass(frozen=True)
class ReleasedAttribute:
    name: str
    name_format: str
    friendly_name: str | None
    values: tuple[str, ...]


@dataclass(frozen=True)
class Release:
    """What one SP would receive for one person, as the SAML layer would build it now."""

    sp: SpEntry
    nameid_format: str
    nameid_value: str | None
    nameid_error: str | None
    attributes: tuple[ReleasedAttribute, ...]
    allowed: bool
    """False when the SP's allowed_groups leave this person out (the sign-in would be refused)."""
    no_role: bool
    """The SP maps Alibaba Cloud roles and none matches this person (the sign-in would be refused)."""
    cannot_encrypt: bool
    """The policy asks for encryption and the SP's metadata has no certificate (refused as well)."""


@dataclass(frozen=True)
class Lookup:
    username: str
    person: Person | None
    error: str | None
    release: Release | None


@bp.get("/directory")
def directory() -> str:
    return _render()


@bp.post("/directory/test")
def directory_test() -> str:
    svc = services()
    settings = svc.settings.ldap
    try:
        report = check_directory(settings)
        error = None
    except (LDAPException, OSError) as exc:
        # The settings themselves are unusable (a CA file that cannot be read, say): no DC was even tried.
        report, error = None, str(exc) or type(exc).__name__
    svc.audit.record_change(
        "admin_directory_test",
        actor=current_admin().username,
        reason=("usable" if report.ok else "not_usable") if report else "check_failed",
        after=_summary(report) if report else {"error": error},
        ip=request.remote_addr,
    )
    return _render(report=report, check_error=error)


@bp.post("/directory/lookup")
def directory_lookup() -> tuple[str, int] | str:
    svc = services()
    admin = current_admin().username
    username = request.form.get("username", "").strip()
    sp_id = request.form.get("sp", "").strip() or None
    problem = _lookup_problem(username)
    entry = None
    if problem is None and sp_id is not None:
        entry = _sp_entry(sp_id)
        if entry is None:
            problem = translate("admin.directory.unknown_sp", sp=sp_id)
    if problem is not None:
        svc.audit.record_change(
            "admin_user_lookup", actor=admin, sp=sp_id, result="refused", reason="bad_input", note=problem,
            after={"user": username[:_MAX_USERNAME]}, ip=request.remote_addr,
        )  # fmt: skip
        return _render(lookup_form={"username": username, "sp": sp_id or ""}, lookup_problem=problem), 400
    lookup = _lookup(username, entry)
    svc.audit.record_change(
        "admin_user_lookup",
        actor=admin,
        sp=sp_id,
        reason="found" if lookup.person else ("directory_error" if lookup.error else "not_found"),
        after={"user": username, "found": lookup.person is not None, "error": lookup.error},
        ip=request.remote_addr,
    )
    return _render(lookup_form={"username": username, "sp": sp_id or ""}, lookup=lookup)


def _lookup_problem(username: str) -> str | None:
    if not username:
        return translate("admin.directory.username_missing")
    if len(username) > _MAX_USERNAME or not username.isprintable():
        return translate("admin.directory.username_invalid")
    return None


def _sp_entry(entity_id: str) -> SpEntry | None:
    try:
        return services().registry.get(entity_id)
    except SpRegistryError:
        return None


def _lookup(username: str, entry: SpEntry | None) -> Lookup:
    """The person through the IdP's own directory client (the one sign-ins use, pooled, with failover)."""
    try:
        person = services().directory.find(username)
    except DirectoryError as exc:
        return Lookup(username, None, exc.detail or str(exc), None)
    if person is None:
        return Lookup(username, None, None, None)
    return Lookup(username, person, None, _release(entry, person) if entry else None)


def _release(entry: SpEntry, person: Person) -> Release:
    policy = entry.policy
    # The request an SP sends without a NameIDPolicy: the SP's own NameID format then applies.
    request_like = AuthnRequestInfo(
        request_id=None,
        sp_entity_id=entry.entity_id,
        sp_name=entry.name,
        acs_url=entry.acs_urls[0] if entry.acs_urls else "",
        acs_binding="",
        force_authn=False,
        is_passive=False,
        nameid_format=None,
        relay_state=None,
        policy=policy,
    )
    try:
        nameid_format, nameid_value = services().saml.name_id_for(request_like, person)
        nameid_error = None
    except NameIdPolicyError as exc:
        nameid_format, nameid_value, nameid_error = FORMAT_URIS[policy.nameid_format], None, str(exc)
    statement = services().saml.attribute_statement_for(policy, person)
    attributes = tuple(
        ReleasedAttribute(
            name=a.name,
            name_format=a.name_format,
            friendly_name=a.friendly_name,
            values=tuple(v.text or "" for v in a.attribute_value),
        )
        for a in (statement.attribute if statement is not None else ())
    )
    return Release(
        sp=entry,
        nameid_format=nameid_format,
        nameid_value=nameid_value,
        nameid_error=nameid_error,
        attributes=attributes,
        allowed=not policy.allowed_groups or person.in_any_group(policy.allowed_groups),
        no_role=bool(policy.roles) and not matching_roles(person, policy.roles),
        cannot_encrypt=policy.encrypt_assertion and not services().saml.sp_can_encrypt(entry.entity_id),
    )


def _summary(report: DirectoryReport) -> dict:
    """For the audit row: which DCs passed, and the first failed step of each that did not."""
    return {
        "usable": report.ok,
        "controllers": {
            dc.url: "ok" if dc.ok else next((f"{s.name}: {s.message}" for s in dc.steps if not s.ok), "incomplete")
            for dc in report.controllers
        },
    }


def _tls_mode(settings: LdapSettings, url: str) -> str:
    if url.startswith("ldaps://"):
        return "ldaps"
    return "start_tls" if settings.start_tls else "none"


def _render(**context: object) -> str:
    svc = services()
    settings = svc.settings.ldap
    try:
        sps = sorted(svc.registry.list(), key=lambda e: (e.policy.display_name or e.name or e.entity_id).casefold())
    except SpRegistryError:
        sps = []
    context.setdefault("lookup_form", {"username": "", "sp": ""})
    return render_template(
        "admin/directory.html",
        ldap=settings,
        urls=[(url, _tls_mode(settings, url)) for url in settings.urls],
        password_file=settings.bind_password_file,
        steps=STEPS,
        sps=sps,
        **context,
    )


add_messages(
    {
        "en": {
            "admin.directory.heading": "Directory",
            "admin.directory.settings": "Active Directory settings in force",
            "admin.directory.settings_help": "From the configuration file and IDP_LDAP__* variables; change them "
            "there and restart the service.",
            "admin.directory.urls": "Domain controllers",
            "admin.directory.tls.ldaps": "LDAPS",
            "admin.directory.tls.start_tls": "StartTLS",
            "admin.directory.tls.none": "no encryption: passwords travel in clear text",
            "admin.directory.base_dn": "Base DN",
            "admin.directory.bind_dn": "Service account",
            "admin.directory.password": "Service account password",
            "admin.directory.password_file": "read from the file {path} (not shown)",
            "admin.directory.password_set": "set in the configuration (not shown)",
            "admin.directory.domain": "NetBIOS domain",
            "admin.directory.any_domain": "(any)",
            "admin.directory.upn_suffix": "UPN suffix",
            "admin.directory.realm": "realm {realm}",
            "admin.directory.from_base_dn": "taken from the base DN",
            "admin.directory.tls_verify": "Certificate check",
            "admin.directory.verify_on": "on",
            "admin.directory.verify_off": "OFF: any certificate is accepted",
            "admin.directory.ca_file": "CA file",
            "admin.directory.system_cas": "the system's CA certificates",
            "admin.directory.valid_names": "Extra certificate names",
            "admin.directory.timeouts": "Timeouts",
            "admin.directory.timeouts_value": "connect {connect} s, answer {receive} s",
            "admin.directory.pool_size": "Connections per pool",
            "admin.directory.user_filter": "User filter",
            "admin.directory.extra_attributes": "Extra attributes read",
            "admin.directory.group_cache": "Group nesting cached for",
            "admin.directory.seconds": "{n} s",
            "admin.directory.none": "(none)",
            "admin.directory.test": "Test connection",
            "admin.directory.test_help": "Checks every domain controller step by step, as `idp ldap test` does: "
            "reachable, TLS, service account bind, base DN readable.",
            "admin.directory.run_test": "Test connection",
            "admin.directory.dc": "Domain controller",
            "admin.directory.usable": "Usable",
            "admin.directory.step.reachable": "Reachable",
            "admin.directory.step.tls": "TLS",
            "admin.directory.step.service bind": "Service bind",
            "admin.directory.step.base DN": "Base DN",
            "admin.directory.step_ok": "ok",
            "admin.directory.step_failed": "failed",
            "admin.directory.not_run": "not run",
            "admin.directory.yes": "yes",
            "admin.directory.no": "no",
            "admin.directory.ms": "{ms} ms",
            "admin.directory.failures": "What failed",
            "admin.directory.overall_ok": "Active Directory is usable.",
            "admin.directory.overall_bad": "Active Directory is NOT usable with these settings.",
            "admin.directory.check_error": "The check could not start: {error}",
            "admin.directory.lookup": "Look up a person",
            "admin.directory.lookup_help": "Reads the person with the service account (no password), and shows "
            "what the chosen application would receive at sign-in.",
            "admin.directory.username": "Username",
            "admin.directory.for_sp": "Application (optional)",
            "admin.directory.no_sp_chosen": "— only the directory entry —",
            "admin.directory.run_lookup": "Look up",
            "admin.directory.username_missing": "Enter a username to look up.",
            "admin.directory.username_invalid": "That username is too long or contains control characters.",
            "admin.directory.unknown_sp": "No application with the entityID {sp} is registered.",
            "admin.directory.not_found": "{user} was not found (the user filter applies).",
            "admin.directory.lookup_failed": "The lookup failed: {error}",
            "admin.directory.person": "Directory entry of {user}",
            "admin.directory.dn": "DN",
            "admin.directory.guid": "objectGUID",
            "admin.directory.groups": "Groups (nested membership included)",
            "admin.directory.no_groups": "In no group.",
            "admin.directory.group_cn": "Group",
            "admin.directory.group_dn": "DN",
            "admin.directory.release": "What {sp} would receive",
            "admin.directory.nameid": "NameID",
            "admin.directory.nameid_format": "NameID format",
            "admin.directory.nameid_error": "No NameID can be issued, so the sign-in would fail: {error}",
            "admin.directory.transient_note": "A transient NameID is a new random value at every sign-in.",
            "admin.directory.attributes": "Attributes",
            "admin.directory.no_attributes": "No attributes would be released.",
            "admin.directory.saml_name": "SAML Name",
            "admin.directory.name_format": "NameFormat",
            "admin.directory.friendly_name": "FriendlyName",
            "admin.directory.values": "Values",
            "admin.directory.not_allowed": "{user} is not in the groups allowed to use this application ({groups}): "
            "the sign-in would be refused.",
            "admin.directory.sp_disabled": "This application is switched off: the sign-in would be refused.",
            "admin.directory.no_role": "No role mapping of this application matches {user}'s groups: the sign-in "
            "would be refused.",
            "admin.directory.cannot_encrypt": "This application must get encrypted assertions, but its metadata has "
            "no encryption certificate: the sign-in would be refused.",
        },
        "zh-CN": {
            "admin.directory.heading": "目录",
            "admin.directory.settings": "当前生效的 Active Directory 设置",
            "admin.directory.settings_help": "来自配置文件和 IDP_LDAP__* 环境变量；请在那里修改并重启服务。",
            "admin.directory.urls": "域控制器",
            "admin.directory.tls.ldaps": "LDAPS",
            "admin.directory.tls.start_tls": "StartTLS",
            "admin.directory.tls.none": "未加密：密码以明文传输",
            "admin.directory.base_dn": "基准 DN",
            "admin.directory.bind_dn": "服务账号",
            "admin.directory.password": "服务账号密码",
            "admin.directory.password_file": "从文件 {path} 读取（不显示）",
            "admin.directory.password_set": "已在配置中设置（不显示）",
            "admin.directory.domain": "NetBIOS 域名",
            "admin.directory.any_domain": "（任意）",
            "admin.directory.upn_suffix": "UPN 后缀",
            "admin.directory.realm": "领域 {realm}",
            "admin.directory.from_base_dn": "取自基准 DN",
            "admin.directory.tls_verify": "证书校验",
            "admin.directory.verify_on": "开启",
            "admin.directory.verify_off": "关闭：接受任何证书",
            "admin.directory.ca_file": "CA 文件",
            "admin.directory.system_cas": "系统自带的 CA 证书",
            "admin.directory.valid_names": "额外允许的证书名称",
            "admin.directory.timeouts": "超时",
            "admin.directory.timeouts_value": "连接 {connect} 秒，响应 {receive} 秒",
            "admin.directory.pool_size": "每个连接池的连接数",
            "admin.directory.user_filter": "用户过滤器",
            "admin.directory.extra_attributes": "额外读取的属性",
            "admin.directory.group_cache": "组嵌套关系缓存时间",
            "admin.directory.seconds": "{n} 秒",
            "admin.directory.none": "（无）",
            "admin.directory.test": "测试连接",
            "admin.directory.test_help": "与 `idp ldap test` 相同，逐台检查每个域控制器：能否连通、TLS、服务账号绑定、"
            "能否读取基准 DN。",
            "admin.directory.run_test": "测试连接",
            "admin.directory.dc": "域控制器",
            "admin.directory.usable": "可用",
            "admin.directory.step.reachable": "连通",
            "admin.directory.step.tls": "TLS",
            "admin.directory.step.service bind": "服务账号绑定",
            "admin.directory.step.base DN": "基准 DN",
            "admin.directory.step_ok": "正常",
            "admin.directory.step_failed": "失败",
            "admin.directory.not_run": "未执行",
            "admin.directory.yes": "是",
            "admin.directory.no": "否",
            "admin.directory.ms": "{ms} 毫秒",
            "admin.directory.failures": "失败原因",
            "admin.directory.overall_ok": "Active Directory 可用。",
            "admin.directory.overall_bad": "使用当前设置无法使用 Active Directory。",
            "admin.directory.check_error": "检查无法开始：{error}",
            "admin.directory.lookup": "查询用户",
            "admin.directory.lookup_help": "使用服务账号读取该用户（无需密码），并显示所选应用在登录时会收到的内容。",
            "admin.directory.username": "用户名",
            "admin.directory.for_sp": "应用（可选）",
            "admin.directory.no_sp_chosen": "— 只看目录条目 —",
            "admin.directory.run_lookup": "查询",
            "admin.directory.username_missing": "请输入要查询的用户名。",
            "admin.directory.username_invalid": "用户名过长或包含控制字符。",
            "admin.directory.unknown_sp": "没有 entityID 为 {sp} 的已注册应用。",
            "admin.directory.not_found": "未找到 {user}（用户过滤器同样适用）。",
            "admin.directory.lookup_failed": "查询失败：{error}",
            "admin.directory.person": "{user} 的目录条目",
            "admin.directory.dn": "DN",
            "admin.directory.guid": "objectGUID",
            "admin.directory.groups": "所属组（含嵌套成员关系）",
            "admin.directory.no_groups": "不属于任何组。",
            "admin.directory.group_cn": "组",
            "admin.directory.group_dn": "DN",
            "admin.directory.release": "{sp} 将收到的内容",
            "admin.directory.nameid": "NameID",
            "admin.directory.nameid_format": "NameID 格式",
            "admin.directory.nameid_error": "无法生成 NameID，登录将失败：{error}",
            "admin.directory.transient_note": "临时（transient）NameID 每次登录都是新的随机值。",
            "admin.directory.attributes": "属性",
            "admin.directory.no_attributes": "不会发送任何属性。",
            "admin.directory.saml_name": "SAML 名称",
            "admin.directory.name_format": "NameFormat",
            "admin.directory.friendly_name": "FriendlyName",
            "admin.directory.values": "值",
            "admin.directory.not_allowed": "{user} 不在允许使用此应用的组（{groups}）中：登录将被拒绝。",
            "admin.directory.sp_disabled": "此应用已停用：登录将被拒绝。",
            "admin.directory.no_role": "此应用的角色映射中没有与 {user} 所属组匹配的项：登录将被拒绝。",
            "admin.directory.cannot_encrypt": "此应用要求加密断言，但其元数据中没有加密证书：登录将被拒绝。",
        },
    }
)
