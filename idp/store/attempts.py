"""Counters of password attempts that every worker and node share, taken atomically before the attempt.

"Count, then bind, then record the failure" lets 25 parallel guesses all pass a limit of 5; here one SQL
statement takes a place under the limit or refuses, and the database (SQLite's write lock, PostgreSQL's row
lock on the conflicting key) decides between concurrent callers: never a read-then-write in Python.
The count resets, like AD's badPwdCount, once ``window`` seconds pass with no attempt: a window that started
at the first attempt would let a patient attacker add a new batch while AD still counts the last one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, delete, update
from sqlalchemy.dialects import postgresql, sqlite

from idp.store.db import Database, Write
from idp.store.models import AttemptCounterRow, utcnow

_T = cast(Table, AttemptCounterRow.__table__)
# Built once, with the values as parameters: take and clear run at every password sign-in, and building a
# statement costs more than the database takes to run it.
_CLEAR = delete(_T).where(_T.c.key == bindparam("key"))


class AttemptCounters:
    def __init__(self, db: Database, *, now: Callable[[], datetime] = utcnow) -> None:
        """``now`` is the clock windows are written and judged by; tests pass one they can move."""
        self._db = db
        self._now = now
        self._take = _take_statement(postgresql.insert if db.engine.dialect.name == "postgresql" else sqlite.insert)

    def take(self, key: str, limit: int, window: float) -> int | None:
        """Take a place for one more attempt: its number since the count last reset, or None when ``limit``
        attempts are already counted (the caller must not make it). A refused take does not move the count."""
        if limit <= 0:
            return None
        now = self._now()
        params = {"key": key, "now": now, "cutoff": now - timedelta(seconds=window), "limit": limit}
        with self._db.engine.begin() as conn:
            row = conn.execute(self._take, params).first()
        return None if row is None else int(row[0])

    def give_back(self, key: str) -> None:
        """The attempt did not count against the account after all (AD never judged the password)."""
        with self._db.engine.begin() as conn:
            conn.execute(update(_T).where(_T.c.key == key, _T.c.count > 0).values(count=_T.c.count - 1))

    def clear(self, key: str) -> None:
        """A right password: the account starts from nothing, as AD resets its badPwdCount."""
        self._db.write([clearing(key)])

    def count(self, key: str, window: float) -> int:
        """Attempts counted now (0 once ``window`` seconds have passed since the last one)."""
        cutoff = self._now() - timedelta(seconds=window)
        with self._db.engine.connect() as conn:
            found = conn.execute(_T.select().where(_T.c.key == key, _T.c.last_at >= cutoff)).first()
        return 0 if found is None else int(found._mapping["count"])


def clearing(key: str) -> Write:
    """``clear`` as a write, for a caller that commits it with its other rows."""
    return _CLEAR, {"key": key}


def _take_statement(insert: Any) -> Any:
    """Insert the key's first attempt, or count one more on the existing row unless ``limit`` is reached;
    a row idle since before ``cutoff`` starts again at 1."""
    now = bindparam("now", type_=_T.c.last_at.type)
    expired = _T.c.last_at < bindparam("cutoff", type_=_T.c.last_at.type)
    return (
        insert(_T)
        .values(key=bindparam("key", type_=_T.c.key.type), last_at=now, count=1)
        .on_conflict_do_update(
            index_elements=[_T.c.key],
            set_={"count": case((expired, 1), else_=_T.c.count + 1), "last_at": now},
            where=expired | (_T.c.count < bindparam("limit", type_=_T.c.count.type)),
        )
        .returning(_T.c.count)
    )
