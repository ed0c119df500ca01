"""The database schema, moved forward with Alembic (idp/store/migrations).

Every process that opens the database brings it to the newest revision first (``idp serve`` does it once
before its workers fork; ``idp db upgrade`` does it on its own), under a lock, so that several nodes or
processes starting at once do not race: the first migrates, the others find it done. A database made before
migrations existed (by the first release's create_all) is recognised by its tables, recorded as the first
revision and moved forward from there. A database newer than this code (a rollback after an upgrade) stops
the process with a message, rather than letting it write to a schema it does not know.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine

FIRST_REVISION = "0001"
_FIRST_TABLES = frozenset({"audit_events", "sp_policies", "provisioning_records", "saml_seen_requests"})
"""Tables that only the product makes: with these present and no version recorded, create_all made them."""
_PG_LOCK_KEY = 0x1D9_5C4E_3A
"""Any constant: the PostgreSQL advisory lock every migrating process takes."""


class SchemaError(Exception):
    """The database's schema cannot be brought to this version's: the message says why and what to do."""


@cache
def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this code knows."""
    found = _scripts().get_current_head()
    assert found is not None  # versions/ ships with the package
    return found


def current(engine: Engine) -> str | None:
    """The revision the database is at; None when none is recorded (empty, or made by create_all)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to ``head()``; return (revision before, revision after). Cheap when it is there."""
    target = head()
    before = current(engine)
    if before == target:
        return before, target
    with _locked(engine) as conn:
        before = MigrationContext.configure(conn).get_current_revision()  # another process may have done it
        if before == target:
            return before, target
        if before is not None and _unknown(before):
            raise SchemaError(
                f"the database's schema is at revision {before}, which this version of ad-sso-bridge does not "
                f"know (its newest is {target}): it was upgraded by a newer version. Run that version, or "
                "restore the backup taken before the upgrade."
            )
        config = _config()
        config.attributes["connection"] = conn
        if before is None and set(inspect(conn).get_table_names()) >= _FIRST_TABLES:
            command.stamp(config, FIRST_REVISION)
            before = FIRST_REVISION
        command.upgrade(config, target)
        conn.commit()
    return before, target


def _unknown(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is None
    except CommandError:  # what alembic raises for an id none of its files defines
        return True


@contextlib.contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection held under a lock that every migrating process takes: PostgreSQL's advisory lock, or a
    lock file beside a SQLite database (an in-memory one is private to its process and needs none)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK_KEY})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY})
                conn.commit()
            return
        database = engine.url.database
        if engine.dialect.name != "sqlite" or not database or database == ":memory:":
            yield conn
            return
        # Readable by its owner only, like the database beside it (the file itself stays empty).
        with os.fdopen(os.open(f"{database}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield conn
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
