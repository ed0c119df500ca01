"""The mail-group part of the plan (idp.provisioning.group_sync.plan_groups), from AD's groups, the provider's
groups and our records; carried out against AD and the emulator in test_sync_changes.py."""

from __future__ import annotations

import uuid

from idp.directory.listing import ListedGroup
from idp.provisioning.group_sync import GroupInSync, plan_groups
from idp.provisioning.provider import MailGroup
from idp.provisioning.records import GroupRecord

ANN, BO, CY = (uuid.UUID(int=n) for n in (1, 2, 3))
ADDRESSES = {str(ANN): "ann@example.com", str(BO): "bo@example.com"}  # Cy has no active mailbox
SALES = uuid.UUID(int=100)


def ad_group(mail: str = "sales@example.com", members: frozenset[uuid.UUID] = frozenset({ANN, BO, CY})) -> ListedGroup:
    return ListedGroup(SALES, "CN=Sales,DC=corp", "Sales", mail, members)


def test_a_new_group_is_created_with_the_members_that_have_mailboxes() -> None:
    actions, in_sync = plan_groups([ad_group()], [], {}, ADDRESSES)
    assert [(a.kind, a.email, a.spec.members if a.spec else None) for a in actions] == [
        ("group_create", "sales@example.com", ("ann@example.com", "bo@example.com"))
    ]
    assert in_sync == []


def test_a_matching_group_needs_only_its_record_and_a_changed_one_an_update() -> None:
    same = MailGroup(email="Sales@example.com", name="Sales", members=("bo@example.com", "ann@example.com"), id="g1")
    assert plan_groups([ad_group()], [same], {}, ADDRESSES) == ([], [GroupInSync(str(SALES), same.email, "g1")])
    fewer = MailGroup(email="sales@example.com", name="Sales", members=("ann@example.com",), id="g1")
    actions, _ = plan_groups([ad_group()], [fewer], {}, ADDRESSES)
    assert [(a.kind, a.reason, a.group_id) for a in actions] == [("group_update", "members changed in AD", "g1")]


def test_only_recorded_groups_are_deleted_and_a_moved_address_replaces_the_group() -> None:
    ours = MailGroup(email="old@example.com", name="Sales", members=(), id="g1")
    by_hand = MailGroup(email="all@example.com", name="All", members=(), id="g2")
    records = {str(SALES): GroupRecord(str(SALES), "old@example.com", "g1")}
    actions, _ = plan_groups([ad_group("new@example.com")], [ours, by_hand], records, ADDRESSES)
    assert sorted((a.kind, a.email) for a in actions) == [
        ("group_create", "new@example.com"),
        ("group_delete", "old@example.com"),
    ]
    actions, _ = plan_groups([], [ours, by_hand], records, ADDRESSES)
    assert [(a.kind, a.email, a.reason) for a in actions] == [
        ("group_delete", "old@example.com", "no longer a mail-enabled group in scope")
    ]
