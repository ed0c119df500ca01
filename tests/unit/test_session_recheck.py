"""A reused SSO session follows AD (RecheckPerson): rechecked at most every recheck_seconds, ended when AD
says no or an admin revoked it, and carried over a DC outage only for a bounded grace period."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from idp.audit import AuditTrail
from idp.directory.account import account_refusal
from idp.directory.errors import (
    AccountDisabled,
    AccountExpired,
    AccountLocked,
    DirectoryError,
    DirectoryUnavailable,
    PasswordExpired,
    PasswordMustChange,
)
from idp.person import Person
from idp.settings import LoginSettings
from idp.signin.context import Refused, SignInContext, SsoSession
from idp.signin.sessions import LiveSession, SsoSessionIndex
from idp.signin.steps import RecheckPerson
from idp.store.db import Database
from tests.support import FakeClock

ALICE = Person(username="alice", dn="CN=alice,DC=example,DC=test", guid=uuid.uuid4(), groups=("Mail Users",))


class FakeDirectory:
    """AD as the recheck sees it: the person (or None), or an error to raise; counts the questions."""

    def __init__(self) -> None:
        self.answer: Person | DirectoryError | None = replace(ALICE, groups=("Mail Users", "Finance"))
        self.asked = 0

    def recheck(self, guid: uuid.UUID) -> Person | None:
        self.asked += 1
        assert guid == ALICE.guid
        if isinstance(self.answer, DirectoryError):
            raise self.answer
        return self.answer


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'idp.db'}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def index(db: Database, clock: FakeClock) -> SsoSessionIndex:
    return SsoSessionIndex(db, AuditTrail(db), now=clock.now)


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory()


@pytest.fixture
def step(directory: FakeDirectory, index: SsoSessionIndex, clock: FakeClock) -> RecheckPerson:
    return RecheckPerson(directory, index, LoginSettings(recheck_seconds=60), clock=clock)  # type: ignore[arg-type]


def reuse(session: SsoSession) -> SignInContext:
    """The context as ReuseSsoSession leaves it for a browser that came with ``session``."""
    return SignInContext(ip="192.0.2.7", session=session, person=session.person)


def signed_in_at(clock: FakeClock) -> SsoSession:
    return SsoSession(ALICE, "_" + uuid.uuid4().hex, clock())


def live(session: SsoSession, clock: FakeClock) -> LiveSession:
    now = clock.now()
    return LiveSession(session.session_index, "alice", now, now, now + timedelta(hours=8), "192.0.2.7", ())


def test_a_session_checked_within_recheck_seconds_does_not_ask_ad(step, directory, clock):
    session = signed_in_at(clock)
    clock.advance(59)
    ctx = reuse(session)
    assert step.process(ctx) is None
    assert directory.asked == 0 and not ctx.session_rechecked and ctx.person is ALICE


def test_an_older_session_is_rechecked_and_carries_the_current_groups(step, directory, clock):
    session = signed_in_at(clock)
    clock.advance(61)
    ctx = reuse(session)
    assert step.process(ctx) is None
    assert directory.asked == 1
    assert ctx.session_rechecked and ctx.person is not None and "Finance" in ctx.person.groups
    assert ctx.session is not None and ctx.session.checked_at == clock() and ctx.session.person == ctx.person
    # The next reuse counts from this check, not from the password.
    clock.advance(30)
    assert step.process(reuse(ctx.session)) is None
    assert directory.asked == 1


@pytest.mark.parametrize(
    "error", [AccountDisabled(), AccountExpired(), AccountLocked(), PasswordExpired(), PasswordMustChange()]
)
def test_ad_saying_no_ends_the_session_with_ads_reason(step, directory, clock, error):
    directory.answer = error
    session = signed_in_at(clock)
    clock.advance(61)
    ctx = reuse(session)
    outcome = step.process(ctx)
    assert isinstance(outcome, Refused) and outcome.reason == error.reason and outcome.status == 403
    assert ctx.session_ended


def test_a_person_gone_from_ad_ends_the_session(step, directory, clock):
    directory.answer = None
    session = signed_in_at(clock)
    clock.advance(61)
    ctx = reuse(session)
    outcome = step.process(ctx)
    assert isinstance(outcome, Refused) and outcome.reason == "account_not_found"
    assert ctx.session_ended


def test_a_dc_outage_is_ridden_out_for_five_recheck_intervals_then_refused(step, directory, clock):
    session = signed_in_at(clock)
    directory.answer = DirectoryUnavailable("no domain controller answered")
    clock.advance(61)
    ctx = reuse(session)
    assert step.process(ctx) is None  # allowed on the last good answer, which is not moved forward
    assert directory.asked == 1 and not ctx.session_rechecked and ctx.person is ALICE
    clock.advance(299 - 61)
    assert step.process(reuse(session)) is None
    clock.advance(1)  # 300 s = 5 x 60 s since AD last said yes
    ctx = reuse(session)
    outcome = step.process(ctx)
    assert isinstance(outcome, Refused) and (outcome.reason, outcome.status) == ("directory_unavailable", 503)
    # AD said nothing against the person: the session stays, and works again once AD answers.
    assert not ctx.session_ended
    directory.answer = ALICE
    ctx = reuse(session)
    assert step.process(ctx) is None and ctx.session_rechecked


def test_with_recheck_seconds_zero_every_reuse_asks_ad_and_an_outage_refuses_at_once(directory, index, clock):
    step = RecheckPerson(directory, index, LoginSettings(recheck_seconds=0), clock=clock)  # type: ignore[arg-type]
    session = signed_in_at(clock)
    assert step.process(reuse(session)) is None
    assert directory.asked == 1
    directory.answer = DirectoryUnavailable()
    outcome = step.process(reuse(session))
    assert isinstance(outcome, Refused) and outcome.reason == "directory_unavailable"


def test_a_revoked_session_ends_at_its_next_use_without_asking_ad(step, directory, index, clock, db):
    session = signed_in_at(clock)
    other = signed_in_at(clock)
    db.write(index.starting(live(session, clock)))
    db.write(index.starting(live(other, clock)))
    assert index.revoke("Alice", actor="bob", ip="198.51.100.1", session_index=session.session_index) == 1
    ctx = reuse(session)
    outcome = step.process(ctx)
    assert isinstance(outcome, Refused) and outcome.reason == "session_revoked" and ctx.session_ended
    assert directory.asked == 0
    assert step.process(reuse(other)) is None  # only the one session was revoked


def test_the_index_lists_live_sessions_and_a_revoke_is_audited(index, clock, db):
    first, second = signed_in_at(clock), signed_in_at(clock)
    db.write(index.starting(live(first, clock)))
    clock.advance(1)
    db.write(index.starting(replace(live(second, clock), sps=("https://mail.example.test",))))
    assert [s.session_index for s in index.live()] == [second.session_index, first.session_index]
    assert index.live("ALICE")[0].sps == ("https://mail.example.test",)

    assert index.revoke("alice", actor="cli:root") == 2
    assert index.live() == [] and index.revoked(first.session_index) and index.revoked(second.session_index)
    # A later write of the session (a recheck racing the revoke) does not undo it.
    index.save(live(first, clock))
    assert index.revoked(first.session_index)
    assert index.revoke("alice", actor="cli:root") == 0

    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT result, reason, username, detail FROM audit_events WHERE event = 'session_revoked' ORDER BY id"
        ).all()
    assert [(r.result, r.reason, r.username) for r in rows] == [
        ("success", None, "cli:root"),
        ("refused", "not_found", "cli:root"),
    ]
    assert json.loads(rows[0].detail)["after"] == {"user": "alice", "session": None, "revoked": 2}


def test_logout_removes_the_row_and_expired_rows_go_at_the_next_start(index, clock, db):
    session = signed_in_at(clock)
    db.write(index.starting(live(session, clock)))
    index.ended(session.session_index)
    assert index.live() == [] and not index.revoked(session.session_index)

    db.write(index.starting(live(session, clock)))
    clock.advance(8 * 3600 + 1)
    assert index.live() == []
    fresh = signed_in_at(clock)
    db.write(index.starting(live(fresh, clock)))
    assert [s.session_index for s in index.live()] == [fresh.session_index]


# --- what AD's attributes say about an account (the recheck has no bind to ask) -----------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()


def filetime(epoch: float) -> str:
    return str(int((epoch + 11_644_473_600) * 10_000_000))


def state(**values: str):
    return lambda name: values.get(name)


def test_an_enabled_account_may_sign_in():
    assert account_refusal(state(userAccountControl="512", accountExpires="0", pwdLastSet="1"), NOW) is None
    never = str(0x7FFFFFFFFFFFFFFF)
    assert account_refusal(state(userAccountControl="66048", accountExpires=never, pwdLastSet="1"), NOW) is None
    assert account_refusal(state(userAccountControl="512", accountExpires=filetime(NOW + 60)), NOW) is None


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"userAccountControl": "514"}, "account_disabled"),
        ({"userAccountControl": "512", "accountExpires": filetime(NOW - 1)}, "account_expired"),
        ({"userAccountControl": "512", "msDS-User-Account-Control-Computed": "16"}, "account_locked"),
        ({"userAccountControl": "512", "pwdLastSet": "0"}, "password_must_change"),
        ({"userAccountControl": "512", "msDS-User-Account-Control-Computed": str(0x800000)}, "password_expired"),
    ],
)
def test_ad_attributes_give_the_reason_a_bind_would(values, reason):
    refusal = account_refusal(state(**values), NOW)
    assert refusal is not None and refusal.reason == reason
