"""The durable outbox and JIT provisioning, against the Alibaba Mail emulator over HTTP and a real SQLite
database: leases, crash recovery exactly once, backoff, giving up on a rejection, the sign-in budget."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from idp.audit import AuditTrail
from idp.demo.alimail_emulator import RunningEmulator
from idp.person import Person
from idp.provisioning.alimail import AlimailProvider, AlimailSettings
from idp.provisioning.jit import JitProvisioner, JitRefused
from idp.provisioning.outbox import Outbox, OutboxWorker
from idp.provisioning.provider import MailboxSpec
from idp.provisioning.records import ProvisioningRecords
from idp.settings import ProvisioningSettings
from idp.store.db import Database
from tests.support import FakeClock


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'idp.db'}")
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def outbox(db: Database, clock: FakeClock) -> Outbox:
    return Outbox(db, lease_seconds=30, max_backoff=600, now=clock.now)


@pytest.fixture
def worker_for(
    db: Database, outbox: Outbox, emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]
) -> Iterator[Callable[..., OutboxWorker]]:
    workers: list[OutboxWorker] = []

    def make(owner: str, **client_settings: Any) -> OutboxWorker:
        """A worker named ``owner`` whose Alibaba Mail client has ``client_settings`` on top of the tests' own."""
        settings = settings_for(emulator, **client_settings)
        worker = OutboxWorker(outbox, ProvisioningRecords(db), AuditTrail(db), lambda: AlimailProvider(settings), owner)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.close()


def spec(name: str = "dora", **fields: Any) -> MailboxSpec:
    values: dict[str, Any] = {
        "email": f"{name}@example.com",
        "display_name": name.title(),
        "department": ("Sales",),
        "title": "Rep",
    }
    return MailboxSpec(**{**values, **fields})


def creates(emu: RunningEmulator, path: str = "/v2/users", *, refused_too: bool = False) -> int:
    """How many creates at ``path`` the emulator carried out (whether or not the client heard the answer);
    with ``refused_too``, how many it was asked for."""
    return sum(
        1 for c in emu.emulator.calls if c.method == "POST" and c.path == path and (refused_too or c.status < 300)
    )


def audit_rows(db: Database) -> list[Any]:
    return [r for r in AuditTrail(db).recent(100) if r.event == "provision"]


def test_only_one_worker_wins_a_row_and_a_newer_spec_replaces_the_queued_one(outbox: Outbox) -> None:
    outbox.enqueue("g1", "dora", spec(), "provider_unavailable: down")
    first, second = outbox.claim("worker-a"), outbox.claim("worker-b")
    assert [i.username for i in first] == ["dora"] and second == []
    assert first[0].attempts == 1 and first[0].lease_owner == "worker-a"

    outbox.enqueue("g1", "dora", spec(title="Lead"), "provider_unavailable: down")  # a later sign-in
    assert outbox.complete(first[0], "worker-a") is False  # it finished the old spec: the row stays pending
    (again,) = outbox.claim("worker-b")
    assert again.spec.title == "Lead" and again.version == first[0].version + 1
    assert outbox.complete(again, "worker-b") is True
    assert outbox.items() == []


def test_the_worker_creates_the_mailbox_records_it_and_audits(
    db: Database, outbox: Outbox, emulator: RunningEmulator, worker_for: Callable[..., OutboxWorker]
) -> None:
    outbox.enqueue("g1", "dora", spec(), "provider_unavailable: down")
    report = worker_for("w").run_once()
    assert (report.done, report.retried, report.failed) == (1, 0, 0)
    (user,) = emulator.emulator.users()
    assert user["email"] == "dora@example.com"
    assert emulator.emulator.department_path(user["departmentIds"][0]) == ("Sales",)
    record = ProvisioningRecords(db).get("g1")
    assert record is not None and record.mailbox_id == user["id"] and not record.failed
    assert outbox.items() == []
    assert [(r.result, r.reason, r.username) for r in audit_rows(db)] == [("success", "outbox", "dora")]


def test_a_worker_that_died_after_claiming_is_recovered_exactly_once(
    outbox: Outbox, clock: FakeClock, emulator: RunningEmulator, worker_for: Callable[..., OutboxWorker]
) -> None:
    outbox.enqueue("g1", "dora", spec(), "provider_unavailable: down")
    assert outbox.claim("dead-worker")  # and then the process died before calling the provider
    clock.advance(outbox.lease_seconds)
    assert worker_for("w").run_once().handled == 0  # the lease still holds: nobody else touches the row
    clock.advance(1)
    assert worker_for("w").run_once().done == 1  # expired: another worker takes it over
    assert creates(emulator) == 1 and len(emulator.emulator.users()) == 1
    assert outbox.items() == []


