"""/admin: the overview an admin opens first: what is registered, whether the signing key is healthy, and
what went wrong lately."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import render_template

from idp.keys.keyring import Keyring
from idp.keys.material import KeysError, load_key_info
from idp.sps.errors import SpRegistryError
from idp.web.admin.blueprint import bp
from idp.web.admin.sp_names import sp_names
from idp.web.services import services

NAV = (
    ("admin.dashboard", "admin.nav.dashboard"),
    ("admin.sps", "admin.nav.sps"),
    ("admin.keys", "admin.nav.keys"),
    ("admin.directory", "admin.nav.directory"),
    ("admin.sessions", "admin.nav.sessions"),
    ("admin.mfa", "admin.nav.mfa"),
    ("admin.activity", "admin.nav.activity"),
    ("admin.provisioning", "admin.nav.provisioning"),
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
        sp_names=sp_names(sps),
    )
