"""The store: several processes meeting a new database at once all come up (gunicorn workers, two nodes,
two `idp sync` runs started by cron and by hand), and the lease that lets one of them run at a time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

from idp.store.db import Database
from idp.store.lease import Lease
from idp.store.models import Base
from tests.support import FakeClock

MAKE = "import sys; from idp.store.db import Database; Database(sys.argv[1]).dispose()"


def test_processes_creating_the_schema_at_once_all_succeed(tmp_path: Path) -> None:
    for round_ in range(5):
        url = f"sqlite:///{tmp_path / f'race-{round_}.db'}"
        procs = [
            subprocess.Popen([sys.executable, "-c", MAKE, url], stderr=subprocess.PIPE, text=True) for _ in range(8)
        ]
        outcomes = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
        assert [code for code, _ in outcomes] == [0] * 8, [err[-600:] for _, err in outcomes if err]
        db = Database(url)
        assert set(inspect(db.engine).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
        db.dispose()


def test_the_lease_admits_one_runner_until_it_expires(tmp_path: Path) -> None:
    clock = FakeClock()
    db = Database(f"sqlite:///{tmp_path / 'lease.db'}")
    try:
        first, second = Lease(db, ttl_seconds=60, now=clock.now), Lease(db, ttl_seconds=60, now=clock.now)
        assert first.try_acquire()
        assert not second.try_acquire()
        assert first.try_acquire()  # renewing our own
        first.release()
        assert second.try_acquire()
        clock.advance(59)
        assert second.try_acquire()  # renewed before it ran out: another minute
        clock.advance(59)
        assert not first.try_acquire()
        clock.advance(2)  # the holder died without renewing: its lease is over
        assert first.try_acquire()
        assert second.current_holder() == first.holder
    finally:
        db.dispose()
