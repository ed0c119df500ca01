# ruff: noqa: F811 - pytest hands the imported fixtures in as arguments of the same names
"""Who the sync gives a mailbox by default, against the real Samba AD DC and the Alibaba Mail emulator: people
who can sign in, never built-in or service accounts; expired accounts frozen and thawed like disabled ones;
people AD gives no address listed as "cannot provision"; and what `idp sync --dry-run` says about them."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from idp.demo.alimail_emulator import RunningEmulator
from idp.demo.samba_dc import SambaDC
from idp.directory.listing import DirectoryListing
from idp.provisioning.alimail import AlimailProvider
from idp.provisioning.sync import EXIT_OK, MailboxSync
from idp.settings import LdapSettings
from idp.store.db import Database
from idp.store.models import utcnow
from tests.provisioning.sync_lab import SyncLab
from tests.provisioning.test_sync import (  # noqa: F401 - the fixtures of the sync tests
    SyncFactory,
    db,
    idp_sync,
    lab,
    mailbox,
    make_sync,
    provisioning,
    write_config,
    writes,
)

pytestmark = pytest.mark.ad

DAY = 86400


def test_the_default_scope_skips_built_in_and_service_accounts_with_the_reason(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory
) -> None:
    lab.add_user("Pia")
    dns = lab.add_user("Dns", username=f"dns-{lab.tag}")
    spn = lab.add_user("Svc", servicePrincipalName=f"HTTP/app-{lab.tag}.corp.example.com")
    shared = lab.add_user("Shared")
    nested = lab.add_group(f"Shared Logons {lab.tag}", (shared.dn,))
    no_mailbox = lab.add_group(f"No Mailbox {lab.tag}", (nested,))
    # The whole domain, as a new admin's first configuration has it.
    sync = make_sync(provisioning(lab, emulator, scope_base_dns=[], no_mailbox_group=no_mailbox))

    plan = sync.plan()
    skipped = {s.username: s.reason for s in plan.skipped}
    assert skipped["Administrator"] == "built-in account (RID 500)"
    assert skipped["Guest"] == "built-in account (RID 501)"
    assert skipped["krbtgt"] == "built-in account (RID 502)"
    assert skipped["svc-sso"] == "this service's own LDAP account (bind_dn)"
    assert skipped[dns.username] == "DNS service account (dns-*)"
    assert skipped[spn.username] == "service account (has servicePrincipalName)"
    assert skipped[shared.username] == "in the no-mailbox group"
    assert skipped["dave.disabled"] == "disabled in AD"
    assert skipped["erin.expired"] == "expired in AD (accountExpires)"
    planned = {a.username for a in plan.actions}
    assert planned.isdisjoint(skipped)
    assert "alice" in planned  # the demo's people are people


def test_an_expired_account_is_frozen_and_thawed_when_renewed(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory
) -> None:
    kai = lab.add_user("Kai")
    lab.add_user("Lin")
    lab.add_user("Mo")
    sync = make_sync(provisioning(lab, emulator))
    sync.apply(sync.plan())

    lab.expire(kai, time.time() - DAY)
    report = sync.apply(sync.plan(incremental=True))
    assert [(o.action.kind, o.action.reason, o.ok) for o in report.outcomes] == [
        ("freeze", "expired in AD (accountExpires)", True)
    ]
    assert mailbox(emulator, kai.mail)["status"] == "FREEZE"
    assert sync.apply(sync.plan()).outcomes == []  # frozen stays frozen

    lab.renew(kai)
    report = sync.apply(sync.plan(incremental=True))
    assert [(o.action.kind, o.ok) for o in report.outcomes] == [("unfreeze", True)]
    assert mailbox(emulator, kai.mail)["status"] == "NORMAL"


def test_an_account_that_expires_later_is_frozen_by_an_incremental_run_though_ad_did_not_change(
    lab: SyncLab,
    emulator: RunningEmulator,
    ldap_settings: LdapSettings,
    db: Database,
) -> None:
    """An expiry date passing changes nothing in AD (no uSNChanged); the listing's clock is moved, not slept."""
    ned = lab.add_user("Ned")
    lab.add_user("Oda")
    lab.add_user("Pat")
    lab.expire(ned, time.time() + 2 * DAY)
    settings = provisioning(lab, emulator)
    assert settings.alimail is not None
    later = time.time() + 3 * DAY
    with AlimailProvider(settings.alimail) as provider:
        with DirectoryListing(ldap_settings) as listing:
            sync = MailboxSync(settings, listing, provider, db)
            assert sync.apply(sync.plan()).applied == 3  # not expired yet: a mailbox like anyone's
            assert sync.plan(incremental=True).actions == []
        with DirectoryListing(ldap_settings, clock=lambda: later) as listing:
            sync = MailboxSync(settings, listing, provider, db, clock=lambda: utcnow() + timedelta(days=3))
            plan = sync.plan(incremental=True)
            assert plan.incremental
            assert [(a.kind, a.username) for a in plan.actions] == [("freeze", ned.username)]


