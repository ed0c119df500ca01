"""/admin/oidc/clients: OpenID Connect clients in the console, beside the SAML SPs on /admin/sps: register one
(from a preset or not), change it after registration, give a confidential client a new secret, remove it.

Every change goes through idp.oidc.registration, the code path of `idp oidc client`, so the console and the
shell leave the same audit rows, refusals included. A secret is shown once, on the page that answers the
registration or the rotation (admin pages are never cached: see the blueprint).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from idp.oidc.clients import SCOPES, NewClient, OidcClient, OidcClientError, OidcField
from idp.oidc.presets import PRESETS, OidcPreset
from idp.oidc.registration import add_client, remove_client, rotate_secret, update_client
from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.i18n import translate
from idp.web.services import services


@dataclass(frozen=True)
class ClientForm:
    """What the add and edit forms show: blank, a preset's values, a stored client, or what was typed and
    refused (with why)."""

    mode: Literal["add", "edit"] = "add"
    client_id: str = ""
    name: str = ""
    redirect_uris: str = ""
    """One a line, as the textarea holds them."""
    public: bool = False
    scopes: tuple[str, ...] = SCOPES
    groups: str = ""
    frontchannel_logout_uri: str = ""
    preset: str = ""
    error: str | None = None
    """Why the form was refused, in the page's language."""
    error_field: OidcField | None = None
    """The field at fault, marked invalid and described by the error."""

    @property
    def form_id(self) -> str:
        return f"oidc-{self.mode}"


def listing(last_signin: dict[str, datetime]) -> dict[str, Any]:
    """The OIDC part of /admin/sps: each client with its last sign-in, the blank add form, the presets."""
    clients = services().oidc.clients.all()
    return {
        "oidc_clients": [(c, last_signin.get(c.entity_id)) for c in clients],
        "oidc_form": ClientForm(),
        "oidc_presets": PRESETS,
        "scope_choices": SCOPES,
    }


@bp.get("/oidc/clients")
def oidc_client_new() -> str:
    """The add form on a page of its own, filled from ``?preset=`` when one is chosen."""
    key = request.args.get("preset", "")
    preset = PRESETS.get(key)
    if preset is None:
        return _add_page(ClientForm())
    flash(translate("admin.oidc.preset_applied", preset=translate(f"admin.oidc.preset.{key}")), "message")
    return _add_page(ClientForm(name=preset.name, scopes=preset.scopes, preset=key), preset)


@bp.post("/oidc/clients")
def oidc_client_add() -> tuple[str, int] | str:
    typed = _typed(request.form, ClientForm(client_id=request.form.get("client_id", "").strip()))
    svc = services()
    try:
        made = add_client(
            svc.oidc.clients,
            svc.audit,
            typed.client_id,
            typed.name,
            _lines(typed.redirect_uris),
            public=typed.public,
            scopes=list(typed.scopes),
            allowed_groups=_lines(typed.groups),
            frontchannel_logout_uri=typed.frontchannel_logout_uri,
            ad_groups=svc.directory.groups,
            actor=current_admin().username,
            ip=request.remote_addr,
        )
    except OidcClientError as exc:  # the form again, with what was typed and why it was refused
        return _add_page(_refused(typed, exc), PRESETS.get(typed.preset)), 400
    return _secret_page(made, rotated=False, preset_key=typed.preset)


@bp.route("/oidc/clients/edit", methods=["GET", "POST"])
def oidc_client_edit() -> str | Response | tuple[str, int]:
    client_id = request.args.get("client_id", "")
    if request.method == "GET":
        shown = _client(client_id)
        return _edit_page(shown, _stored(shown))
    svc = services()
    # Removed since the page was opened (or never there): update_client refuses it, and audits the attempt.
    client = svc.oidc.clients.get(client_id) if client_id else None
    start = ClientForm(mode="edit", client_id=client_id, public=client.public if client else False)
    typed = _typed(request.form, start)
    try:
        saved = update_client(
            svc.oidc.clients,
            svc.audit,
            client_id,
            typed.name,
            _lines(typed.redirect_uris),
            scopes=list(typed.scopes),
            allowed_groups=_lines(typed.groups),
            frontchannel_logout_uri=typed.frontchannel_logout_uri,
            ad_groups=svc.directory.groups,
            actor=current_admin().username,
            ip=request.remote_addr,
        )
    except OidcClientError as exc:
        if client is None or exc.code == "unknown_client":
            _flash_refusal(exc)
            return redirect(url_for("admin.sps", _anchor="oidc-clients"))
        return _edit_page(client, _refused(typed, exc)), 400
    flash(translate("admin.oidc.saved", name=_label(saved)), "message")
    return redirect(url_for("admin.sps", _anchor="oidc-clients"))


@bp.get("/oidc/clients/secret")
def oidc_client_secret_confirm() -> str | Response:
    client = _client(request.args.get("client_id", ""))
    if client.public:
        flash(translate("admin.oidc.rotate_public", name=_label(client)), "error")
        return redirect(url_for("admin.sps", _anchor="oidc-clients"))
    return render_template("admin/oidc_client_rotate.html", client=client)


