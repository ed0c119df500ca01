"""What the integration tests share: a scratch product database on each engine the product supports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from idp.store.db import Database
from tests.support import scratch_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A new, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    with scratch_database(request.param, tmp_path) as database:
        yield database
