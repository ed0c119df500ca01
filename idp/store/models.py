"""Tables. Kept small: the audit trail and per-SP policy; metadata XML itself lives in metadata/."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


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

    __table_args__ = (Index("ix_audit_user_at", "username", "at"), Index("ix_audit_sp_at", "sp_entity_id", "at"))


class SpPolicyRecord(Base):
    __tablename__ = "sp_policies"

    entity_id: Mapped[str] = mapped_column(String(1024), primary_key=True)
    policy: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
