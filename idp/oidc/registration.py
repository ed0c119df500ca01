"""Registering and removing OpenID Connect clients with their audit rows: the one code path of the console
and of `idp oidc client`, so both leave the same trail (who, from where, the client before or after)."""

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
) -> NewClient:
    """Register the client and audit it; the secret is in the answer only, never in the audit row. A
    refused registration is audited too, and ``OidcClientError`` says which value is wrong."""
    try:
        made = store.add(client_id, name, redirect_uris, public=public, scopes=scopes, allowed_groups=allowed_groups)
    except OidcClientError as exc:
        asked = {"client_id": client_id, "name": name, "public": public, "redirect_uris": redirect_uris}
        audit.record_change(
            "oidc_client_added", actor=actor, ip=ip, sp=None, after=asked, result="refused", note=str(exc)
        )
        raise
    c = made.client
    audit.record_change(
        "oidc_client_added",
        actor=actor,
        ip=ip,
        sp=c.entity_id,
        after={
            "client_id": c.client_id,
            "name": c.name,
            "public": c.public,
            "redirect_uris": list(c.redirect_uris),
            "scopes": list(c.scopes),
            "allowed_groups": list(c.allowed_groups),
        },
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
