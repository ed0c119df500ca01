# ruff: noqa: F811 - pytest hands the imported fixtures in as arguments of the same names
"""Renames, deletions and groups reaching the mailboxes, against the real Samba AD DC and the Alibaba Mail
emulator: a rename updates the same mailbox, a deletion freezes it at the next incremental run and deletes it
after the grace period (an injected clock, not a sleep), a membership-only change reaches the mailboxes and
the mail groups without a full run, and ``proxyAddresses`` become aliases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from idp.audit import AuditTrail
from idp.demo.alimail_emulator import RunningEmulator
from idp.directory.listing import DirectoryListing
from idp.provisioning.alimail import AlimailProvider
from idp.provisioning.records import ProvisioningRecords
from idp.provisioning.sync import EXIT_OK, MailboxSync
from idp.settings import LdapSettings
from idp.store.db import Database
from idp.store.models import utcnow
from tests.provisioning.sync_lab import SyncLab
from tests.provisioning.test_sync import (
    SyncFactory,
    db,  # noqa: F401 - the fixtures of the sync tests
    lab,  # noqa: F401
    mailbox,
    make_sync,  # noqa: F401
    provisioning,
    writes,
)

pytestmark = pytest.mark.ad


def creates(emulator: RunningEmulator, since: int = 0) -> list[str]:
    return [w for w in writes(emulator, since) if w == "POST /v2/users"]


def test_a_new_mail_in_ad_renames_the_same_mailbox(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory, db: Database
) -> None:
    amy = lab.add_user("Amy")
    lab.add_user("Ben")
    lab.add_user("Cy")
    sync = make_sync(provisioning(lab, emulator))
    sync.apply(sync.plan())
    box_id = mailbox(emulator, amy.mail)["id"]

    renamed = f"amy.renamed.{lab.tag}@{emulator.emulator.mail_domain}"
    lab.set(amy, mail=renamed)
    before = len(emulator.emulator.calls)
    plan = sync.plan(incremental=True)
    assert [(a.kind, a.reason, dict(a.changes)) for a in plan.actions] == [
        ("update", "address changed in AD (rename)", {"email": renamed})
    ]
    assert sync.apply(plan).exit_code == EXIT_OK
    assert creates(emulator, before) == []
    assert mailbox(emulator, renamed)["id"] == box_id
    assert len(emulator.emulator.users()) == 3
    record = ProvisioningRecords(db).get(str(plan.actions[0].guid))
    assert record is not None and (record.email, record.mailbox_id) == (renamed, box_id)
    assert sync.plan().actions == []  # a full run agrees: nothing left to do


def test_a_new_account_name_moves_a_pattern_address_on_the_same_mailbox(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory, db: Database
) -> None:
    """Without AD mail the address is username@<mail domain>: a new sAMAccountName is a new address."""
    dan = lab.add_user("Dan", with_mail=False)
    lab.add_user("Eli")
    lab.add_user("Fox")
    sync = make_sync(provisioning(lab, emulator))
    sync.apply(sync.plan())
    domain = emulator.emulator.mail_domain
    box_id = mailbox(emulator, f"{dan.username}@{domain}")["id"]

    new_name = f"d{lab.tag}new"
    lab.set(dan, sAMAccountName=new_name)
    before = len(emulator.emulator.calls)
    report = sync.apply(sync.plan(incremental=True))
    assert [(o.action.kind, o.action.username, o.ok) for o in report.outcomes] == [("update", new_name, True)]
    assert creates(emulator, before) == []
    assert mailbox(emulator, f"{new_name}@{domain}")["id"] == box_id
    assert [r.username for r in ProvisioningRecords(db).all().values() if r.mailbox_id == box_id] == [new_name]


def test_a_deleted_account_is_frozen_by_the_next_incremental_run_and_deleted_after_the_grace_period(
    lab: SyncLab, emulator: RunningEmulator, ldap_settings: LdapSettings, db: Database
) -> None:
    gil = lab.add_user("Gil")
    for name in ("Hy", "Io", "Jo"):
        lab.add_user(name)
    settings = provisioning(lab, emulator, delete_enabled=True, delete_grace_days=30)
    assert settings.alimail is not None
    now = [utcnow()]
    with DirectoryListing(ldap_settings) as listing, AlimailProvider(settings.alimail) as provider:
        sync = MailboxSync(settings, listing, provider, db, AuditTrail(db), clock=lambda: now[0])
        sync.apply(sync.plan())

        lab.delete(gil)
        plan = sync.plan(incremental=True)
        assert plan.incremental and plan.notes == []
        assert [(a.kind, a.username, a.reason) for a in plan.actions] == [("freeze", gil.username, "deleted in AD")]
        assert sync.apply(plan).exit_code == EXIT_OK
        assert mailbox(emulator, gil.mail)["status"] == "FREEZE"

        now[0] += timedelta(days=29)  # within the grace period: nothing
        assert sync.plan(incremental=True).actions == []
        assert sync.plan().actions == []

        now[0] += timedelta(days=2)
        plan = sync.plan(incremental=True)
        assert [(a.kind, a.username, a.reason) for a in plan.actions] == [
            ("delete", gil.username, "frozen for more than 30 days")
        ]
        assert sync.apply(plan).exit_code == EXIT_OK
    assert gil.mail not in {u["email"] for u in emulator.emulator.users()}
    assert len(emulator.emulator.users()) == 3
    assert gil.username not in {r.username for r in ProvisioningRecords(db).all().values()}
    deletion = AuditTrail(db).recent(event="provision", username=gil.username)[0]
    assert (deletion.result, deletion.reason) == ("success", "delete")


def test_leaving_the_scope_group_reaches_the_mailbox_at_the_next_incremental_run(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory
) -> None:
    """Removing someone from a (nested) group changes only the group in AD, never the person."""
    kim, lou, max_ = (lab.add_user(name) for name in ("Kim", "Lou", "Max"))
    team = lab.add_group(f"Team {lab.tag}", (kim.dn, lou.dn))
    staff = lab.add_group(f"Staff {lab.tag}", (team, max_.dn))
    sync = make_sync(provisioning(lab, emulator, scope_group_dn=staff))
    assert sync.apply(sync.plan()).applied == 3
    assert sync.plan(incremental=True).actions == []

    lab.remove_member(team, kim.dn)
    plan = sync.plan(incremental=True)
    assert plan.incremental
    assert [(a.kind, a.username, a.reason) for a in plan.actions] == [("freeze", kim.username, "out of scope")]
    sync.apply(plan)
    assert mailbox(emulator, kim.mail)["status"] == "FREEZE"

    lab.add_member(team, kim.dn)
    assert [a.kind for a in sync.plan(incremental=True).actions] == ["unfreeze"]


def test_a_mail_enabled_group_becomes_a_mail_group_with_its_nested_members_and_follows_changes(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory, db: Database
) -> None:
    ann, bo, cal, dee = (lab.add_user(name) for name in ("Ann", "Bo", "Cal", "Dee"))
    no_mail = lab.add_user("Eve", with_mail=False, username=f"e{lab.tag}x")
    lab.set(no_mail, sn=[])
    domain = emulator.emulator.mail_domain
    inner = lab.add_group(f"Platform {lab.tag}", (bo.dn, cal.dn, no_mail.dn))
    sales = f"sales-{lab.tag}@{domain}"
    lab.add_group(f"Sales List {lab.tag}", (ann.dn, inner), mail=sales)
    settings = provisioning(lab, emulator, address_pattern="{surname}@{mail_domain}")
    sync = make_sync(settings)

    plan = sync.plan()
    assert [(a.kind, a.email) for a in plan.group_actions] == [("group_create", sales)]
    assert sync.apply(plan).exit_code == EXIT_OK
    group = next(g for g in emulator.emulator.groups() if g["email"] == sales)
    assert sorted(group["members"]) == sorted([ann.mail, bo.mail, cal.mail])  # nested flattened; no address, no member
    assert sync.apply(sync.plan(incremental=True)).outcomes == []  # steady: nothing to write

    lab.add_member(inner, dee.dn)  # a membership-only change in a nested group
    lab.disable(bo)
    report = sync.apply(sync.plan(incremental=True))
    assert sorted((o.action.kind, o.ok) for o in report.outcomes) == [("freeze", True), ("group_update", True)]
    group = next(g for g in emulator.emulator.groups() if g["email"] == sales)
    assert sorted(group["members"]) == sorted([ann.mail, cal.mail, dee.mail])
    assert "group_update" in {row.reason for row in AuditTrail(db).recent(event="provision")}


class AlimailWithoutGroups(AlimailProvider):
    """The real client, declaring what a provider without a mail-group API declares."""

    supports_groups = False


def test_a_provider_without_mail_groups_says_so_once_instead_of_failing(
    lab: SyncLab, emulator: RunningEmulator, ldap_settings: LdapSettings, db: Database
) -> None:
    fay = lab.add_user("Fay")
    lab.add_group(f"List {lab.tag}", (fay.dn,), mail=f"list-{lab.tag}@{emulator.emulator.mail_domain}")
    settings = provisioning(lab, emulator)
    assert settings.alimail is not None
    with DirectoryListing(ldap_settings) as listing, AlimailWithoutGroups(settings.alimail) as provider:
        sync = MailboxSync(settings, listing, provider, db)
        plan = sync.plan()
        assert plan.group_actions == []
        assert plan.notes == ["the mail provider has no mail groups: 1 mail-enabled AD group(s) are not synced"]
        assert sync.apply(plan).exit_code == EXIT_OK
    assert emulator.emulator.groups() == []


def test_secondary_proxy_addresses_become_the_mailbox_aliases(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory
) -> None:
    domain = emulator.emulator.mail_domain
    gus = lab.add_user("Gus")
    lab.set(gus, proxyAddresses=[f"SMTP:{gus.mail}", f"smtp:gus.alias.{lab.tag}@{domain}"])
    sync = make_sync(provisioning(lab, emulator))
    sync.apply(sync.plan())
    assert mailbox(emulator, gus.mail)["emailAliases"] == [f"gus.alias.{lab.tag}@{domain}"]

    lab.set(gus, proxyAddresses=[f"SMTP:{gus.mail}", f"smtp:gus.other.{lab.tag}@{domain}"])
    plan = sync.plan(incremental=True)
    assert [(a.kind, dict(a.changes)) for a in plan.actions] == [
        ("update", {"aliases": (f"gus.other.{lab.tag}@{domain}",)})
    ]
    sync.apply(plan)
    assert mailbox(emulator, gus.mail)["emailAliases"] == [f"gus.other.{lab.tag}@{domain}"]
    assert sync.plan().actions == []
