"""Registering, changing and removing OpenID Connect clients with their audit rows: the one code path of the
console and of `idp oidc client`, so both leave the same trail (who, from where, the client before and
after). A secret is in the answer only, never in an audit row."""

from __future__ import annotations

from idp.audit import AuditTrail
from idp.oidc.clients import ClientStore, NewClient, OidcClient, OidcClientError


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
) -> NewClient:
    """Register the client and audit it. A refused registration is audited too, and ``OidcClientError``
    says which value is wrong."""
    try:
        made = store.add(
            client_id,
            name,
            redirect_uris,
            public=public,
            scopes=scopes,
            allowed_groups=allowed_groups,
            frontchannel_logout_uri=frontchannel_logout_uri,
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
) -> OidcClient:
    """Change a registered client's name, redirect URIs, scopes, allowed groups and front-channel logout
    URI, audited with the client before and after; a refused change is audited and raises OidcClientError."""
    before = store.get(client_id)
    if before is None:
        raise OidcClientError(f"no OpenID Connect client {client_id!r} is registered")
    try:
        after = store.update(
            client_id,
            name,
            redirect_uris,
            scopes=scopes,
            allowed_groups=allowed_groups,
            frontchannel_logout_uri=frontchannel_logout_uri,
        )
    except OidcClientError as exc:
        audit.record_change(
            "oidc_client_changed",
            actor=actor,
            ip=ip,
            sp=before.entity_id,
            before=_shown(before),
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
    """A new secret for a confidential client (the old one stops working at once), audited without it."""
    made = store.new_secret(client_id)
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
    """Unregister the client and audit it; ``OidcClientError`` when no such client is registered."""
    before = store.get(client_id)
    if before is None or not store.remove(client_id):
        raise OidcClientError(f"no OpenID Connect client {client_id!r} is registered")
    audit.record_change(
        "oidc_client_removed",
        actor=actor,
        ip=ip,
        sp=before.entity_id,
        before={"client_id": client_id, "name": before.name},
    )
    return before


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
