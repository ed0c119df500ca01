"""The sync-run history and what the console's provisioning page builds on, against a real SQLite database:
runs recorded from start to end (an exception ends one as an error), who holds the sync lease and until
when, outbox rows dropped or retried one at a time, and the page itself in both languages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask, g

from idp.app import create_app
from idp.provisioning.outbox import Outbox
from idp.provisioning.provider import MailboxSpec
from idp.provisioning.runs import RecordedRun
from idp.provisioning.sync import Action, Outcome, Plan, SyncReport
from idp.settings import Settings
from idp.store.db import Database
from idp.store.lease import Lease, LeaseHeld
from idp.store.sync_runs import SyncRuns
from idp.web.admin import provisioning as page
from idp.web.admin.guard import Admin
from idp.web.i18n import LANGUAGES, MESSAGES
from tests.support import FakeClock


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'idp.db'}")
    yield database
    database.dispose()


def _plan(*actions: Action, active: int = 10) -> Plan:
    return Plan(
        actions=list(actions), in_sync=[], unchanged=3, active_mailboxes=active, incremental=False, watermark=None
    )


def _action(kind: str, username: str) -> Action:
    return Action(kind, f"guid-{username}", username, f"{username}@example.com", "new in AD")  # type: ignore[arg-type]


def test_a_run_is_recorded_from_its_start_to_its_result(db: Database) -> None:
    lease = Lease(db)
    plan = _plan(_action("create", "amy"), _action("create", "bob"), _action("update", "cal"))
    with RecordedRun.of_command(db, lease) as run:
        (row,) = SyncRuns(db).recent()
        assert row.running and row.origin == "cli" and row.status == "running" and row.lease_holder == lease.holder
        run.planned(plan)
        outcomes = [Outcome(a, ok=a.username != "bob", error="provider_rejected: no") for a in plan.actions]
        for outcome in outcomes:
            run.progress(outcome)
        run.finished(SyncReport(plan, outcomes))
    done = SyncRuns(db).get(run.id)
    assert done is not None and not done.running and done.duration is not None and done.duration >= timedelta(0)
    assert (done.status, done.applied, done.failed, done.done, done.planned_writes) == ("failures", 2, 1, 3, 3)
    assert done.counts["create"] == 2 and done.counts["update"] == 1 and done.counts["unchanged"] == 3
    assert [a["username"] for a in done.actions] == ["bob"] and done.actions[0]["error"] == "provider_rejected: no"
    assert SyncRuns(db).last_finished(dry_run=False) == done
    assert SyncRuns(db).last_finished(dry_run=True) is None


def test_a_run_that_raises_ends_as_an_error_with_its_words(db: Database) -> None:
    with pytest.raises(RuntimeError), RecordedRun.of_command(db, Lease(db)) as run:
        raise RuntimeError("Active Directory did not answer")
    ended = SyncRuns(db).get(run.id)
    assert ended is not None and ended.status == "error" and ended.note == "Active Directory did not answer"


def test_a_dry_run_keeps_its_plan_and_whether_the_brake_would_stop_it(db: Database) -> None:
    plan = _plan(*(_action("freeze", f"p{n}") for n in range(4)), active=5)
    with RecordedRun(db, started_by="anna", origin="console", dry_run=True, lease_holder="h") as run:
        run.dry_run_finished(plan, "the plan freezes 4 of 5 active mailboxes")
    done = SyncRuns(db).get(run.id)
    assert done is not None and done.dry_run and done.brake and done.status == "brake"
    assert done.note == "the plan freezes 4 of 5 active mailboxes"
    assert done.counts["freezes"] == 4 and done.counts["active_mailboxes"] == 5
    assert [a["action"] for a in done.actions] == ["freeze"] * 4


def test_the_lease_says_who_holds_it_and_until_when(db: Database) -> None:
    clock = FakeClock()
    first, second = Lease(db, ttl_seconds=60, now=clock.now), Lease(db, ttl_seconds=60, now=clock.now)
    assert first.current() is None
    assert first.try_acquire()
    held = second.current()
    assert held is not None and held.holder == first.holder and held.expires_at == clock.now() + timedelta(seconds=60)
    until = f"{held.expires_at:%Y-%m-%d %H:%M:%S}"
    with pytest.raises(LeaseHeld, match=rf"\({first.holder}\) until {until} UTC"), second.held():
        pass
    clock.advance(61)
    assert second.current() is None  # expired: nobody's


def _queue(outbox: Outbox, username: str) -> int:
    outbox.enqueue(f"guid-{username}", username, MailboxSpec(f"{username}@example.com", username), "provider down")
    item = next(i for i in outbox.items() if i.username == username)
    return item.id


def test_a_dropped_row_is_gone_unless_a_worker_has_it(db: Database) -> None:
    clock = FakeClock()
    outbox = Outbox(db, lease_seconds=30, now=clock.now)
    amy, bob = _queue(outbox, "amy"), _queue(outbox, "bob")
    claimed = outbox.claim("worker-1", ids=[bob])
    assert [i.username for i in claimed] == ["bob"]  # only the row asked for
    dropped = outbox.drop(amy)
    assert dropped is not None and dropped.username == "amy" and dropped.last_error == "provider down"
    assert outbox.drop(amy) is None  # gone already
    assert outbox.drop(bob) is None  # a live worker has it
    clock.advance(31)
    assert outbox.drop(bob) is not None  # its lease ran out
    assert outbox.items() == []


@pytest.fixture
def app(settings: Settings) -> Flask:
    quiet = settings.metadata.model_copy(update={"refresh_poll": 0})
    return create_app(settings.model_copy(update={"metadata": quiet}))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_page_shows_the_runs_and_the_schedule_in_both_languages(app: Flask, lang: str) -> None:
    db = app.extensions["idp"].db
    with RecordedRun(db, started_by="anna", origin="console", dry_run=False, lease_holder="h") as run:
        run.finished(SyncReport(_plan(_action("create", "amy")), [Outcome(_action("create", "amy"), ok=True)]))
    lease = Lease(db)
    assert lease.try_acquire()
    going = RecordedRun(db, started_by="anna", origin="console", dry_run=False, lease_holder=lease.holder)
    died = RecordedRun(db, started_by="anna", origin="console", dry_run=True, lease_holder="a process that died")
    with app.test_request_context("/admin/provisioning", headers={"Accept-Language": lang}):
        g.admin = Admin("anna", "Anna Admin")  # the guard's work, done: this test is about the page
        html = page.provisioning()
    assert f'data-run="{run.id}" data-state="ok"' in html
    assert f'data-run="{going.id}" data-state="running"' in html and 'http-equiv="refresh"' in html
    assert f'data-run="{died.id}" data-state="interrupted"' in html  # its lease is not held: it will never end
    assert "idp sync --incremental" in html  # nothing in the product schedules the sync: the page says how to
    assert MESSAGES[lang]["admin.provisioning.not_configured"].split("[provisioning]")[0] in html
    assert 'id="sync-form"' not in html  # no [provisioning] section: nothing to run
