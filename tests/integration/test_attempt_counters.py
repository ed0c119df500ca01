"""The shared password-attempt counter: atomic under concurrency on SQLite and PostgreSQL, forgotten only
after a quiet window, and given back or cleared as AD's own count would be."""

from __future__ import annotations

import threading

from idp.store.attempts import AttemptCounters
from idp.store.db import Database
from tests.support import FakeClock


def test_parallel_takes_never_pass_the_limit(db: Database) -> None:
    """Counted before the attempt, in one statement: 16 threads x 20 tries get exactly 5 places."""
    counters = AttemptCounters(db)
    got: list[int | None] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def guess() -> None:
        start.wait()
        for _ in range(20):
            place = counters.take("account:x", 5, 300)
            with lock:
                got.append(place)

    threads = [threading.Thread(target=guess) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p for p in got if p is not None) == [1, 2, 3, 4, 5]
    assert got.count(None) == 16 * 20 - 5
    assert counters.count("account:x", 300) == 5


def test_the_count_is_forgotten_only_after_a_quiet_window(db: Database) -> None:
    clock = FakeClock()
    counters = AttemptCounters(db, now=clock.now)
    assert counters.take("k", 2, 60) == 1
    clock.advance(50)
    assert counters.take("k", 2, 60) == 2
    clock.advance(50)  # 100 s after the first attempt, but only 50 s after the last: AD still counts both
    assert counters.take("k", 2, 60) is None
    clock.advance(50)  # a refused attempt does not extend the window
    assert counters.count("k", 60) == 0
    assert counters.take("k", 2, 60) == 1


def test_give_back_and_clear(db: Database) -> None:
    counters = AttemptCounters(db)
    counters.take("k", 3, 300)
    counters.take("k", 3, 300)
    counters.give_back("k")  # AD never judged that password (a DC down, a disabled account)
    assert counters.count("k", 300) == 1
    counters.clear("k")  # the right password
    assert counters.count("k", 300) == 0
    assert counters.take("k", 0, 300) is None  # a limit of nothing allows nothing
    assert counters.count("other", 300) == 0
