"""Schema migrations against SQLite and the real PostgreSQL: a database made by the first release (create_all,
no version recorded) with rows in it is moved to the newest revision with nothing lost; the migrations make
exactly the schema the models describe; processes starting at once migrate once; a database newer than the
code is refused with words; `idp db backup` copies a live SQLite database that can be put back."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Boolean, Engine, MetaData, create_engine, text

from idp.audit import AuditTrail
from idp.cli import cli
from idp.store import schema
from idp.store.db import Database
from idp.store.models import Base
from tests.support import scratch_database

FIRST_RELEASE = Path(__file__).parents[1] / "data" / "first-release-sqlite.sql"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database with no tables at all (a scratch SQLite file, or a scratch PostgreSQL schema)."""
    with scratch_database(request.param, tmp_path) as db:
        with db.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(text(f'DROP TABLE IF EXISTS "{table.name}"'))
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        yield db.engine


def _first_release(engine: Engine) -> None:
    """The first release's tables and rows, as its create_all left them: no alembic_version table."""
    if engine.dialect.name == "sqlite":
        raw = sqlite3.connect(str(engine.url.database))
        raw.executescript(FIRST_RELEASE.read_text())
        raw.close()
        return
    # PostgreSQL: the first revision's tables, then the same rows, read from the SQLite file of that release.
    config = schema._config()
    source = sqlite3.connect(":memory:")
    source.executescript(FIRST_RELEASE.read_text())
    source.row_factory = sqlite3.Row
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, schema.FIRST_REVISION)
        conn.execute(text("DROP TABLE alembic_version"))
        tables = MetaData()
        tables.reflect(conn)
        for table in tables.sorted_tables:
            rows = [dict(r) for r in source.execute(f'SELECT * FROM "{table.name}"')]  # noqa: S608 - our own table names
            for row in rows:
                for column in table.columns:
                    if isinstance(column.type, Boolean) and row.get(column.name) is not None:
                        row[column.name] = bool(row[column.name])
            if rows:
                conn.execute(table.insert(), rows)
        conn.commit()
    source.close()


def test_a_first_release_database_is_moved_forward_with_its_rows(empty: Engine) -> None:
    _first_release(empty)
    assert schema.current(empty) is None
    before, after = schema.upgrade(empty)
    assert (before, after) == (schema.FIRST_REVISION, schema.head())
    assert schema.current(empty) == schema.head()
    with empty.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit_events")) == 2
        assert conn.scalar(text("SELECT policy FROM sp_policies")) is not None
        assert conn.scalar(text("SELECT email FROM provisioning_records")) == "alice@example.test"
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db = Database(empty.url.render_as_string(hide_password=False))
    try:
        rows = AuditTrail(db).recent(10)
    finally:
        db.dispose()
    assert [(r.username, r.result) for r in rows] == [("bob", "failure"), ("alice", "success")]


def test_the_migrations_make_exactly_the_models_schema(empty: Engine) -> None:
    assert schema.upgrade(empty) == (None, schema.head())
    with empty.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert schema.upgrade(empty) == (schema.head(), schema.head())  # a second run changes nothing


def _upgrade_in_a_new_process(url: str) -> str:
    engine = create_engine(url)
    try:
        return schema.upgrade(engine)[1]
    finally:
        engine.dispose()


def test_processes_starting_at_once_migrate_once(empty: Engine) -> None:
    url = empty.url.render_as_string(hide_password=False)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_upgrade_in_a_new_process, [url] * 4)
    assert results == [schema.head()] * 4
    with empty.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [schema.head()]


def test_a_database_newer_than_the_code_is_refused(empty: Engine) -> None:
    schema.upgrade(empty)
    with empty.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    with pytest.raises(schema.SchemaError, match=r"f00dfeed.*newer version"):
        schema.upgrade(empty)


def test_backup_of_a_live_sqlite_database_can_be_put_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "idp.toml"
    config.write_text(
        f'[server]\nbase_url = "https://idp.example.test"\ndata_dir = "{data}"\n'
        '[ldap]\nurls = ["ldaps://dc.example.test"]\nbase_dn = "DC=example,DC=test"\n'
        'bind_dn = "CN=svc,DC=example,DC=test"\nbind_password = "x"\n'
    )
    runner = CliRunner()
    env = {"IDP_CONFIG": str(config)}
    upgraded = runner.invoke(cli, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 0, upgraded.output
    url = f"sqlite:///{data / 'idp.db'}"
    db = Database(url)
    AuditTrail(db).record("signin", "success", username="kept")
    copy = tmp_path / "backup.db"
    done = runner.invoke(cli, ["db", "backup", str(copy)], env=env)
    assert done.exit_code == 0, done.output
    assert copy.stat().st_mode & 0o777 == 0o600
    AuditTrail(db).record("signin", "success", username="after the backup")
    db.dispose()
    (data / "idp.db").write_bytes(copy.read_bytes())  # restore: the IdP stopped, the copy put back
    restored = Database(url)
    try:
        assert [r.username for r in AuditTrail(restored).recent(10)] == ["kept"]
    finally:
        restored.dispose()
    again = runner.invoke(cli, ["db", "backup", str(copy)], env=env)
    assert again.exit_code != 0 and "exists" in again.output
