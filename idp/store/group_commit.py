"""Rows from concurrent requests of one process written by one transaction (a group commit).

A request hands over its row and waits. Whichever waiting thread finds no write in progress takes every row
queued so far and commits them together; the rest wait for that commit and return with it. A request still
returns only after its own row is committed, and sees the error when that commit failed, so nothing is lost
that a plain INSERT per request would have kept. Under concurrency, N rows cost one transaction instead of N;
alone, a request writes its row at once, as before.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.engine import Engine


@dataclass
class _Pending:
    row: dict[str, Any]
    done: bool = False
    error: BaseException | None = None


class GroupCommit:
    def __init__(self, engine: Engine, statement: Executable) -> None:
        self._engine = engine
        self._statement = statement
        self._changed = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False

    def write(self, row: dict[str, Any]) -> None:
        """Commit ``row`` with the statement; return once it is durable, raise what the commit raised."""
        pending = _Pending(row)
        with self._changed:
            self._queue.append(pending)
            while self._writing and not pending.done:
                self._changed.wait()
            if pending.done:
                if pending.error is not None:
                    raise pending.error
                return
            self._writing = True
            batch, self._queue = self._queue, []
        error: BaseException | None = None
        try:
            with self._engine.begin() as conn:
                conn.execute(self._statement, [p.row for p in batch])
        except BaseException as exc:
            error = exc
            raise
        finally:
            with self._changed:
                for p in batch:
                    p.done, p.error = True, error
                self._writing = False
                self._changed.notify_all()
