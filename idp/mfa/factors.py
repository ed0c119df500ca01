"""A person's second factors in the database: enrol, check (each code once), list, remove, reset.

Every check that accepts a code is one conditional UPDATE: two workers given the same code at once cannot
both accept it (the database decides, never a read-then-write in Python)."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

from sqlalchemy import Connection, delete, func, insert, select, update

from idp.mfa import recovery, totp
from idp.mfa.sealing import Sealer
from idp.store.db import Database, rowcount
from idp.store.models import MfaFactorRow, MfaRecoveryCodeRow, MfaRememberedBrowserRow, utcnow

Proof = Literal["totp", "recovery_code", "passkey"]


@dataclass(frozen=True)
class Factor:
    id: int
    kind: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class Enrolled:
    factor_id: int
    recovery_codes: list[str]
    """Shown once; only their digests are kept."""


class Factors:
    def __init__(self, db: Database, sealer: Sealer, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._sealer = sealer
        self._clock = clock

    def list(self, guid: UUID) -> list[Factor]:
        with self._db.engine.connect() as conn:
            rows = conn.execute(
                select(MfaFactorRow.id, MfaFactorRow.kind, MfaFactorRow.created_at, MfaFactorRow.last_used_at)
                .where(MfaFactorRow.guid == str(guid))
                .order_by(MfaFactorRow.id)
            ).all()
        return [Factor(r.id, r.kind, _utc(r.created_at), r.last_used_at and _utc(r.last_used_at)) for r in rows]

    def has_any(self, guid: UUID) -> bool:
        with self._db.engine.connect() as conn:
            found = conn.scalar(select(MfaFactorRow.id).where(MfaFactorRow.guid == str(guid)).limit(1))
        return found is not None

    def recovery_codes_left(self, guid: UUID) -> int:
        with self._db.engine.connect() as conn:
            found = conn.scalar(
                select(func.count()).where(MfaRecoveryCodeRow.guid == str(guid), MfaRecoveryCodeRow.used_at.is_(None))
            )
        return int(found or 0)

    def enrol_totp(self, guid: UUID, username: str, secret: str, confirming_step: int) -> Enrolled:
        """Keep a TOTP factor whose first code (of ``confirming_step``) was right, and replace the person's
        recovery codes with ten new ones."""
        codes = recovery.new_codes()
        with self._db.engine.begin() as conn:
            factor_id = conn.execute(
                insert(MfaFactorRow)
                .values(
                    guid=str(guid),
                    username=username,
                    kind="totp",
                    secret=self._sealer.seal(secret),
                    last_step=confirming_step,
                    created_at=utcnow(),
                )
                .returning(MfaFactorRow.id)
            ).scalar_one()
            conn.execute(delete(MfaRecoveryCodeRow).where(MfaRecoveryCodeRow.guid == str(guid)))
            conn.execute(insert(MfaRecoveryCodeRow), [{"digest": recovery.digest(c), "guid": str(guid)} for c in codes])
        return Enrolled(factor_id, codes)

    def check(self, guid: UUID, code: str) -> Proof | None:
        """What ``code`` proves for this person (a TOTP code not used before, or an unused recovery code),
        using it up; None when it proves nothing."""
        if recovery.looks_like_recovery_code(code):
            with self._db.engine.begin() as conn:
                used = conn.execute(
                    update(MfaRecoveryCodeRow)
                    .where(
                        MfaRecoveryCodeRow.digest == recovery.digest(code),
                        MfaRecoveryCodeRow.guid == str(guid),
                        MfaRecoveryCodeRow.used_at.is_(None),
                    )
                    .values(used_at=utcnow())
                )
            return "recovery_code" if rowcount(used) == 1 else None
        with self._db.engine.connect() as conn:
            rows = conn.execute(
                select(MfaFactorRow.id, MfaFactorRow.secret).where(
                    MfaFactorRow.guid == str(guid), MfaFactorRow.kind == "totp"
                )
            ).all()
        now = self._clock()
        for row in rows:
            step = totp.matching_step(self._sealer.open(row.secret), code, now=now)
            if step is None:
                continue
            with self._db.engine.begin() as conn:
                taken = conn.execute(
                    update(MfaFactorRow)
                    .where(
                        MfaFactorRow.id == row.id,
                        (MfaFactorRow.last_step.is_(None)) | (MfaFactorRow.last_step < step),
                    )
                    .values(last_step=step, last_used_at=utcnow())
                )
            return "totp" if rowcount(taken) == 1 else None
        return None

    def remove(self, guid: UUID, factor_id: int) -> bool:
        """Remove one factor of this person; with the last one go the recovery codes and remembered browsers."""
        with self._db.engine.begin() as conn:
            gone = rowcount(
                conn.execute(delete(MfaFactorRow).where(MfaFactorRow.id == factor_id, MfaFactorRow.guid == str(guid)))
            )
            left = conn.scalar(select(func.count()).where(MfaFactorRow.guid == str(guid)))
            if gone and not left:
                _forget_all(conn, str(guid))
        return gone == 1

    def reset(self, guid: UUID) -> int:
        """Every factor, recovery code and remembered browser of the person gone; how many factors were."""
        with self._db.engine.begin() as conn:
            gone = rowcount(conn.execute(delete(MfaFactorRow).where(MfaFactorRow.guid == str(guid))))
            _forget_all(conn, str(guid))
        return gone

    def guid_of(self, username: str) -> UUID | None:
        """The objectGUID factors were enrolled under for ``username`` (as recorded at enrolment)."""
        with self._db.engine.connect() as conn:
            found = conn.scalar(
                select(MfaFactorRow.guid).where(func.lower(MfaFactorRow.username) == username.casefold()).limit(1)
            )
        return UUID(found) if found else None

    # --- remembered browsers ----------------------------------------------------------------------------

    def remember_browser(self, guid: UUID, days: int) -> str:
        """A new token for this browser's cookie; only its digest is kept."""
        token = secrets.token_urlsafe(32)
        expires = datetime.fromtimestamp(self._clock(), UTC) + timedelta(days=days)
        with self._db.engine.begin() as conn:
            conn.execute(
                delete(MfaRememberedBrowserRow).where(
                    MfaRememberedBrowserRow.guid == str(guid), MfaRememberedBrowserRow.expires_at < utcnow()
                )
            )
            conn.execute(
                insert(MfaRememberedBrowserRow).values(digest=_digest(token), guid=str(guid), expires_at=expires)
            )
        return token

    def is_remembered(self, guid: UUID, token: str) -> bool:
        if not token or len(token) > 128:
            return False
        with self._db.engine.connect() as conn:
            expires = conn.scalar(
                select(MfaRememberedBrowserRow.expires_at).where(
                    MfaRememberedBrowserRow.digest == _digest(token), MfaRememberedBrowserRow.guid == str(guid)
                )
            )
        return expires is not None and _utc(expires).timestamp() > self._clock()


def _forget_all(conn: Connection, guid: str) -> None:
    conn.execute(delete(MfaRecoveryCodeRow).where(MfaRecoveryCodeRow.guid == guid))
    conn.execute(delete(MfaRememberedBrowserRow).where(MfaRememberedBrowserRow.guid == guid))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(at: datetime) -> datetime:
    # SQLite hands back naive datetimes (which are UTC); PostgreSQL aware ones.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
