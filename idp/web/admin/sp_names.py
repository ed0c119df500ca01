"""What the console calls an SP: the admin's own name for it, else the name its metadata gives
(mdui:DisplayName, OrganizationDisplayName), else its entityID. Pages show this name first and the entityID
as small secondary text."""

from __future__ import annotations

from idp.sps.errors import SpRegistryError
from idp.sps.registry import SpEntry
from idp.web.services import services


def display_name(entry: SpEntry) -> str:
    return entry.policy.display_name or entry.name or entry.entity_id


def sp_names() -> dict[str, str]:
    """entityID -> display name of every registered SP; empty when the registry cannot be read (the pages
    that use it are still worth reading then, with entityIDs)."""
    try:
        entries = services().registry.list()
    except SpRegistryError:
        return {}
    return {e.entity_id: display_name(e) for e in entries}
