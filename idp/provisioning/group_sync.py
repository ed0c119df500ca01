"""Mail-enabled AD groups as the provider's mail groups (distribution lists): the sync's plan for groups.

A group with a ``mail`` address in scope becomes a mail group at that address whose members are the
mailboxes of the people in it, nested groups flattened (people without an active mailbox are left out:
mail to the list must not bounce). A group is matched to its mail group by the objectGUID in our record,
so a new address in AD moves the list (the provider keeps an address for life: a new group is made and
ours at the old address deleted). Only groups recorded as made by the sync are ever deleted, never a list
made by hand at the provider.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from idp.codes import MailGroupAction
from idp.directory.listing import ListedGroup
from idp.provisioning.provider import MailGroup, MailGroupSpec
from idp.provisioning.records import GroupRecord


@dataclass(frozen=True)
class GroupAction:
    """One write to a mail group; shaped like a mailbox Action (kind, username, email, reason) so that reports
    and the audit trail show both alike. ``username`` is the group's name."""

    kind: MailGroupAction
    guid: str
    username: str
    email: str
    reason: str
    spec: MailGroupSpec | None = None
    group_id: str | None = None

    @property
    def changes(self) -> Mapping[str, Any]:
        """The members the group gets, for people to read."""
        return {"members": ", ".join(self.spec.members) or "(none)"} if self.spec is not None else {}

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.kind,
            "username": self.username,
            "email": self.email,
            "reason": self.reason,
            "changes": {"members": list(self.spec.members)} if self.spec is not None else {},
        }


@dataclass(frozen=True)
class GroupInSync:
    """A mail group that matches AD already; only our record may need writing."""

    guid: str
    email: str
    group_id: str


def plan_groups(
    ad_groups: Iterable[ListedGroup],
    provider_groups: Iterable[MailGroup],
    records: Mapping[str, GroupRecord],
    addresses: Mapping[str, str],
) -> tuple[list[GroupAction], list[GroupInSync]]:
    """What the mail groups need, given ``addresses``: the active mailbox of each person by objectGUID."""
    existing = list(provider_groups)
    by_email = {g.email.lower(): g for g in existing}
    by_id = {g.id: g for g in existing}
    actions: list[GroupAction] = []
    in_sync: list[GroupInSync] = []
    listed: set[str] = set()
    for group in ad_groups:
        guid = str(group.guid)
        listed.add(guid)
        members = tuple(sorted(addresses[str(m)] for m in group.member_guids if str(m) in addresses))
        spec = MailGroupSpec(email=group.mail, name=group.name, members=members)
        record = records.get(guid)
        if record is not None and record.email.lower() != group.mail.lower() and record.group_id in by_id:
            moved = f"address changed in AD to {group.mail}"
            actions.append(GroupAction("group_delete", guid, group.name, record.email, moved, None, record.group_id))
        current = by_email.get(group.mail.lower())
        if current is None:
            actions.append(GroupAction("group_create", guid, group.name, group.mail, "mail-enabled group in AD", spec))
        elif current.members != spec.members or current.name != spec.name:
            why = "members changed in AD" if current.members != spec.members else "name changed in AD"
            actions.append(GroupAction("group_update", guid, group.name, group.mail, why, spec, current.id))
        elif record is None or record.group_id != current.id or record.email.lower() != current.email.lower():
            in_sync.append(GroupInSync(guid, current.email, current.id))
    for guid, record in records.items():
        gone = by_id.get(record.group_id)
        if guid not in listed and gone is not None:
            reason = "no longer a mail-enabled group in scope"
            actions.append(GroupAction("group_delete", guid, gone.name, gone.email, reason, None, gone.id))
    return actions, in_sync
