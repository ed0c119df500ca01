"""Tables. Kept small: the audit trail, per-SP policy and the sync's provisioning state; metadata XML itself
lives in metadata/."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


_FAILED_SIGNIN = text("event = 'signin' AND result = 'failure'")


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(40))
    """What happened: signin, saml_request, logout, sp_added, keys_init, ..."""
    result: Mapped[str] = mapped_column(String(20))
    """success | failure | refused | error"""
    reason: Mapped[str | None] = mapped_column(String(60))
    username: Mapped[str | None] = mapped_column(String(256))
    sp_entity_id: Mapped[str | None] = mapped_column(String(1024))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_audit_user_at", "username", "at"),
        Index("ix_audit_sp_at", "sp_entity_id", "at"),
        # The login throttle counts recent failures per account and per address; indexing only failures
        # keeps that count small when thousands of employees sign in from one NAT address.
        Index("ix_audit_fail_user_at", "username", "at", sqlite_where=_FAILED_SIGNIN, postgresql_where=_FAILED_SIGNIN),
        Index("ix_audit_fail_ip_at", "client_ip", "at", sqlite_where=_FAILED_SIGNIN, postgresql_where=_FAILED_SIGNIN),
    )


class SpPolicyRecord(Base):
    __tablename__ = "sp_policies"

    entity_id: Mapped[str] = mapped_column(String(1024), primary_key=True)
    policy: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ProvisioningRecordRow(Base):
    """What was last provisioned for one person, keyed by objectGUID (stable across renames and moves)."""

    __tablename__ = "provisioning_records"

    guid: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(256), index=True)
    email: Mapped[str] = mapped_column(String(320))
    mailbox_id: Mapped[str | None] = mapped_column(String(256))
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    """sha256 of the MailboxSpec last written; empty until a write succeeded."""
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    frozen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When we froze it: the delete grace period counts from here."""
    last_error: Mapped[str | None] = mapped_column(Text)
    """The provider's error of the last failed action; NULL once an action succeeds."""
    failed_action: Mapped[str | None] = mapped_column(String(20))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class SyncLeaseRow(Base):
    """One row per named job; whoever holds an unexpired lease runs it, every other node waits."""

    __tablename__ = "sync_leases"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SyncWatermarkRow(Base):
    """AD's uSNChanged high-water mark after the last complete sync, per domain controller (USNs are
    local to a DC)."""

    __tablename__ = "sync_watermarks"

    dc: Mapped[str] = mapped_column(String(512), primary_key=True)
    usn: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
