"""The per-address throttle (password spraying) counts a wrong current password typed at the change form as it
counts a wrong password at the login form, on SQLite and PostgreSQL, through the partial index made for it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from idp.audit import AuditTrail
from idp.settings import LoginSettings
from idp.signin.throttle import LoginThrottle
from idp.store.attempts import AttemptCounters
from idp.store.db import Database
from tests.support import scratch_database

SPRAYER = "198.51.100.7"
NEIGHBOUR = "198.51.100.8"


def test_wrong_current_passwords_count_against_the_address(db: Database) -> None:
    audit = AuditTrail(db)
    throttle = LoginThrottle(audit, LoginSettings(max_failures_per_ip=3), AttemptCounters(db))
    audit.record("signin", "failure", reason="invalid_credentials", username="alice", ip=SPRAYER)
    audit.record("password_changed", "failure", reason="invalid_credentials", username="bob", ip=SPRAYER)
    # Neither is a wrong password AD refused: a rule the new password broke, a form refused before AD.
    audit.record("password_changed", "failure", reason="password_in_history", username="carol", ip=SPRAYER)
    audit.record("password_changed", "refused", reason="password_mismatch", username="dave", ip=SPRAYER)
    assert not throttle.address_blocked(SPRAYER)

    audit.record("password_changed", "failure", reason="invalid_credentials", username="erin", ip=SPRAYER)
    assert throttle.address_blocked(SPRAYER)
    assert not throttle.address_blocked(NEIGHBOUR)


def test_sqlite_counts_through_the_partial_index(tmp_path: Path) -> None:
    """The statement as the throttle runs it: SQLite takes a partial index only when the query repeats the
    index's terms, and a full scan of the audit trail at every login is what the index is there to avoid."""
    with scratch_database("sqlite", tmp_path) as db:
        sent: list[tuple[str, Any]] = []
        event.listen(db.engine, "before_cursor_execute", lambda _c, _cur, sql, params, *_: sent.append((sql, params)))
        AuditTrail(db).count_password_failures(datetime.now(UTC), ("invalid_credentials",), ip=SPRAYER)
        (sql, params), *_ = [s for s in sent if "count" in s[0].lower()]
        with db.engine.connect() as conn:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
    assert any("ix_audit_fail_ip_at" in str(row) for row in plan), plan