def test_a_person_ad_gives_no_address_is_listed_as_cannot_provision_and_never_sent(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory
) -> None:
    named = lab.add_user("Quin", with_mail=False)
    nameless = lab.add_user("Ray", with_mail=False, username=f"r{lab.tag}x")
    lab.set(nameless, sn=[])  # no surname: the pattern below cannot be filled
    sync = make_sync(provisioning(lab, emulator, address_pattern="{given_name}.{surname}@{mail_domain}"))

    plan = sync.plan()
    assert [(a.kind, a.email) for a in plan.writes] == [("create", f"Quin.Tester@{emulator.emulator.mail_domain}")]
    assert [(a.username, a.reason) for a in plan.cannot_provision] == [
        (
            nameless.username,
            f"{nameless.username} has no mail address: AD has no mail for them, and the address pattern "
            "{given_name}.{surname}@{mail_domain} needs their sn",
        )
    ]
    report = sync.apply(plan)
    assert report.exit_code == EXIT_OK
    assert [u["email"].lower() for u in emulator.emulator.users()] == [f"quin.tester@{emulator.emulator.mail_domain}"]
    assert named.username not in {a.username for a in plan.cannot_provision}


def test_dry_run_says_first_that_the_brake_would_trip_lists_skipped_and_keeps_addresses_whole_at_80_columns(
    tmp_path: Path, samba_dc: SambaDC, lab: SyncLab, emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_address = f"christopher.montgomery-fitzgerald.{lab.tag}@{emulator.emulator.mail_domain}"
    sol, tam, una = (lab.add_user(name) for name in ("Sol", "Tam", "Una"))
    lab.add_user("Vera", mail=long_address)
    lab.add_user("Wyn", servicePrincipalName=f"HTTP/wyn-{lab.tag}")
    config = write_config(tmp_path, samba_dc, lab, emulator, freeze_brake_share=0.1)
    assert idp_sync(config).wait(timeout=60) == 0  # four mailboxes
    lab.disable(sol)
    lab.disable(tam)
    lab.set(una, title="Head of Long Titles That Wrap Around In Narrow Terminals", department="Sales/EMEA/North")
    before = len(emulator.emulator.calls)
    monkeypatch.setenv("COLUMNS", "80")

    proc = idp_sync(config, "--dry-run", "--show-skipped")
    text, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = text.splitlines()
    brake_line = next(i for i, line in enumerate(lines) if "would trip the safety brake" in line)
    table_line = next(i for i, line in enumerate(lines) if "Sync plan" in line)
    assert brake_line < table_line, text
    assert max(len(line) for line in lines) <= 80, text
    assert any(una.mail in line for line in lines), text  # each address whole, on one line
    assert "Skipped" in text and "servicePrincipalName" in text, text
    assert writes(emulator, before) == []

    as_json = json.loads(idp_sync(config, "--dry-run", "--json").communicate(timeout=60)[0])
    assert "2 of 4" in as_json["brake"] and as_json["counts"]["freeze"] == 2
    assert [s["reason"] for s in as_json["skipped"]] == ["service account (has servicePrincipalName)"]
