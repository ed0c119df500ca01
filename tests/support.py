"""Helpers every test directory may import (conftest files hold fixtures only)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy

from idp.store.db import Database

POSTGRES_URL = os.environ.get("IDP_TEST_POSTGRES_URL", "postgresql+psycopg://idp_test:idp_test@127.0.0.1:5432/idp_test")
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require(available: bool, what: str) -> None:
    """Skip a test whose component is missing, except in CI, where a missing component is a failure."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: a missing component fails the run)", pytrace=False)
    pytest.skip(what)


class FakeClock:
    """Time that moves only when the test says so, for the product's injectable clocks.

    Call it where a ``clock`` (monotonic seconds) is wanted, pass ``clock.now`` where a ``now`` (an aware
    UTC datetime) is wanted: both move together with ``advance``, so a test waits out a cache or a lease
    in no time, and a stall of a busy machine cannot change what the test sees.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime.now(UTC)
        self._elapsed = 0.0

    def __call__(self) -> float:
        # Far from zero: code that treats 0.0 as "never" must not mistake the start for it.
        return 1_000_000.0 + self._elapsed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        self._elapsed += seconds


def require_postgres() -> str:
    """The test PostgreSQL's URL; a skip outside CI, a failure in CI, when it does not answer."""
    try:
        engine = sqlalchemy.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        reachable = True
    except sqlalchemy.exc.OperationalError:
        reachable = False
    require(reachable, f"PostgreSQL is not reachable at {POSTGRES_URL}")
    return POSTGRES_URL


def require_redis() -> str:
    """The test Redis's URL; a skip outside CI, a failure in CI, when it does not answer."""
    try:
        reachable = bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        reachable = False
    require(reachable, f"Redis is not reachable at {REDIS_URL}")
    return REDIS_URL


@contextmanager
def scratch_database(kind: str, tmp_path: Path, *, pg_options: str = "") -> Iterator[Database]:
    """A new, empty product database: a SQLite file, or a schema of its own in the test PostgreSQL (other
    tests drop and recreate the tables of the shared database), removed afterwards."""
    if kind == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'scratch.db'}")
        try:
            yield database
        finally:
            database.dispose()
        return
    require_postgres()
    schema = f"scratch_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    url = sqlalchemy.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema} {pg_options}"})
    database = Database(url.render_as_string(hide_password=False))
    try:
        yield database
    finally:
        database.dispose()
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
