"""Authorization codes and tokens in the database, each by its SHA-256 only: a copy of the database (a
backup, a replica) signs nobody in.

A code is taken once: the exchange that takes it deletes it in the same statement, so two exchanges of one
code cannot both succeed. A refresh token is taken once the same way; presenting one already taken means
it was copied (RFC 9700 §4.14.2), and every token of its family (all refreshed from one code) is revoked.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, update

from idp.store.db import Database, rowcount
from idp.store.models import OidcCodeRow, OidcTokenRow


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite gives naive datetimes back


@dataclass(frozen=True)
class Subject:
    """Who a code or token speaks for: the claims at sign-in, and the SSO session they came from."""

    claims: dict
    username: str
    session_index: str
    auth_time: int

    def to_dict(self) -> dict:
        return {
            "claims": self.claims,
            "username": self.username,
            "session_index": self.session_index,
            "auth_time": self.auth_time,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Subject:
        return cls(data["claims"], data["username"], data["session_index"], int(data["auth_time"]))


@dataclass(frozen=True)
class StoredCode:
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    subject: Subject


@dataclass(frozen=True)
class StoredToken:
    id: int
    family: str
    client_id: str
    scope: str
    subject: Subject
    issued_at: datetime
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    refresh_used: bool
    revoked: bool

    def access_expired(self) -> bool:
        return self.access_expires_at <= _now()

    def refresh_expired(self) -> bool:
        return self.refresh_expires_at is None or self.refresh_expires_at <= _now()


RefreshCheck = Literal["ok", "unknown", "expired", "revoked", "reused"]


class TokenStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- codes -------------------------------------------------------------------------------------

    def save_code(self, code: str, stored: StoredCode, lifetime: int) -> None:
        with self._db.session() as s:
            s.execute(delete(OidcCodeRow).where(OidcCodeRow.expires_at < _now()))  # keep the table small
            s.add(
                OidcCodeRow(
                    code_hash=digest(code),
                    client_id=stored.client_id,
                    redirect_uri=stored.redirect_uri,
                    scope=stored.scope,
                    nonce=stored.nonce,
                    code_challenge=stored.code_challenge,
                    code_challenge_method=stored.code_challenge_method,
                    subject=stored.subject.to_dict(),
                    expires_at=_now() + timedelta(seconds=lifetime),
                )
            )

    def take_code(self, code: str, client_id: str) -> StoredCode | None:
        """The code's request, deleting it: None when unknown, already taken, expired or another client's."""
        with self._db.session() as s:
            row = s.get(OidcCodeRow, digest(code))
            if row is None:
                return None
            taken = rowcount(s.execute(delete(OidcCodeRow).where(OidcCodeRow.code_hash == row.code_hash)))
            if taken != 1 or row.client_id != client_id or _aware(row.expires_at) <= _now():
                return None
            return StoredCode(
                row.client_id,
                row.redirect_uri,
                row.scope,
                row.nonce,
                row.code_challenge,
                row.code_challenge_method,
                Subject.from_dict(row.subject),
            )

    # ---- tokens ------------------------------------------------------------------------------------

    def save_token(
        self,
        *,
        access_token: str,
        refresh_token: str | None,
        client_id: str,
        scope: str,
        subject: Subject,
        access_lifetime: int,
        refresh_lifetime: int,
        family: str | None,
    ) -> str:
        """Store a token; a new family unless ``family`` (the refreshed token's) is given. Returns the family."""
        now = _now()
        family = family or secrets.token_hex(16)
        with self._db.session() as s:
            s.add(
                OidcTokenRow(
                    family=family,
                    client_id=client_id,
                    access_hash=digest(access_token),
                    refresh_hash=digest(refresh_token) if refresh_token else None,
                    scope=scope,
                    subject=subject.to_dict(),
                    issued_at=now,
                    access_expires_at=now + timedelta(seconds=access_lifetime),
                    refresh_expires_at=now + timedelta(seconds=refresh_lifetime) if refresh_token else None,
                    refresh_used=False,
                    revoked=False,
                )
            )
        return family

    def by_access_token(self, token: str) -> StoredToken | None:
        return self._one(OidcTokenRow.access_hash == digest(token))

    def by_refresh_token(self, token: str) -> StoredToken | None:
        return self._one(OidcTokenRow.refresh_hash == digest(token))

    def take_refresh(self, token: StoredToken) -> RefreshCheck:
        """Use ``token``'s refresh token once. "reused": it was used before, and its family is now revoked."""
        if token.revoked:
            return "revoked"
        if token.refresh_expired():
            return "expired"
        with self._db.session() as s:
            taken = rowcount(
                s.execute(
                    update(OidcTokenRow)
                    .where(OidcTokenRow.id == token.id, OidcTokenRow.refresh_used.is_(False))
                    .values(refresh_used=True)
                )
            )
        if taken == 1:
            return "ok"
        self.revoke_family(token.family)
        return "reused"

    def revoke(self, token: StoredToken) -> None:
        with self._db.session() as s:
            s.execute(update(OidcTokenRow).where(OidcTokenRow.id == token.id).values(revoked=True))

    def revoke_family(self, family: str) -> int:
        with self._db.session() as s:
            return rowcount(s.execute(update(OidcTokenRow).where(OidcTokenRow.family == family).values(revoked=True)))

    def _one(self, where: object) -> StoredToken | None:
        with self._db.session() as s:
            row = s.scalars(select(OidcTokenRow).where(where)).first()  # type: ignore[arg-type]
            if row is None:
                return None
            return StoredToken(
                id=row.id,
                family=row.family,
                client_id=row.client_id,
                scope=row.scope,
                subject=Subject.from_dict(row.subject),
                issued_at=_aware(row.issued_at),
                access_expires_at=_aware(row.access_expires_at),
                refresh_expires_at=_aware(row.refresh_expires_at) if row.refresh_expires_at else None,
                refresh_used=row.refresh_used,
                revoked=row.revoked,
            )
