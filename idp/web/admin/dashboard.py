"""/admin: the overview an admin opens first: what is registered, whether the signing key is healthy, and
what went wrong lately."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import render_template

from idp.saml.keyring import Keyring
from idp.saml.keys import KeysError, load_key_info
from idp.sps.errors import SpRegistryError
from idp.web.admin.blueprint import bp
from idp.web.i18n import add_messages
from idp.web.services import services

NAV = (
    ("admin.dashboard", "admin.nav.dashboard"),
    ("admin.sps", "admin.nav.sps"),
    ("admin.keys", "admin.nav.keys"),
    ("admin.directory", "admin.nav.directory"),
    ("admin.activity", "admin.nav.activity"),
)
KEY_EXPIRY_WARNING = timedelta(days=60)
"""Rolling a key over means every SP re-reads our metadata; two months leaves time for the slow ones."""


@bp.get("/")
def dashboard() -> str:
    svc = services()
    try:
        sps = svc.registry.list()
        sp_error = None
    except SpRegistryError as exc:
        sps, sp_error = [], str(exc)
    try:
        key = load_key_info(Keyring.for_settings(svc.settings).state().active.cert_file)
        key_error = None
    except KeysError as exc:
        key, key_error = None, str(exc)
    now = datetime.now(UTC)
    return render_template(
        "admin/dashboard.html",
        sp_count=len(sps),
        enabled_count=sum(1 for e in sps if e.policy.enabled),
        sp_error=sp_error,
        key=key,
        key_error=key_error,
        key_days_left=(key.not_after - now).days if key else None,
        key_warning=key is not None and key.not_after - now < KEY_EXPIRY_WARNING,
        failures=[r for r in svc.audit.recent(200) if r.result != "success"][:10],
    )


add_messages(
    {
        "en": {
            "admin.product": "AD SSO Bridge",
            "admin.title": "Admin console",
            "admin.nav.dashboard": "Overview",
            "admin.nav.sps": "Applications",
            "admin.nav.keys": "Signing keys",
            "admin.nav.directory": "Directory",
            "admin.nav.activity": "Activity",
            "admin.dashboard.sps": "Applications",
            "admin.dashboard.sps_count": "{enabled} of {total} enabled",
            "admin.dashboard.key": "Signing certificate",
            "admin.dashboard.key_days": "expires {date} ({days} days left)",
            "admin.dashboard.key_warning": "The signing certificate expires soon: start a key rollover now.",
            "admin.dashboard.failures": "Recent problems",
            "admin.dashboard.no_failures": "Nothing has failed recently.",
            "admin.col.when": "When",
            "admin.col.event": "Event",
            "admin.col.result": "Result",
            "admin.col.reason": "Reason",
            "admin.col.user": "User",
            "admin.col.sp": "Application",
            "admin.col.ip": "Address",
        },
        "zh-CN": {
            "admin.product": "AD 单点登录桥",
            "admin.title": "管理控制台",
            "admin.nav.dashboard": "概览",
            "admin.nav.sps": "应用",
            "admin.nav.keys": "签名密钥",
            "admin.nav.directory": "目录",
            "admin.nav.activity": "活动日志",
            "admin.dashboard.sps": "应用",
            "admin.dashboard.sps_count": "已启用 {enabled} 个，共 {total} 个",
            "admin.dashboard.key": "签名证书",
            "admin.dashboard.key_days": "{date} 到期（剩余 {days} 天）",
            "admin.dashboard.key_warning": "签名证书即将到期，请立即开始密钥轮换。",
            "admin.dashboard.failures": "最近的问题",
            "admin.dashboard.no_failures": "最近没有失败记录。",
            "admin.col.when": "时间",
            "admin.col.event": "事件",
            "admin.col.result": "结果",
            "admin.col.reason": "原因",
            "admin.col.user": "用户",
            "admin.col.sp": "应用",
            "admin.col.ip": "地址",
        },
    }
)
