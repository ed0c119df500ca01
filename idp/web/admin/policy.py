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
from idp.directory.groups import GroupNotResolved, resolve_group
from idp.person import GroupRef
from idp.sps import presets
from idp.sps.errors import PolicyInvalidError, SpRegistryError
from idp.sps.policy import SpPolicy
from idp.sps.registry import SpEntry
from idp.sps.service import SpService
from idp.sps.vocabulary import CATALOGUE, FORMAT_URIS, ROLE_ATTRIBUTE, ROLE_SESSION_NAME_ATTRIBUTE, is_uri_name
from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.i18n import translate
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
    resolved, group_errors = _resolve_groups(raw)
    if group_errors:
        return _render(entry, raw, errors=group_errors), 400
    try:
        saved = SpService.of(services()).update_policy(
            entry.entity_id, resolved, actor=current_admin().username, ip=request.remote_addr
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
        "relay_state_allowed": [
            line.strip() for line in form.get("relay_state_allowed", "").splitlines() if line.strip()
        ],
        "mfa": form.get("mfa") or "optional",
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
                message = _in_words(f"admin.policy.invalid.rule.{field}", message, error)
            else:
                field = str(loc[0])
                message = _in_words(_message_key(error), message, error)
                if field == "roles" and len(loc) > 1 and isinstance(loc[1], int):
                    message = translate("admin.policy.row", row=str(loc[1] + 1)) + " " + message
            errors[field] = f"{errors[field]}; {message}" if field in errors else message
        return errors
    return {"policy": translate("admin.policy.save_refused")}


def _message_key(error: Any) -> str:
    """The catalogue key for one of SpPolicy's complaints: a field's own rule (a value error) is keyed by the
    field it is about, a type or range error by its kind, whichever field it is in."""
    if error["type"] == "value_error":
        return f"admin.policy.invalid.{next(str(p) for p in reversed(error['loc']) if isinstance(p, str))}"
    return f"admin.policy.invalid.{error['type']}"


def _in_words(key: str, english: str, error: Any) -> str:
    """The complaint in the page's language; SpPolicy's own English when the catalogue has no words for it."""
    params = {name: str(value) for name, value in (error.get("ctx") or {}).items() if name != "error"}
    text = translate(key, value=str(error.get("input", "")), **params)
    return english if text == key else text


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
    # Role mappings mean something only to Alibaba Cloud's role-based SSO: the section is shown for a policy
    # that has some (so they can be read and removed) or once a preset that maps roles is chosen.
    show_roles = bool(roles) or any(_maps_roles(key) for key in (state.get("preset"), chosen))
    return render_template(
        "admin/policy.html",
        entry=entry,
        v=state,
        errors=errors or {},
        catalogue=CATALOGUE,
        formats=FORMAT_URIS,
        role_rows=roles + [{"group": "", "role_arn": "", "provider_arn": ""}] * BLANK_ROLE_ROWS,
        show_roles=show_roles,
        receives=_receives(state),
        group_problems=_group_problems(state),
        encryption_warning=bool(state.get("encrypt_assertion"))
        and not services().saml_server.can_encrypt(entry.entity_id),
        presets=presets.PRESETS,
        preset=presets.PRESETS.get(chosen) if chosen else None,
        params=params or {},
        preset_errors=preset_errors or {},
        applied=applied,
        provider=side,
        idp_metadata_url=services().settings.server.base_url.rstrip("/") + "/saml/metadata",
        sps_url=url_for("admin.sps") if "admin.sps" in current_app.view_functions else None,
    )


def _maps_roles(preset_key: str | None) -> bool:
    preset = presets.PRESETS.get(preset_key) if preset_key else None
    return preset is not None and any(p.name == "roles" for p in preset.params)


def _receives(state: dict[str, Any]) -> dict[str, Any]:
    """The NameID rule and the attributes (by SAML Name) this policy releases, as the response side builds them."""
    fmt = state["nameid_format"]  # every state, a dumped policy or the form shaped as one, has every field
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


def _resolve_groups(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The form with every group it names turned into the identity of the one security group it means, and,
    by field, why some cannot be: a name two OUs share, or a distribution group, must not be saved as if it
    were the group the admin had in mind."""
    errors: dict[str, list[str]] = {}
    # AD is asked once per form, and a failure is remembered: with AD down, asking again for every group
    # would make the admin wait a full connect timeout per group.
    known: list[Any] | None = None
    down: DirectoryError | None = None

    def identity(text: str, field: str) -> str:
        nonlocal known, down
        if GroupRef.parse(text).sid:
            return text  # already an identity (the form shows stored groups as they are stored)
        if known is None and down is None:
            try:
                known = services().directory.groups()
            except DirectoryError as exc:
                down = exc
        if down is not None:
            errors.setdefault(field, []).append(
                translate("admin.policy.groups_unchecked", error=down.detail or down.reason)
            )
            return text
        try:
            return str(resolve_group(text, known or []))
        except GroupNotResolved as exc:
            errors.setdefault(field, []).append(str(exc))
        return text

    resolved = {
        **raw,
        "allowed_groups": [identity(g, "allowed_groups") for g in raw["allowed_groups"]],
        "roles": [{**r, "group": identity(r["group"], "roles") if r["group"] else ""} for r in raw["roles"]],
    }
    return resolved, {field: "; ".join(messages) for field, messages in errors.items()}


def _group_problems(state: dict[str, Any]) -> dict[str, Any]:
    """The stored groups that grant nothing: gone from AD, a distribution group, or a bare name stored before
    groups were identities that no longer names exactly one security group."""
    named = list(dict.fromkeys([*state.get("allowed_groups", []), *(r["group"] for r in state.get("roles") or [])]))
    if not named:
        return {"unknown": [], "unchecked": None}
    try:
        known = services().directory.groups()
    except DirectoryError as exc:
        return {"unknown": [], "unchecked": exc.detail or exc.reason}
    problems = []
    for text in named:
        if not text:
            continue
        try:
            resolve_group(text, known)
        except GroupNotResolved as exc:
            problems.append(f"{GroupRef.parse(text).label}: {exc}")
    return {"unknown": problems, "unchecked": None}


def _warnings(entry: SpEntry, policy: SpPolicy) -> list[str]:
    out = []
    problems = _group_problems(_state(policy))
    if problems["unknown"]:
        out.append(translate("admin.policy.unknown_groups", groups=", ".join(problems["unknown"])))
    if problems["unchecked"]:
        out.append(translate("admin.policy.groups_unchecked", error=problems["unchecked"]))
    if policy.encrypt_assertion and not services().saml_server.can_encrypt(entry.entity_id):
        out.append(translate("admin.policy.no_encryption_cert"))
    return out
