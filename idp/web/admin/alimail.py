"""/admin/alimail: Alibaba Mail (direct) beside the SAML SPs, and the three ways into Alibaba Mail.

The page shows the ``[alimail_direct]`` settings in force (never the Secret, only whether its file can be
read), who may use the app, its last sign-in and its recent refusals, and runs the same harmless logon call
as `idp alimail test` ("test connection"), audited as an admin action. It also explains, with or without
``[alimail_direct]``, which way in suits which Alibaba Mail edition.

The allowed groups stay in the configuration file: every node reads the same file at start-up and `idp
alimail test` reads it too, so a console edit would be one more place the policy lives, overridden by the
next deployment of the file. The page names the key to change instead.
"""

from __future__ import annotations

from flask import current_app, render_template, request
from sqlalchemy import select

from idp.audit import AuditRecord
from idp.connectors import alimail_contract as contract
from idp.connectors.alimail_check import (
    BadMailDomain,
    CheckResult,
    check_connection,
    default_mail_domain,
    secret_readable,
)
from idp.connectors.direct_app import ENTITY_ID
from idp.sps import presets
from idp.store.models import AuditEvent
from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.services import services

RECENT_REFUSALS = 10

SOURCES: dict[str, tuple[str, ...]] = {
    "direct": (contract.DOC_PLATFORM, contract.DOC_FEILIAN, contract.DOC_SEALSUITE),
    "idaas": presets.provider_side("aliyun_idaas", {}).docs,
    "oauth": (contract.DOC_OAUTH,),
}
"""Where each way in is documented, shown as text beside its explanation."""


@bp.get("/alimail")
def alimail() -> str:
    return _render()


@bp.post("/alimail/test")
def alimail_test() -> tuple[str, int] | str:
    svc = services()
    settings = svc.settings.alimail_direct
    if settings is None:
        return _render(), 404
    domain = request.form.get("mail_domain", "").strip().lower()
    try:
        result = check_connection(settings, domain)
    except BadMailDomain as exc:
        svc.audit.record_change(
            "admin_alimail_test", actor=current_admin().username, sp=ENTITY_ID, result="refused",
            reason="bad_input", note=str(exc), ip=request.remote_addr,
        )  # fmt: skip
        return _render(mail_domain=domain, domain_problem=str(exc)), 400
    svc.audit.record_change(
        "admin_alimail_test",
        actor=current_admin().username,
        sp=ENTITY_ID,
        result="success" if result.ok else "failure",
        reason="usable" if result.ok else result.reason,
        after={"host": settings.host, "app_code": settings.app_code, "mail_domain": domain, "error": result.detail},
        ip=request.remote_addr,
    )
    return _render(result=result, mail_domain=domain)


def _render(
    result: CheckResult | None = None, mail_domain: str | None = None, domain_problem: str | None = None
) -> str:
    svc = services()
    settings = svc.settings.alimail_direct
    return render_template(
        "admin/alimail.html",
        settings=settings,
        secret_readable=settings is not None and secret_readable(settings),
        last_signin=svc.audit.last_success_by_sp().get(ENTITY_ID) if settings else None,
        refusals=_recent_refusals() if settings else [],
        mail_domain=mail_domain if mail_domain is not None else default_mail_domain(svc.settings.provisioning),
        result=result,
        domain_problem=domain_problem,
        sources=SOURCES,
        # Alibaba Mail's OAuth 2.0 sign-in needs an OpenID Connect provider here; say so only when there is one.
        oidc="oidc" in current_app.blueprints,
    )


def _recent_refusals() -> list[AuditRecord]:
    q = (
        select(AuditEvent)
        .where(AuditEvent.event == "signin", AuditEvent.result == "failure", AuditEvent.sp_entity_id == ENTITY_ID)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(RECENT_REFUSALS)
    )
    with services().db.session() as s:
        return [AuditRecord.from_row(r) for r in s.scalars(q)]
