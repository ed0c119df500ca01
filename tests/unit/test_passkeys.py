"""Passkeys on a real SQLite database, answered by a small software authenticator (P-256, "none" attestation,
made here from the WebAuthn spec): a registration is checked against our origin and challenge, an assertion
is good once, a sign count that does not grow is refused, a removed passkey or another person's proves nothing,
and the throttle counts a wrong assertion as a wrong code."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from idp.mfa.factors import Factors
from idp.mfa.guard import CodeGuard
from idp.mfa.passkeys import PasskeyAssertion, PasskeyRefused, Passkeys
from idp.mfa.sealing import Sealer
from idp.settings import MfaSettings
from idp.store.attempts import AttemptCounters
from idp.store.db import Database

ORIGIN = "https://sso.example.test"
RP_ID = "sso.example.test"
ALICE, BOB = uuid.uuid4(), uuid.uuid4()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Authenticator:
    """One credential on a software authenticator that reports user presence and verification."""

    def __init__(self, *, origin: str = ORIGIN) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = uuid.uuid4().bytes
        self.count = 0
        self.origin = origin

    def create(self, options_json: str) -> str:
        options = json.loads(options_json)
        numbers = self.key.public_key().public_numbers()
        cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})
        attested = bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + cose
        auth_data = self._auth_data(0x45) + attested  # user present, verified, attested credential data
        client = self._client("webauthn.create", options["challenge"])
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        response = {"clientDataJSON": b64url(client), "attestationObject": b64url(attestation)}
        return json.dumps(self._credential({**response, "transports": ["internal"]}))

    def get(self, options_json: str, *, count: int | None = None) -> str:
        options = json.loads(options_json)
        self.count = self.count + 1 if count is None else count
        auth_data = self._auth_data(0x05)
        client = self._client("webauthn.get", options["challenge"])
        signature = self.key.sign(auth_data + hashlib.sha256(client).digest(), ec.ECDSA(hashes.SHA256()))
        response = {
            "clientDataJSON": b64url(client),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        return json.dumps(self._credential(response))

    def _auth_data(self, flags: int) -> bytes:
        return hashlib.sha256(RP_ID.encode()).digest() + bytes([flags]) + self.count.to_bytes(4, "big")

    def _client(self, kind: str, challenge: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": self.origin}).encode()

    def _credential(self, response: dict) -> dict:
        cid = b64url(self.credential_id)
        return {"id": cid, "rawId": cid, "type": "public-key", "response": response, "clientExtensionResults": {}}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'idp.db'}")
    yield database
    database.dispose()


@pytest.fixture
def passkeys(db: Database) -> Passkeys:
    return Passkeys(db, ORIGIN + "/", "Example")


def register(passkeys: Passkeys, who: uuid.UUID, authenticator: Authenticator) -> list[str]:
    ceremony = passkeys.registration(who, "alice@example.test", "Alice")
    return passkeys.register(
        who, "alice", authenticator.create(ceremony.options_json), ceremony.challenge
    ).recovery_codes


def sign_in(passkeys: Passkeys, who: uuid.UUID, authenticator: Authenticator, **kw: int) -> bool:
    ceremony = passkeys.authentication(who)
    assert ceremony is not None
    return passkeys.check(who, PasskeyAssertion(authenticator.get(ceremony.options_json, **kw), ceremony.challenge))


def test_register_then_sign_in_with_a_growing_count_only(passkeys: Passkeys, db: Database, tmp_path: Path):
    key = Authenticator()
    assert len(register(passkeys, ALICE, key)) == 10  # the first factor brings recovery codes
    assert register(passkeys, ALICE, Authenticator()) == []  # a second one does not replace them
    assert sign_in(passkeys, ALICE, key)
    assert sign_in(passkeys, ALICE, key)
    assert not sign_in(passkeys, ALICE, key, count=key.count)  # the same count again: a cloned key
    assert not sign_in(passkeys, ALICE, key, count=1)  # a count that went back
    assert sign_in(passkeys, ALICE, key, count=10)
    listed = Factors(db, Sealer(tmp_path / "mfa.key")).list(ALICE)
    assert [f.kind for f in listed] == ["webauthn", "webauthn"] and listed[0].last_used_at is not None


def test_an_assertion_answers_its_own_challenge_once(passkeys: Passkeys):
    key = Authenticator()
    register(passkeys, ALICE, key)
    ceremony = passkeys.authentication(ALICE)
    assert ceremony is not None
    answer = key.get(ceremony.options_json)
    assert passkeys.check(ALICE, PasskeyAssertion(answer, ceremony.challenge))
    assert not passkeys.check(ALICE, PasskeyAssertion(answer, ceremony.challenge))
    other = passkeys.authentication(ALICE)
    assert other is not None
    assert not passkeys.check(ALICE, PasskeyAssertion(key.get(ceremony.options_json), other.challenge))


def test_another_origin_a_known_key_or_garbage_is_refused(passkeys: Passkeys):
    phished = Authenticator(origin="https://sso.example.test.evil.example")
    ceremony = passkeys.registration(ALICE, "alice", None)
    with pytest.raises(PasskeyRefused):
        passkeys.register(ALICE, "alice", phished.create(ceremony.options_json), ceremony.challenge)
    with pytest.raises(PasskeyRefused):
        passkeys.register(ALICE, "alice", "{not json", ceremony.challenge)
    key = Authenticator()
    register(passkeys, ALICE, key)
    with pytest.raises(PasskeyRefused):
        register(passkeys, BOB, key)
    assert passkeys.authentication(BOB) is None
    assert not passkeys.check(ALICE, PasskeyAssertion("[]", b"x"))


def test_a_removed_passkey_or_another_persons_proves_nothing(passkeys: Passkeys, db: Database, tmp_path: Path):
    alices, bobs = Authenticator(), Authenticator()
    register(passkeys, ALICE, alices)
    register(passkeys, BOB, bobs)
    ceremony = passkeys.authentication(ALICE)
    assert ceremony is not None
    assert not passkeys.check(ALICE, PasskeyAssertion(bobs.get(ceremony.options_json), ceremony.challenge))
    factors = Factors(db, Sealer(tmp_path / "mfa.key"))
    [factor] = factors.list(ALICE)
    ceremony = passkeys.authentication(ALICE)
    assert ceremony is not None and factors.remove(ALICE, factor.id)
    assert not passkeys.check(ALICE, PasskeyAssertion(alices.get(ceremony.options_json), ceremony.challenge))
    assert passkeys.authentication(ALICE) is None


def test_wrong_assertions_count_against_the_throttle(passkeys: Passkeys, db: Database, tmp_path: Path):
    key = Authenticator()
    register(passkeys, ALICE, key)
    factors = Factors(db, Sealer(tmp_path / "mfa.key"))
    guard = CodeGuard(factors, AttemptCounters(db), MfaSettings(max_failures=2), passkeys=passkeys)
    ceremony = passkeys.authentication(ALICE)
    assert ceremony is not None
    assert guard.check(ALICE, PasskeyAssertion(key.get(ceremony.options_json), ceremony.challenge)) == "passkey"
    assert guard.check(ALICE, PasskeyAssertion(key.get(ceremony.options_json), b"not ours")) is None
    assert guard.check(ALICE, PasskeyAssertion(key.get(ceremony.options_json), b"not ours")) is None
    right = PasskeyAssertion(key.get(ceremony.options_json), ceremony.challenge)
    assert guard.check(ALICE, right) == "throttled"