def test_a_worker_that_died_after_the_create_call_does_not_create_twice(
    outbox: Outbox,
    clock: FakeClock,
    emulator: RunningEmulator,
    alimail: AlimailProvider,
    worker_for: Callable[..., OutboxWorker],
) -> None:
    outbox.enqueue("g1", "dora", spec(), "provider_unavailable: down")
    assert outbox.claim("dead-worker")
    alimail.create(spec())  # its create reached the provider; it died before marking the row done
    clock.advance(outbox.lease_seconds + 1)
    report = worker_for("w").run_once()
    assert report.done == 1
    assert creates(emulator) == 1 and len(emulator.emulator.users()) == 1
    assert outbox.items() == []


TIMEOUT, LATE = 0.3, 1.0
"""The client's read timeout in the tests below, and how late the emulator answers a create it carried out."""


def test_creates_whose_answers_timed_out_are_carried_out_once(
    db: Database, outbox: Outbox, emulator: RunningEmulator, worker_for: Callable[..., OutboxWorker]
) -> None:
    # The API makes each department level and the mailbox, but the client hears none of it in time: each
    # retry looks up what the lost attempt may have made (parent + name, address) and finds it.
    outbox.enqueue("g1", "dora", spec(department=("Sales", "EMEA")), "provider_unavailable: down")
    emulator.faults.time_out_after_applying(2, "/v2/departments", delay=LATE)
    emulator.faults.time_out_after_applying(1, "/v2/users", delay=LATE)
    report = worker_for("w", read_timeout=TIMEOUT).run_once()
    assert (report.done, report.retried) == (1, 0)
    assert emulator.emulator.departments() == [("Sales",), ("Sales", "EMEA")]
    # Looked up, not asked again (a second ask would be refused as a duplicate, but it must not be needed).
    assert creates(emulator, "/v2/departments", refused_too=True) == 2
    (user,) = emulator.emulator.users()
    assert creates(emulator, refused_too=True) == 1
    assert emulator.emulator.department_path(user["departmentIds"][0]) == ("Sales", "EMEA")
    record = ProvisioningRecords(db).get("g1")
    assert record is not None and record.mailbox_id == user["id"]


def test_a_create_the_client_gave_up_on_is_found_by_the_outbox_retry(
    db: Database,
    outbox: Outbox,
    clock: FakeClock,
    emulator: RunningEmulator,
    worker_for: Callable[..., OutboxWorker],
) -> None:
    outbox.enqueue("g1", "dora", spec(), "provider_unavailable: down")
    emulator.faults.time_out_after_applying(1, "/v2/users", delay=LATE)
    first = worker_for("w1", read_timeout=TIMEOUT, max_attempts=1).run_once()
    assert first.retried == 1  # the worker cannot know the mailbox was made...
    assert len(emulator.emulator.users()) == 1  # ...but it was
    clock.advance(3600)
    assert worker_for("w2").run_once().done == 1
    assert creates(emulator) == 1 and len(emulator.emulator.users()) == 1
    assert outbox.items() == []
    assert [r.result for r in audit_rows(db)] == ["success", "failure"]


def test_an_outage_backs_off_and_the_row_succeeds_later(
    db: Database,
    outbox: Outbox,
    clock: FakeClock,
    emulator: RunningEmulator,
    worker_for: Callable[..., OutboxWorker],
) -> None:
    outbox.enqueue("g1", "dora", spec(), "provider_unavailable: down")
    emulator.faults.fail_next(50, status=503)
    report = worker_for("w").run_once()
    assert (report.done, report.retried) == (0, 1)
    (item,) = outbox.items(failed_only=True)
    assert item.state == "pending" and "provider_unavailable" in (item.last_error or "")
    assert item.next_attempt_at > clock.now() + timedelta(seconds=20)  # backed off, not due again at once
    assert outbox.claim("w") == []
    emulator.faults.clear()

    assert outbox.requeue() == 1  # an admin's `idp outbox retry --all`, or simply time passing
    assert worker_for("w").run_once().done == 1
    assert len(emulator.emulator.users()) == 1
    assert [r.result for r in audit_rows(db)] == ["success", "failure"]


def test_a_rejected_spec_is_given_up_and_listed_as_failed(
    outbox: Outbox, emulator: RunningEmulator, worker_for: Callable[..., OutboxWorker]
) -> None:
    outbox.enqueue("g1", "eve", spec("eve", email="eve@not-our-domain.test"), "provider_unavailable: down")
    report = worker_for("w").run_once()
    assert report.failed == 1
    (item,) = outbox.items(failed_only=True)
    assert item.state == "failed" and "provider_rejected" in (item.last_error or "")
    assert outbox.claim("w") == []  # never retried on its own


