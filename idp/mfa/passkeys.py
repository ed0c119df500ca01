"""Passkeys and security keys (WebAuthn) as a second factor: the options the browser is given, and the check of
what it answers. The relying party is the IdP's own origin (``server.base_url``); its host is the RP ID.

A passkey is a row of ``mfa_factors`` (kind "webauthn"), so listing, removing and an admin's reset treat it as
any other factor. Its public key is not a secret and is kept as is. A sign count that does not grow is refused
(a cloned authenticator), and the new count is stored by one conditional UPDATE, so two workers given the
same assertion cannot both accept it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit
from uuid import UUID

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import parse_authentication_credential_json, parse_registration_credential_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.registration.verify_registration_response import VerifiedRegistration

from idp.mfa import recovery
from idp.mfa.factors import Enrolled
from idp.store.db import Database, rowcount
from idp.store.models import MfaFactorRow, MfaRecoveryCodeRow, utcnow

KIND = "webauthn"
MAX_RESPONSE = 16_384
"""Bytes of a browser's answer we read at most: an attestation without certificates is well under 2 KB."""


class PasskeyRefused(Exception):
    """A registration the browser sent could not be verified (wrong origin or challenge, malformed, known)."""


@dataclass(frozen=True)
class Ceremony:
    """Options for navigator.credentials (JSON, for the page) and the challenge they carry (kept server-side)."""

    options_json: str
    challenge: bytes


@dataclass(frozen=True)
class PasskeyAssertion:
    """What navigator.credentials.get() answered (JSON), with the challenge this server had given."""

    response_json: str
    challenge: bytes


class Passkeys:
    def __init__(self, db: Database, base_url: str, rp_name: str) -> None:
        self._db = db
        self._origin = base_url.rstrip("/")
        self._rp_id = urlsplit(self._origin).hostname or ""
        self._rp_name = rp_name

    def registration(self, guid: UUID, username: str, display_name: str | None) -> Ceremony:
        options = generate_registration_options(
            rp_id=self._rp_id,
            rp_name=self._rp_name,
            user_name=username,
            user_id=guid.bytes,
            user_display_name=display_name or username,
            authenticator_selection=_selection(),
            exclude_credentials=self._descriptors(guid),
        )
        return Ceremony(options_to_json(options), options.challenge)

    def register(self, guid: UUID, username: str, response_json: str, challenge: bytes) -> Enrolled:
        """Keep the passkey the browser created; the first factor of a person also gets ten recovery codes
        (none otherwise: they are replaced only with a new authenticator app)."""
        try:
            credential = parse_registration_credential_json(response_json[:MAX_RESPONSE])
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self._rp_id,
                expected_origin=self._origin,
            )
        except (WebAuthnException, ValueError, TypeError) as exc:
            raise PasskeyRefused(str(exc)) from exc
        transports = ",".join(t.value for t in credential.response.transports or [])
        try:
            return self._keep(guid, username, verified, transports)
        except IntegrityError as exc:  # the same key sent twice at once: the unique index decides
            raise PasskeyRefused("this passkey is registered already") from exc

    def _keep(self, guid: UUID, username: str, verified: VerifiedRegistration, transports: str) -> Enrolled:
        codes: list[str] = []
        with self._db.engine.begin() as conn:
            if conn.scalar(select(MfaFactorRow.id).where(MfaFactorRow.credential_id == verified.credential_id)):
                raise PasskeyRefused("this passkey is registered already")
            first = not conn.scalar(select(func.count()).where(MfaFactorRow.guid == str(guid)))
            factor_id = conn.execute(
                insert(MfaFactorRow)
                .values(
                    guid=str(guid),
                    username=username,
                    kind=KIND,
                    credential_id=verified.credential_id,
                    public_key=verified.credential_public_key,
                    sign_count=verified.sign_count,
                    transports=transports,
                    created_at=utcnow(),
                )
                .returning(MfaFactorRow.id)
            ).scalar_one()
            if first:
                codes = recovery.new_codes()
                conn.execute(
                    insert(MfaRecoveryCodeRow), [{"digest": recovery.digest(c), "guid": str(guid)} for c in codes]
                )
        return Enrolled(factor_id, codes)

    def authentication(self, guid: UUID) -> Ceremony | None:
        """Options to sign in with one of the person's passkeys; None when they have none."""
        allowed = self._descriptors(guid)
        if not allowed:
            return None
        options = generate_authentication_options(
            rp_id=self._rp_id, allow_credentials=allowed, user_verification=UserVerificationRequirement.PREFERRED
        )
        return Ceremony(options_to_json(options), options.challenge)

    def check(self, guid: UUID, assertion: PasskeyAssertion) -> bool:
        """True when the assertion is signed by a passkey of this person, for our challenge, with a sign count
        that grew (or an authenticator that keeps none); its use is recorded."""
        try:
            credential = parse_authentication_credential_json(assertion.response_json[:MAX_RESPONSE])
        except (WebAuthnException, ValueError, TypeError):
            return False
        with self._db.engine.connect() as conn:
            row = conn.execute(
                select(MfaFactorRow.id, MfaFactorRow.public_key, MfaFactorRow.sign_count).where(
                    MfaFactorRow.guid == str(guid),
                    MfaFactorRow.kind == KIND,
                    MfaFactorRow.credential_id == credential.raw_id,
                )
            ).first()
        if row is None or row.public_key is None:
            return False
        stored = row.sign_count or 0
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=assertion.challenge,
                expected_rp_id=self._rp_id,
                expected_origin=self._origin,
                credential_public_key=row.public_key,
                credential_current_sign_count=stored,
            )
        except (WebAuthnException, ValueError, TypeError):
            return False
        # verify_authentication_response refused a count that did not grow; this UPDATE takes the count we
        # checked against, so of two workers given one assertion only the first wins.
        with self._db.engine.begin() as conn:
            taken = conn.execute(
                update(MfaFactorRow)
                .where(MfaFactorRow.id == row.id, MfaFactorRow.sign_count == stored)
                .values(sign_count=verified.new_sign_count, last_used_at=utcnow())
            )
        return rowcount(taken) == 1

    def _descriptors(self, guid: UUID) -> list[PublicKeyCredentialDescriptor]:
        with self._db.engine.connect() as conn:
            rows = conn.execute(
                select(MfaFactorRow.credential_id, MfaFactorRow.transports).where(
                    MfaFactorRow.guid == str(guid), MfaFactorRow.kind == KIND
                )
            ).all()
        return [
            PublicKeyCredentialDescriptor(id=r.credential_id, transports=_transports(r.transports))
            for r in rows
            if r.credential_id is not None
        ]


def _selection() -> AuthenticatorSelectionCriteria:
    return AuthenticatorSelectionCriteria(
        resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED
    )


def _transports(stored: str | None) -> list[AuthenticatorTransport] | None:
    known = {t.value for t in AuthenticatorTransport}
    found = [AuthenticatorTransport(t) for t in (stored or "").split(",") if t in known]
    return found or None
