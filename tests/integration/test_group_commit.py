"""The audit trail's group commit, on SQLite and on the real PostgreSQL: rows queued while a commit is under
way go out together in the next one, every writer returns only once its row can be read from another
connection, and a failed commit reaches every writer whose row it carried."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import IntegrityError

from idp.audit import AuditTrail
from idp.store.db import Database
from idp.store.group_commit import GroupCommit
from idp.store.models import AuditEvent
from tests.support import scratch_database

WRITERS = 12


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with scratch_database(request.param, tmp_path) as db:
        yield db


def _rows(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


def _row(n: int) -> dict[str, object]:
    return {
        "event": "signin",
        "result": "success",
        "reason": None,
        "username": f"user{n}",
        "sp_entity_id": None,
        "client_ip": None,
        "detail": None,
    }


def _eventually(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_rows_queued_during_a_commit_share_the_next_one_and_are_durable_on_return(database: Database) -> None:
    writer = GroupCommit(database.engine, insert(AuditEvent))
    commits: list[int] = []
    first_commit_may_finish = threading.Event()

    @event.listens_for(database.engine, "commit")
    def _count(conn) -> None:  # type: ignore[no-untyped-def]
        commits.append(1)
        if len(commits) == 1:
            first_commit_may_finish.wait(10)

    returned: list[int] = []
    seen_after_return: list[int] = []

    def write(n: int) -> None:
        writer.write(_row(n))
        seen_after_return.append(_rows(database))
        returned.append(n)

    first = threading.Thread(target=write, args=(0,))
    first.start()
    _eventually(lambda: len(commits) == 1, "the first writer commits alone")
    others = [threading.Thread(target=write, args=(n,)) for n in range(1, WRITERS)]
    for t in others:
        t.start()
    # They queue behind the commit in progress: none returns before its row is written.
    time.sleep(0.2)
    assert returned == []
    first_commit_may_finish.set()
    for t in [first, *others]:
        t.join(10)

    assert sorted(returned) == list(range(WRITERS))
    assert _rows(database) == WRITERS
    assert len(commits) == 2  # one for the first row, one for the eleven that queued behind it
    assert min(seen_after_return) >= 1 and seen_after_return.count(WRITERS) >= WRITERS - 1


def test_a_failed_commit_reaches_every_writer_in_it_and_the_next_write_succeeds(database: Database) -> None:
    writer = GroupCommit(database.engine, insert(AuditEvent))
    bad = {**_row(0), "event": None}  # NOT NULL: the database refuses the whole transaction
    with pytest.raises(IntegrityError):
        writer.write(bad)
    errors: list[BaseException] = []
    gate = threading.Event()
    begins: list[int] = []

    @event.listens_for(database.engine, "begin")
    def _hold_the_first(conn) -> None:  # type: ignore[no-untyped-def]
        begins.append(1)
        if len(begins) == 1:
            gate.wait(10)

    def write(row: dict[str, object]) -> None:
        try:
            writer.write(row)
        except IntegrityError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(_row(1),))]
    threads[0].start()
    time.sleep(0.1)  # the first writer is inside its transaction, held at BEGIN
    threads += [threading.Thread(target=write, args=(row,)) for row in (bad, _row(2))]
    for t in threads[1:]:
        t.start()
    time.sleep(0.1)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(errors) == 2  # the bad row and the good row that shared its transaction
    assert _rows(database) == 1  # the first writer's row, committed alone
    writer.write(_row(3))
    assert _rows(database) == 2


def test_the_audit_trail_reads_back_what_concurrent_sign_ins_wrote(database: Database) -> None:
    trail = AuditTrail(database)
    threads = [
        threading.Thread(target=trail.record, args=("signin", "success"), kwargs={"username": f"u{n}"})
        for n in range(WRITERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(r.username or "" for r in trail.recent(100)) == sorted(f"u{n}" for n in range(WRITERS))
