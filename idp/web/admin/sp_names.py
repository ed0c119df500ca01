"""What the console calls an application: for an SP, the admin's own name for it, else the name its metadata
gives (mdui:DisplayName, OrganizationDisplayName), else its entityID; for an OpenID Connect client, its name,
under its entity id ``urn:ad-sso-bridge:oidc:<client_id>``. Pages show this name first and the entity id as
small secondary text."""

from __future__ import annotations

from collections.abc import Sequence

from idp.sps.errors import SpRegistryError
from idp.sps.registry import SpEntry
from idp.web.services import services


def display_name(entry: SpEntry) -> str:
    return entry.policy.display_name or entry.name or entry.entity_id


def sp_names(entries: Sequence[SpEntry] | None = None) -> dict[str, str]:
    """Entity id -> display name of every registered SP and OpenID Connect client: what the audit trail, the
    sessions and the charts name. ``entries``: the SPs when the page has read them already (the metadata is
    then not read twice). Without the SPs when the registry cannot be read (the pages that use it are still
    worth reading then, with entityIDs)."""
    if entries is None:
        try:
            entries = services().registry.list()
        except SpRegistryError:
            entries = []
    clients = services().oidc.clients.all()
    return {e.entity_id: display_name(e) for e in entries} | {c.entity_id: c.name for c in clients}
