"""Engine and session factory; one per process."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Executable, Result, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from idp.store import schema

Write = tuple[Executable, Mapping[str, Any]]
"""A statement and its parameters, to be committed together with others (``Database.write``)."""


class Database:
    def __init__(self, url: str, *, migrate: bool = True) -> None:
        """``migrate``: bring the schema to this version's newest revision first (idp.store.schema); only
        `idp db` itself opens a database without, to say what it does."""
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            _private_file(Path(url.removeprefix("sqlite:///").partition("?")[0]))
        sqlite = url.startswith("sqlite")
        # A ping before every checkout guards against a PostgreSQL server that dropped the connection; a
        # SQLite file cannot drop one, and the ping was a query per audit row.
        self.engine: Engine = create_engine(url, pool_pre_ping=not sqlite, future=True)
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            schema.upgrade(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    def write(self, writes: Sequence[Write]) -> None:
        """Run ``writes`` in one transaction: all of them or none. A sign-in's last rows (its audit row, the
        index of the session it starts, the throttle's count it clears) are one commit, not three."""
        with self.engine.begin() as conn:
            for statement, params in writes:
                conn.execute(statement, params)

    def dispose(self) -> None:
        self.engine.dispose()


def _private_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only, before SQLite would create it with the umask's
    0644: it holds the audit trail and every SP's policy. SQLite gives its -wal and -shm files the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets gunicorn workers write audit rows while another reads; busy_timeout rides out short locks.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL still never corrupts the database; it syncs at checkpoints instead of at every
    # commit, which made every audit row wait for the disk (a third of an SSO response's time, measured).
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched. ``Session.execute`` is typed to return a plain Result, but for
    such a statement it returns a CursorResult, the one kind that has ``rowcount``."""
    return cast(CursorResult[Any], result).rowcount