@bp.post("/oidc/clients/secret")
def oidc_client_secret() -> str | Response:
    svc = services()
    try:
        made = rotate_secret(
            svc.oidc.clients,
            svc.audit,
            request.form.get("client_id", ""),
            actor=current_admin().username,
            ip=request.remote_addr,
        )
    except OidcClientError as exc:
        # Removed since the confirmation page was opened, or a public client asked for by hand (the pages offer
        # it no new secret): refused and audited, and said where the clients are listed.
        _flash_refusal(exc)
        return redirect(url_for("admin.sps", _anchor="oidc-clients"))
    return _secret_page(made, rotated=True)


@bp.get("/oidc/clients/delete")
def oidc_client_delete_confirm() -> str:
    client = _client(request.args.get("client_id", ""))
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
        _flash_refusal(exc)
    else:
        flash(translate("admin.oidc.removed", name=_label(removed)), "message")
    return redirect(url_for("admin.sps", _anchor="oidc-clients"))


# -- helpers -----------------------------------------------------------------------------------------------


def _client(client_id: str) -> OidcClient:
    client = services().oidc.clients.get(client_id) if client_id else None
    if client is None:
        abort(404)
    return client


def _reason(exc: OidcClientError) -> str:
    """The refusal in the page's language (``str(exc)`` is its English, for the shell and the audit trail)."""
    return translate(exc.key, **exc.params)


def _flash_refusal(exc: OidcClientError) -> None:
    """A refusal said on the list of clients, where the refused page sends the admin."""
    if exc.code == "unknown_client":  # most likely removed since the page was opened
        flash(translate("admin.oidc.missing", client_id=exc.params["client_id"]), "error")
    else:
        flash(translate("oidc.error.not_done", reason=_reason(exc)), "error")


def _refused(typed: ClientForm, exc: OidcClientError) -> ClientForm:
    """The form as typed, with why it was refused and the field at fault."""
    return replace(typed, error=translate("admin.oidc.not_saved", reason=_reason(exc)), error_field=exc.field)


def _label(client: OidcClient) -> str:
    return f"{client.name} ({client.client_id})"


def _stored(client: OidcClient) -> ClientForm:
    return ClientForm(
        mode="edit",
        client_id=client.client_id,
        name=client.name,
        redirect_uris="\n".join(client.redirect_uris),
        public=client.public,
        scopes=client.scopes,
        groups="\n".join(client.allowed_groups),
        frontchannel_logout_uri=client.frontchannel_logout_uri or "",
    )


def _typed(form: MultiDict, start: ClientForm) -> ClientForm:
    """The posted form over ``start`` (which holds what the form does not post: the edited client's id and
    kind). The form always posts openid (it cannot be left out): a post with no scope at all was not made by
    the page, and its empty list is refused, never read as "every scope"."""
    return replace(
        start,
        name=form.get("name", "").strip(),
        redirect_uris=form.get("redirect_uris", ""),
        public=form.get("kind") == "public" if start.mode == "add" else start.public,
        scopes=tuple(form.getlist("scopes")),
        groups=form.get("groups", ""),
        frontchannel_logout_uri=form.get("frontchannel_logout_uri", "").strip(),
        preset=form.get("preset", "") if start.mode == "add" else "",
    )


def _add_page(values: ClientForm, preset: OidcPreset | None = None) -> str:
    return render_template(
        "admin/oidc_client_add.html",
        oidc_form=values,
        oidc_presets=PRESETS,
        scope_choices=SCOPES,
        preset=preset,
    )


def _secret_page(made: NewClient, *, rotated: bool, preset_key: str = "") -> str:
    """The answer to a registration or a new secret: the secret, shown this once, and a preset's notes."""
    preset = PRESETS.get(preset_key)
    return render_template(
        "admin/oidc_client_added.html",
        client=made.client,
        secret=made.secret,
        issuer=services().settings.oidc_issuer,
        rotated=rotated,
        preset=preset,
        preset_key=preset_key or None,
        preset_notes=_preset_notes(preset_key, preset, made.client) if preset else [],
    )


def _edit_page(client: OidcClient, values: ClientForm) -> str:
    return render_template("admin/oidc_client_edit.html", client=client, oidc_form=values, scope_choices=SCOPES)


def _preset_notes(key: str, preset: OidcPreset, client: OidcClient) -> list[str]:
    """The preset's notes in the page's language, as the console says them; the preset's own English where the
    catalogue has no words for a note."""
    notes = []
    for n, english in enumerate(preset.notes, start=1):
        words_key = f"admin.oidc.preset.{key}.note{n}"
        words = translate(words_key, entity_id=client.entity_id)
        notes.append(english.format(entity_id=client.entity_id) if words == words_key else words)
    return notes


def _lines(text: str) -> list[str]:
    """One value a line: commas separate nothing, since a group's DN has them."""
    return [line.strip() for line in text.splitlines() if line.strip()]
