"""Registering, changing and removing OpenID Connect clients with their audit rows: the one code path of the
console and of `idp oidc client`, so both leave the same trail (who, from where, the client before and
after), refusals included. A secret is in the answer only, never in an audit row.

Allowed groups are what an SP policy's are: each typed group is looked up in AD with the resolver `idp sp` and
the console's policy page use (``idp.directory.groups.resolve_groups``) and stored as the identity of the one
security group it names, its DN and SID; a group AD does not know, a name two security groups share and a
distribution group are refused, named."""

from __future__ import annotations

from collections.abc import Sequence

from idp.audit import AuditTrail
from idp.directory.errors import DirectoryError
from idp.directory.groups import GroupLoader, GroupsNotResolved, resolve_groups
from idp.oidc.clients import (
    ClientStore,
    GroupResolver,
    NewClient,
    OidcClient,
    OidcClientError,
    entity_id_of,
    unchecked_groups,
    unknown_client,
)


def add_client(
    store: ClientStore,
    audit: AuditTrail,
    client_id: str,
    name: str,
    redirect_uris: list[str],
    *,
    public: bool,
    actor: str,
    ip: str | None = None,
    scopes: list[str] | None = None,
    allowed_groups: list[str] | None = None,
    frontchannel_logout_uri: str | None = None,
    ad_groups: GroupLoader | None = None,
) -> NewClient:
    """Register the client and audit it. A refused registration is audited too, and ``OidcClientError``
    says which value is wrong. ``scopes`` None is every scope. ``ad_groups`` reads AD's groups, to resolve
    ``allowed_groups``; without it they are stored unchecked (``idp oidc client add --no-check-groups``)."""
    try:
        made = store.add(
            client_id,
            name,
            redirect_uris,
            public=public,
            scopes=scopes,
            allowed_groups=allowed_groups,
            frontchannel_logout_uri=frontchannel_logout_uri,
            resolve_groups=group_resolver(ad_groups),
        )
    except OidcClientError as exc:
        asked = {"client_id": client_id, "name": name, "public": public, "redirect_uris": redirect_uris}
        audit.record_change(
            "oidc_client_added", actor=actor, ip=ip, sp=None, after=asked, result="refused", note=str(exc)
        )
        raise
    audit.record_change("oidc_client_added", actor=actor, ip=ip, sp=made.client.entity_id, after=_shown(made.client))
    return made


def update_client(
    store: ClientStore,
    audit: AuditTrail,
    client_id: str,
    name: str,
    redirect_uris: list[str],
    *,
    actor: str,
    ip: str | None = None,
    scopes: list[str] | None = None,
    allowed_groups: list[str] | None = None,
    frontchannel_logout_uri: str | None = None,
    ad_groups: GroupLoader | None = None,
) -> OidcClient:
    """Change a registered client's name, redirect URIs, scopes, allowed groups and front-channel logout
    URI, audited with the client before and after; a refused change (an unknown client included) is audited
    and raises OidcClientError. Groups are resolved as ``add_client`` does them, except those the client holds
    already: they stay as stored, without asking AD."""
    before = store.get(client_id)
    try:
        if before is None:
            raise unknown_client(client_id)
        after = store.update(
            client_id,
            name,
            redirect_uris,
            scopes=scopes,
            allowed_groups=allowed_groups,
            frontchannel_logout_uri=frontchannel_logout_uri,
            resolve_groups=group_resolver(ad_groups, kept=before.allowed_groups),
        )
    except OidcClientError as exc:
        audit.record_change(
            "oidc_client_changed",
            actor=actor,
            ip=ip,
            sp=entity_id_of(client_id),
            before=_shown(before) if before is not None else None,
            result="refused",
            note=str(exc),
        )
        raise
    audit.record_change(
        "oidc_client_changed", actor=actor, ip=ip, sp=after.entity_id, before=_shown(before), after=_shown(after)
    )
    return after


def rotate_secret(
    store: ClientStore, audit: AuditTrail, client_id: str, *, actor: str, ip: str | None = None
) -> NewClient:
    """A new secret for a confidential client (the old one stops working at once), audited without it; an
    unknown or public client is refused, audited."""
    try:
        made = store.new_secret(client_id)
    except OidcClientError as exc:
        audit.record_change(
            "oidc_client_secret_rotated",
            actor=actor,
            ip=ip,
            sp=entity_id_of(client_id),
            result="refused",
            note=str(exc),
        )
        raise
    audit.record_change(
        "oidc_client_secret_rotated",
        actor=actor,
        ip=ip,
        sp=made.client.entity_id,
        note="a new client secret was issued; the previous one is refused from now on",
    )
    return made


def remove_client(
    store: ClientStore, audit: AuditTrail, client_id: str, *, actor: str, ip: str | None = None
) -> OidcClient:
    """Unregister the client and audit it; ``OidcClientError`` (audited) when no such client is registered."""
    before = store.get(client_id)
    if before is None or not store.remove(client_id):
        exc = unknown_client(client_id)
        audit.record_change(
            "oidc_client_removed", actor=actor, ip=ip, sp=entity_id_of(client_id), result="refused", note=str(exc)
        )
        raise exc
    audit.record_change(
        "oidc_client_removed",
        actor=actor,
        ip=ip,
        sp=before.entity_id,
        before={"client_id": client_id, "name": before.name},
    )
    return before


def group_resolver(ad_groups: GroupLoader | None, *, kept: Sequence[str] = ()) -> GroupResolver:
    """How typed groups become stored ones: each resolved against AD's groups, read once and only when some
    group needs it. A group in ``kept`` (the client's own, as stored) stays as it is: changing a client's name
    neither asks AD nor undoes groups an admin chose to store unchecked. Without ``ad_groups``, every group is
    stored unchecked."""
    if ad_groups is None:
        return unchecked_groups
    stored_already = set(kept)

    def resolve(typed: list[str]) -> list[str]:
        if all(text in stored_already for text in typed):
            return typed
        try:
            known = list(ad_groups())
        except DirectoryError as exc:
            error = exc.detail or exc.reason
            raise OidcClientError(
                f"cannot check the groups in Active Directory: {error}", "groups_unchecked", field="groups", error=error
            ) from None
        try:
            resolved = iter(resolve_groups([t for t in typed if t not in stored_already], known))
        except GroupsNotResolved as exc:
            raise OidcClientError(
                f"allowed groups refused, nothing stored: {exc}",
                "groups_not_resolved",
                field="groups",
                groups=", ".join(exc.refused),
            ) from None
        return [text if text in stored_already else str(next(resolved)) for text in typed]

    return resolve


def _shown(c: OidcClient) -> dict:
    """What the audit row keeps of a client (never its secret's hash)."""
    return {
        "client_id": c.client_id,
        "name": c.name,
        "public": c.public,
        "redirect_uris": list(c.redirect_uris),
        "scopes": list(c.scopes),
        "allowed_groups": list(c.allowed_groups),
        "frontchannel_logout_uri": c.frontchannel_logout_uri,
    }
