"""The second factor's rules on a real SQLite database: when a sign-in needs one (and that asking costs no query
when nothing does), codes good once, secrets sealed under their key file, recovery codes hashed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import event

from idp.audit import AuditTrail
from idp.mfa.factors import Factors
from idp.mfa.guard import CodeGuard
from idp.mfa.policy import REFEDS_MFA, MfaPolicy, requests_mfa
from idp.mfa.sealing import Sealer, SealError
from idp.person import Person
from idp.saml.messages import AuthnRequestInfo
from idp.settings import MfaSettings
from idp.signin.context import NeedsSecondFactor, Refused, SignInContext, SsoSession
from idp.signin.steps import SecondFactor
from idp.sps.policy import SpPolicy
from idp.store.attempts import AttemptCounters
from idp.store.db import Database

ALICE = Person(username="alice", dn="CN=alice,DC=example,DC=test", guid=uuid.uuid4(), unique_group_names=("Finance",))
SP = "https://mail.example.test/sp"


class Policies:
    """The SP registry as the step reads it: one policy per entityID."""

    def __init__(self, **policies: SpPolicy) -> None:
        self.policies = policies

    def policy_for(self, entity_id: str) -> SpPolicy:
        return self.policies.get(entity_id, SpPolicy())


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'idp.db'}")
    yield database
    database.dispose()


@pytest.fixture
def factors(db: Database, tmp_path: Path) -> Factors:
    return Factors(db, Sealer(tmp_path / "certs" / "mfa.key"))


def step(db: Database, factors: Factors, settings: MfaSettings, sps: Policies) -> SecondFactor:
    guard = CodeGuard(factors, AttemptCounters(db), settings)
    return SecondFactor(
        MfaPolicy(settings),
        factors,
        guard,
        sps,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # SAML answers only a passive request, not made here
        AuditTrail(db),
        enrol_at_signin=settings.enrol_at_signin,
    )


def context(requested: tuple[str, ...] = ()) -> SignInContext:
    request = AuthnRequestInfo("_r1", SP, "Mail", "https://mail/acs", "post", False, False, None, None, requested)
    return SignInContext(ip="192.0.2.1", request=request, person=ALICE, session=SsoSession(ALICE, "_s", time.time()))


def test_nothing_asks_for_a_second_factor_and_asking_costs_no_query(db: Database, factors: Factors):
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    ctx = context()
    assert step(db, factors, MfaSettings(required_groups=["Sales"]), Policies()).process(ctx) is None
    assert statements == [] and ctx.session is not None and ctx.session.mfa_at is None


@pytest.mark.parametrize(
    ("settings", "sps", "requested"),
    [
        (MfaSettings(required_groups=["Finance"]), Policies(), ()),
        (MfaSettings(), Policies(**{SP: SpPolicy(mfa="required")}), ()),
        (MfaSettings(), Policies(), (REFEDS_MFA,)),
    ],
    ids=["group", "sp-policy", "requested"],
)
def test_a_group_an_sp_policy_or_the_request_asks_for_one(
    db: Database, factors: Factors, settings: MfaSettings, sps: Policies, requested: tuple[str, ...]
):
    assert step(db, factors, settings, sps).process(context(requested)) == NeedsSecondFactor(enrol=True, sp_name="Mail")
    closed = MfaSettings(required_groups=["Finance"], enrol_at_signin=False)
    refused = step(db, factors, closed, Policies()).process(context())
    assert isinstance(refused, Refused) and (refused.reason, refused.status) == ("mfa_not_enrolled", 403)


def test_a_request_that_also_accepts_a_password_does_not_need_a_second_factor():
    password = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
    assert requests_mfa((REFEDS_MFA,)) and not requests_mfa((password, REFEDS_MFA)) and not requests_mfa(())


def test_a_code_is_good_once_and_a_recovery_code_once(db: Database, factors: Factors):
    secret = pyotp.random_base32()
    enrolled = factors.enrol_totp(ALICE.guid, "alice", secret, confirming_step=0)
    code = pyotp.TOTP(secret).now()
    assert factors.check(ALICE.guid, code) == "totp"
    assert factors.check(ALICE.guid, code) is None
    assert factors.check(uuid.uuid4(), enrolled.recovery_codes[0]) is None  # someone else's code
    assert factors.check(ALICE.guid, enrolled.recovery_codes[0]) == "recovery_code"
    assert factors.check(ALICE.guid, enrolled.recovery_codes[0]) is None
    assert factors.recovery_codes_left(ALICE.guid) == 9


def test_a_right_code_after_the_limit_of_wrong_ones_is_refused(db: Database, factors: Factors):
    secret = pyotp.random_base32()
    factors.enrol_totp(ALICE.guid, "alice", secret, confirming_step=0)
    guard = CodeGuard(factors, AttemptCounters(db), MfaSettings(max_failures=2))
    assert [guard.check(ALICE.guid, "abc") for _ in range(2)] == [None, None]
    assert guard.check(ALICE.guid, pyotp.TOTP(secret).now()) == "throttled"


def test_secrets_are_sealed_under_a_0600_key_file_and_a_replaced_key_says_so(tmp_path: Path):
    key = tmp_path / "certs" / "mfa.key"
    sealed = Sealer(key).seal("JBSWY3DPEHPK3PXP")
    assert "JBSWY3DPEHPK3PXP" not in sealed and Sealer(key).open(sealed) == "JBSWY3DPEHPK3PXP"
    assert key.stat().st_mode & 0o777 == 0o600
    key.unlink()
    with pytest.raises(SealError, match="does not open"):
        Sealer(key).open(sealed)