def test_a_row_provisioned_since_by_someone_else_is_done_without_a_provider_call(
    db: Database, outbox: Outbox, emulator: RunningEmulator, worker_for: Callable[..., OutboxWorker]
) -> None:
    outbox.enqueue("g1", "dora", spec(), "provider_unavailable: down")  # the outbox's clock stands still
    ProvisioningRecords(db).succeeded(  # the sync provisioned AD's newer state after the row was queued
        "g1", username="dora", email="dora@example.com", mailbox_id="m1", spec=spec(title="Lead"), frozen=False
    )
    report = worker_for("w").run_once()
    assert report.superseded == 1
    assert list(emulator.emulator.calls) == []


# --- JIT at sign-in --------------------------------------------------------------------------------------


def person(name: str = "dora", **attributes: tuple[str, ...]) -> Person:
    return Person(
        username=name,
        dn=f"CN={name},OU=Sales,DC=corp,DC=example,DC=com",
        guid=uuid.uuid5(uuid.NAMESPACE_DNS, name),
        mail=f"{name}@example.com",
        display_name=name.title(),
        given_name=name.title(),
        surname="Tester",
        attributes={"department": ("Sales",), "title": ("Rep",), **attributes},
    )


@pytest.fixture
def jit_for(
    db: Database, emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]
) -> Iterator[Callable[..., JitProvisioner]]:
    made: list[JitProvisioner] = []

    def make(**overrides: Any) -> JitProvisioner:
        settings = ProvisioningSettings(provider="alimail", alimail=settings_for(emulator), **overrides)
        jit = JitProvisioner(settings, db, AuditTrail(db))
        made.append(jit)
        return jit

    yield make
    for jit in made:
        jit.close()


def test_jit_creates_once_then_a_steady_sign_in_makes_no_call(
    jit_for: Callable[..., JitProvisioner], emulator: RunningEmulator
) -> None:
    jit = jit_for()
    assert jit.provision(person()).action == "provisioned"
    calls = len(emulator.emulator.calls)
    assert jit.provision(person()).action == "unchanged"
    assert len(emulator.emulator.calls) == calls
    assert jit.provision(person(title=("Lead",))).action == "provisioned"
    assert emulator.emulator.users()[0]["jobTitle"] == "Lead"


def test_a_slow_provider_does_not_hold_the_sign_in_past_the_budget(
    db: Database, jit_for: Callable[..., JitProvisioner], emulator: RunningEmulator
) -> None:
    jit = jit_for(jit_timeout=0.5)
    emulator.faults.latency = 3.0
    started = time.monotonic()
    outcome = jit.provision(person())
    assert time.monotonic() - started < 1.5
    assert outcome.action == "queued" and "provider_timeout" in outcome.detail
    assert Outbox(db).pending(str(person().guid)) is not None
    # While the identical spec waits in the outbox, further sign-ins go straight through.
    started = time.monotonic()
    assert jit.provision(person()).action == "queued"
    assert time.monotonic() - started < 0.3


def test_deny_refuses_and_still_queues_the_work(
    db: Database, jit_for: Callable[..., JitProvisioner], emulator: RunningEmulator
) -> None:
    jit = jit_for(on_failure="deny")
    emulator.faults.fail_next(50, status=503)
    with pytest.raises(JitRefused, match="provider_unavailable"):
        jit.provision(person())
    assert Outbox(db).pending(str(person().guid)) is not None


def test_jit_thaws_only_a_mailbox_the_sync_froze(
    db: Database, jit_for: Callable[..., JitProvisioner], alimail: AlimailProvider
) -> None:
    jit = jit_for()
    jit.provision(person())
    jit.provision(person("erin"))
    records = ProvisioningRecords(db)
    for name, by_sync in (("dora", True), ("erin", False)):
        mailbox = alimail.freeze(f"{name}@example.com")
        if by_sync:
            records.succeeded(
                str(person(name).guid),
                username=name,
                email=mailbox.email,
                mailbox_id=mailbox.id,
                spec=mailbox.spec(),
                frozen=True,
            )
    assert jit.provision(person()).action == "provisioned"
    assert alimail.get("dora@example.com").frozen is False
    jit.provision(person("erin"))  # frozen by an admin by hand: stays frozen
    assert alimail.get("erin@example.com").frozen is True
