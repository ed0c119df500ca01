"""The scheduled sync against the real Samba AD DC and the Alibaba Mail emulator (and scim2-server) over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from idp.audit import AuditTrail
from idp.demo.alimail_emulator import RunningEmulator
from idp.demo.samba_dc import SambaDC
from idp.directory.listing import DirectoryListing
from idp.provisioning.alimail import AlimailProvider
from idp.provisioning.records import ProvisioningRecords
from idp.provisioning.scim import ScimProvider, ScimSettings
from idp.provisioning.sync import EXIT_FAILURES, EXIT_OK, EXIT_REFUSED, MailboxSync
from idp.settings import LdapSettings, ProvisioningSettings, render_toml
from idp.store.db import Database
from tests.provisioning.support import ScimServer, alimail_settings
from tests.provisioning.sync_lab import SyncLab

pytestmark = pytest.mark.ad

WRITES = ("POST", "PATCH", "DELETE")


@pytest.fixture
def lab(samba_dc: SambaDC) -> Iterator[SyncLab]:
    lab = SyncLab(samba_dc)
    yield lab
    lab.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'idp.db'}")
    yield database
    database.dispose()


def provisioning(
    lab: SyncLab, emu: RunningEmulator, alimail: dict[str, Any] | None = None, **over: Any
) -> ProvisioningSettings:
    values: dict[str, Any] = {
        "provider": "alimail",
        "alimail": alimail_settings(emu, **{"max_retry_wait": 0.2, **(alimail or {})}),
        "scope_base_dns": [lab.ou],
        # Tests have a handful of people: one freeze is 20-30%, so only the brake test keeps the default.
        "freeze_brake_share": 0.5,
    }
    values.update(over)
    return ProvisioningSettings(**values)


SyncFactory = Callable[..., MailboxSync]


@pytest.fixture
def make_sync(ldap_settings: LdapSettings, db: Database) -> Iterator[SyncFactory]:
    """A MailboxSync over the real DC and the given provider settings; closed after the test."""
    stack = ExitStack()

    def make(settings: ProvisioningSettings) -> MailboxSync:
        listing = stack.enter_context(DirectoryListing(ldap_settings))
        assert settings.alimail is not None
        provider = stack.enter_context(AlimailProvider(settings.alimail))
        return MailboxSync(settings, listing, provider, db, AuditTrail(db))

    with stack:
        yield make


def writes(emu: RunningEmulator, since: int = 0) -> list[str]:
    """Calls that change mailboxes or departments (getting a token changes nothing)."""
    calls = list(emu.emulator.calls)[since:]
    return [f"{c.method} {c.path}" for c in calls if c.method in WRITES and c.path.startswith("/v2/")]


def mailbox(emu: RunningEmulator, email: str) -> dict[str, Any]:
    return next(u for u in emu.emulator.users() if u["email"] == email)


def test_first_sync_creates_mailboxes_with_department_and_a_resync_writes_nothing(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory, db: Database
) -> None:
    alice = lab.add_user("Alice", department="Engineering/Platform", title="Engineer")
    bob = lab.add_user("Bob", department="Sales", title=None)
    sync = make_sync(provisioning(lab, emulator))

    report = sync.apply(sync.plan())
    assert report.exit_code == EXIT_OK
    assert sorted(o.action.kind for o in report.outcomes) == ["create", "create"]
    alice_box = mailbox(emulator, alice.mail)
    assert emulator.emulator.department_path(alice_box["departmentIds"][0]) == ("Engineering", "Platform")
    assert alice_box["jobTitle"] == "Engineer"
    assert emulator.emulator.department_path(mailbox(emulator, bob.mail)["departmentIds"][0]) == ("Sales",)
    events = AuditTrail(db).recent(event="provision")
    assert {(e.username, e.result, e.reason) for e in events} == {
        (alice.username, "success", "create"),
        (bob.username, "success", "create"),
    }

    before = len(emulator.emulator.calls)
    again = sync.apply(sync.plan())
    assert again.exit_code == EXIT_OK
    assert again.outcomes == []
    assert again.plan.counts()["unchanged"] == 2
    assert writes(emulator, before) == []


def test_an_ad_change_reaches_the_mailbox_with_only_the_changed_fields(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory, db: Database
) -> None:
    carol = lab.add_user("Carol", department="Sales", title="Account Manager")
    sync = make_sync(provisioning(lab, emulator))
    sync.apply(sync.plan())

    lab.set(carol, title="Sales Director", department="Sales/EMEA")
    plan = sync.plan()
    assert [(a.kind, dict(a.changes)) for a in plan.actions] == [
        ("update", {"title": "Sales Director", "department": ("Sales", "EMEA")})
    ]
    assert sync.apply(plan).exit_code == EXIT_OK
    box = mailbox(emulator, carol.mail)
    assert box["jobTitle"] == "Sales Director"
    assert emulator.emulator.department_path(box["departmentIds"][0]) == ("Sales", "EMEA")
    update = AuditTrail(db).recent(event="provision", username=carol.username)[0]
    assert (update.reason, json.loads(update.detail or "")) == (
        "update",
        {"title": "Sales Director", "department": ["Sales", "EMEA"]},
    )


def test_a_disabled_account_is_frozen_and_unfrozen_when_enabled_again(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory
) -> None:
    dan = lab.add_user("Dan")
    lab.add_user("Eve")
    lab.add_user("Fay")
    sync = make_sync(provisioning(lab, emulator))
    sync.apply(sync.plan())

    lab.disable(dan)
    report = sync.apply(sync.plan())
    assert [(o.action.kind, o.action.reason, o.ok) for o in report.outcomes] == [("freeze", "disabled in AD", True)]
    assert mailbox(emulator, dan.mail)["status"] == "FREEZE"
    assert sync.apply(sync.plan()).outcomes == []  # frozen stays frozen, no call

    lab.enable(dan)
    report = sync.apply(sync.plan())
    assert [(o.action.kind, o.ok) for o in report.outcomes] == [("unfreeze", True)]
    assert mailbox(emulator, dan.mail)["status"] == "NORMAL"


def test_a_user_moved_out_of_scope_is_frozen(lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory) -> None:
    gus = lab.add_user("Gus")
    lab.add_user("Hal")
    lab.add_user("Ida")
    outside = lab.add_ou(f"Elsewhere-{lab.tag}")
    sync = make_sync(provisioning(lab, emulator))
    sync.apply(sync.plan())
    lab.move(gus, outside)
    report = sync.apply(sync.plan())
    assert [(o.action.kind, o.action.reason, o.ok) for o in report.outcomes] == [("freeze", "out of scope", True)]
    assert mailbox(emulator, gus.mail)["status"] == "FREEZE"


def test_the_brake_stops_a_mass_freeze_unless_forced(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory, db: Database
) -> None:
    people = [lab.add_user(name) for name in ("Jon", "Kim", "Lea", "Max", "Ned")]
    sync = make_sync(provisioning(lab, emulator, freeze_brake_share=0.10))
    sync.apply(sync.plan())
    for person in people[:3]:
        lab.disable(person)

    plan = sync.plan()
    assert (plan.freezes, plan.active_mailboxes) == (3, 5)
    before = len(emulator.emulator.calls)
    refused = sync.apply(plan)
    assert refused.exit_code == EXIT_REFUSED
    assert "3 of 5" in (refused.refused or "")
    assert writes(emulator, before) == []
    assert AuditTrail(db).recent(event="provision")[0].reason == "safety_brake"

    forced = sync.apply(sync.plan(), force=True)
    assert forced.exit_code == EXIT_OK
    assert {mailbox(emulator, p.mail)["status"] for p in people[:3]} == {"FREEZE"}


def test_incremental_looks_only_at_people_changed_since_the_last_sync(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory
) -> None:
    people = [lab.add_user(name) for name in ("Oli", "Pam", "Quy", "Rex")]
    sync = make_sync(provisioning(lab, emulator))
    first = sync.plan(incremental=True)
    assert not first.incremental  # no high-water mark yet: a full sync
    sync.apply(first)

    quiet = sync.plan(incremental=True)
    assert quiet.incremental and quiet.actions == [] and quiet.unchanged == 0

    lab.set(people[0], title="Architect")
    lab.disable(people[1])
    before = len(emulator.emulator.calls)
    plan = sync.plan(incremental=True)
    assert sorted((a.kind, a.username) for a in plan.actions) == [
        ("freeze", people[1].username),
        ("update", people[0].username),
    ]
    assert plan.unchanged == 0  # the two untouched people were not even listed
    assert not any(c.path == "/v2/users" for c in list(emulator.emulator.calls)[before:])  # no list_all
    assert sync.apply(plan).exit_code == EXIT_OK
    assert sync.plan(incremental=True).actions == []


def test_a_provider_error_for_one_person_is_reported_and_the_rest_applied(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory, db: Database
) -> None:
    good = [lab.add_user("Sam"), lab.add_user("Tia")]
    wrong = lab.add_user("Uma", mail="uma@not-our-domain.org")  # the emulator answers 400 InvalidParameter.Email
    sync = make_sync(provisioning(lab, emulator))

    report = sync.apply(sync.plan())
    assert report.exit_code == EXIT_FAILURES
    assert [(o.action.username, o.ok) for o in report.failed] == [(wrong.username, False)]
    assert "InvalidParameter.Email" in (report.failed[0].error or "")
    assert {u["email"] for u in emulator.emulator.users()} == {p.mail for p in good}
    failure = AuditTrail(db).recent(event="provision", username=wrong.username)[0]
    assert (failure.result, failure.reason) == ("failure", "create")
    assert "InvalidParameter.Email" in (failure.detail or "")
    assert [r.username for r in ProvisioningRecords(db).failed()] == [wrong.username]

    lab.set(wrong, mail=f"{wrong.username}@example.com")
    retried = sync.apply(sync.plan(only_failed=True))
    assert [(o.action.kind, o.ok) for o in retried.outcomes] == [("create", True)]
    assert ProvisioningRecords(db).failed() == []


def test_an_outage_during_one_write_fails_that_person_only(
    lab: SyncLab, emulator: RunningEmulator, make_sync: SyncFactory
) -> None:
    for name in ("Vic", "Wes", "Xia"):
        lab.add_user(name)
    sync = make_sync(provisioning(lab, emulator, alimail={"max_attempts": 2}, workers=1))
    plan = sync.plan()
    emulator.faults.fail_next(2, status=503, path_prefix="/v2/users")  # both attempts of the first create
    report = sync.apply(plan)
    assert (report.applied, len(report.failed)) == (2, 1)
    assert "provider_unavailable" in (report.failed[0].error or "")
    assert len(emulator.emulator.users()) == 2
    assert [o.action.kind for o in sync.apply(sync.plan()).outcomes] == ["create"]


def test_sync_through_scim(lab: SyncLab, scim_server: ScimServer, ldap_settings: LdapSettings, db: Database) -> None:
    yan = lab.add_user("Yan", department="Engineering")
    lab.add_user("Zoe")
    lab.add_user("Abe")
    scim = ScimSettings(base_url=scim_server.url, bearer_token=scim_server.token, retry_base_wait=0.01)
    settings = ProvisioningSettings(
        provider="scim", scim=scim, scope_base_dns=[lab.ou], freeze_brake_share=0.5, mail_domain="example.com"
    )
    with DirectoryListing(ldap_settings) as listing, ScimProvider(scim) as provider:
        sync = MailboxSync(settings, listing, provider, db)
        assert sync.apply(sync.plan()).applied == 3
        created = provider.find(yan.mail)
        assert created is not None and created.department == ("Engineering",) and not created.frozen
        assert sync.plan().actions == []
        lab.disable(yan)
        assert [o.action.kind for o in sync.apply(sync.plan()).outcomes] == ["freeze"]
        assert provider.find(yan.mail).frozen  # type: ignore[union-attr]


# -- the CLI --------------------------------------------------------------------------------------


def write_config(tmp_path: Path, samba_dc: SambaDC, lab: SyncLab, emu: RunningEmulator, **over: Any) -> Path:
    provisioning_values = {"provider": "alimail", "scope_base_dns": [lab.ou], "freeze_brake_share": 0.5, **over}
    alimail = alimail_settings(emu, max_retry_wait=0.2).model_dump(mode="json")
    alimail["client_secret"] = emu.emulator.client_secret
    config = tmp_path / "idp.toml"
    config.write_text(
        render_toml(
            {
                "server": {"data_dir": tmp_path / "var"},
                "ldap": samba_dc.ldap_settings(),
                "provisioning": provisioning_values,
                "provisioning.alimail": {k: v for k, v in alimail.items() if v is not None},
            }
        )
    )
    return config


def idp_sync(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "IDP_CONFIG": str(config)}
    command = [sys.executable, "-m", "idp.cli", "sync", *args]
    return subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_dry_run_prints_the_plan_and_changes_nothing(
    tmp_path: Path, samba_dc: SambaDC, lab: SyncLab, emulator: RunningEmulator
) -> None:
    amy = lab.add_user("Amy", department="Sales/APAC")
    config = write_config(tmp_path, samba_dc, lab, emulator)

    out, err = idp_sync(config, "--dry-run", "--json").communicate(timeout=60)
    plan = json.loads(out)
    assert plan["counts"]["create"] == 1, err
    assert plan["actions"][0] == {
        "action": "create",
        "username": amy.username,
        "email": amy.mail,
        "reason": "new in AD",
        "changes": {},
    }
    table = idp_sync(config, "--dry-run")
    text, _ = table.communicate(timeout=60)
    assert table.returncode == 0 and amy.username in text and "dry run" in text
    assert writes(emulator) == []
    assert ProvisioningRecords(Database(f"sqlite:///{tmp_path / 'var' / 'idp.db'}")).all() == {}


def test_two_concurrent_runners_only_one_runs(
    tmp_path: Path, samba_dc: SambaDC, lab: SyncLab, emulator: RunningEmulator
) -> None:
    for name in ("Bea", "Cal", "Dee"):
        lab.add_user(name)
    config = write_config(tmp_path, samba_dc, lab, emulator, workers=1)
    emulator.faults.latency = 0.4  # each call slow, so the first runner still holds the lease
    runners = [idp_sync(config), idp_sync(config)]
    results = [(r.returncode, out + err) for r in runners for out, err in [r.communicate(timeout=60)]]
    assert sorted(code for code, _ in results) == [0, 3], results
    assert any("another runner holds" in output for _, output in results)
    assert len(emulator.emulator.users()) == 3
    creates = [w for w in writes(emulator) if w == "POST /v2/users"]
    assert len(creates) == 3  # nobody was created twice


def test_a_provider_without_its_table_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match=r"\[provisioning.scim\]"):
        ProvisioningSettings(provider="scim")
