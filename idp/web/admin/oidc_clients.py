"""/admin/oidc/clients: registering and removing OpenID Connect clients from the console, beside the SAML SPs
on /admin/sps. The same code path as `idp oidc client add|remove` (idp.oidc.registration), so the audit rows
are the same; a confidential client's secret is shown once, on the page that answers the registration."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from idp.oidc.clients import OidcClientError
from idp.oidc.registration import add_client, remove_client
from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.i18n import translate
from idp.web.services import services


@bp.post("/oidc/clients")
def oidc_client_add() -> tuple[str, int] | str:
    form = request.form
    client_id, name = form.get("client_id", "").strip(), form.get("name", "").strip()
    redirect_uris, groups = form.get("redirect_uris", ""), form.get("groups", "")
    public = form.get("kind") == "public"
    svc = services()
    try:
        made = add_client(
            svc.oidc.clients,
            svc.audit,
            client_id,
            name,
            _lines(redirect_uris),
            public=public,
            allowed_groups=_lines(groups),
            actor=current_admin().username,
            ip=request.remote_addr,
        )
    except OidcClientError as exc:  # the form again, with what was typed and why it was refused
        typed = {
            "client_id": client_id,
            "name": name,
            "redirect_uris": redirect_uris,
            "groups": groups,
            "public": public,
        }
        return render_template("admin/oidc_client_add.html", typed=typed, error=str(exc)), 400
    issuer = svc.settings.oidc_issuer
    return render_template("admin/oidc_client_added.html", client=made.client, secret=made.secret, issuer=issuer)


@bp.get("/oidc/clients/delete")
def oidc_client_delete_confirm() -> str:
    client = services().oidc.clients.get(request.args.get("client_id", ""))
    if client is None:
        abort(404)
    return render_template(
        "admin/confirm_delete.html",
        title=translate("admin.oidc.delete_title"),
        text=translate("admin.oidc.delete_text", name=client.name, client_id=client.client_id),
        action=url_for("admin.oidc_client_delete"),
        form_id="oidc-delete",
        field="client_id",
        value=client.client_id,
    )


@bp.post("/oidc/clients/delete")
def oidc_client_delete() -> Response:
    svc = services()
    client_id = request.form.get("client_id", "")
    try:
        removed = remove_client(
            svc.oidc.clients, svc.audit, client_id, actor=current_admin().username, ip=request.remote_addr
        )
    except OidcClientError as exc:
        flash(str(exc), "error")
    else:
        flash(translate("admin.oidc.removed", name=f"{removed.name} ({removed.client_id})"), "message")
    return redirect(url_for("admin.sps"))


def _lines(text: str) -> list[str]:
    """One value a line: commas separate nothing, since a group's DN has them."""
    return [line.strip() for line in text.splitlines() if line.strip()]
