"""A sign-in ends with one commit: its audit row, the shared index's row of the session it starts and the
throttle's count it clears go to the database together, all or none (idp.signin.pipeline.SignIn.run)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from idp.audit import AuditTrail
from idp.person import Person
from idp.saml.messages import AuthnRequestInfo
from idp.signin.context import NeedsSecondFactor, Outcome, SignedIn, SignInContext, SsoSession
from idp.signin.pipeline import SignIn
from idp.signin.sessions import SsoSessionIndex
from idp.store.attempts import AttemptCounters, clearing
from idp.store.db import Database
from idp.store.models import AuditEvent

ALICE = Person(username="alice", dn="CN=alice,DC=example,DC=test", guid=uuid.uuid4())
KEY = f"account:{ALICE.guid}"
SP = "https://mail.example.test/saml"
LIFETIME = 8 * 3600


class PasswordChecked:
    """Stands for the password check AD just passed: what Authenticate leaves in the context."""

    previews = False

    def __init__(self, session_index: str, then: Outcome | None = None) -> None:
        self._session_index = session_index
        self._then = then

    def process(self, ctx: SignInContext) -> Outcome | None:
        ctx.person = ALICE
        ctx.session = SsoSession(ALICE, self._session_index, time.time())
        ctx.signed_in_now = True
        ctx.writes.append(clearing(KEY))
        return self._then


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'idp.db'}")
    yield database
    database.dispose()


def run(db: Database, step: PasswordChecked) -> Outcome:
    audit = AuditTrail(db)
    index = SsoSessionIndex(db, audit)
    request = AuthnRequestInfo("_r1", SP, "Mail", "https://mail/acs", "post", False, False, None, None)
    pipeline = SignIn([step], None, audit, index, LIFETIME, db)  # type: ignore[arg-type,list-item]  # no preview here
    return pipeline.run(SignInContext(ip="192.0.2.7", request=request))


def audit_rows(db: Database) -> list[tuple[str, str, str | None]]:
    with db.session() as s:
        return [(r.event, r.result, r.reason) for r in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_a_password_sign_in_is_one_commit_of_its_audit_row_session_and_cleared_count(db: Database) -> None:
    counters = AttemptCounters(db)
    assert counters.take(KEY, 5, 600) == 1  # the place the password attempt took before the bind
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: commits.append(1))

    assert isinstance(run(db, PasswordChecked("_s1")), SignedIn)

    assert len(commits) == 1
    assert audit_rows(db) == [("signin", "success", "password")]
    [live] = SsoSessionIndex(db, AuditTrail(db)).live("alice")
    assert live.session_index == "_s1" and live.client_ip == "192.0.2.7"
    assert (live.expires_at - live.started_at).total_seconds() == LIFETIME
    assert counters.count(KEY, 600) == 0


def test_when_the_commit_fails_none_of_the_rows_is_kept(db: Database) -> None:
    counters = AttemptCounters(db)
    counters.take(KEY, 5, 600)
    run(db, PasswordChecked("_taken"))
    counters.take(KEY, 5, 600)
    # The same session index again: its row cannot be inserted, so the audit row and the clear go with it.
    with pytest.raises(IntegrityError):
        run(db, PasswordChecked("_taken"))
    assert audit_rows(db) == [("signin", "success", "password")]
    assert counters.count(KEY, 600) == 1


def test_a_sign_in_that_goes_on_to_a_second_factor_commits_its_rows_without_an_audit_row(db: Database) -> None:
    counters = AttemptCounters(db)
    counters.take(KEY, 5, 600)
    assert run(db, PasswordChecked("_s2", then=NeedsSecondFactor(enrol=False, sp_name="Mail"))) == NeedsSecondFactor(
        enrol=False, sp_name="Mail"
    )
    assert audit_rows(db) == []
    assert [s.session_index for s in SsoSessionIndex(db, AuditTrail(db)).live()] == ["_s2"]
    assert counters.count(KEY, 600) == 0
