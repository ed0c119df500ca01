"""The schema of the first release with migrations, as its create_all made it.

A database made by that release (before migrations existed) has exactly these tables and is recorded as
this revision without running it (idp.store.schema).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempt_counters",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("result", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=60), nullable=True),
        sa.Column("username", sa.String(length=256), nullable=True),
        sa.Column("sp_entity_id", sa.String(length=1024), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_at"), ["at"], unique=False)
        batch_op.create_index(
            "ix_audit_fail_ip_at",
            ["client_ip", "at"],
            unique=False,
            sqlite_where=sa.text("event = 'signin' AND result = 'failure'"),
            postgresql_where=sa.text("event = 'signin' AND result = 'failure'"),
        )
        batch_op.create_index(
            "ix_audit_fail_user_at",
            ["username", "at"],
            unique=False,
            sqlite_where=sa.text("event = 'signin' AND result = 'failure'"),
            postgresql_where=sa.text("event = 'signin' AND result = 'failure'"),
        )
        batch_op.create_index("ix_audit_sp_at", ["sp_entity_id", "at"], unique=False)
        batch_op.create_index("ix_audit_user_at", ["username", "at"], unique=False)

    op.create_table(
        "provisioning_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("guid", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=256), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("guid"),
    )
    with op.batch_alter_table("provisioning_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_provisioning_outbox_state"), ["state"], unique=False)

    op.create_table(
        "provisioning_records",
        sa.Column("guid", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=256), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("mailbox_id", sa.String(length=256), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("frozen", sa.Boolean(), nullable=False),
        sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failed_action", sa.String(length=20), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guid"),
    )
    with op.batch_alter_table("provisioning_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_provisioning_records_username"), ["username"], unique=False)

    op.create_table(
        "saml_seen_requests",
        sa.Column("issuer", sa.String(length=1024), nullable=False),
        sa.Column("request_id", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "request_id"),
    )
    with op.batch_alter_table("saml_seen_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_saml_seen_requests_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "sp_metadata_urls",
        sa.Column("entity_id", sa.String(length=1024), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("pinned_cert", sa.Text(), nullable=True),
        sa.Column("allow_http", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_refresh_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_reason", sa.String(length=60), nullable=True),
        sa.PrimaryKeyConstraint("entity_id"),
    )
    with op.batch_alter_table("sp_metadata_urls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sp_metadata_urls_next_refresh_at"), ["next_refresh_at"], unique=False)

    op.create_table(
        "sp_policies",
        sa.Column("entity_id", sa.String(length=1024), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("entity_id"),
    )
    op.create_table(
        "sso_sessions",
        sa.Column("session_index", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=256), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("sps", sa.JSON(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("session_index"),
    )
    with op.batch_alter_table("sso_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sso_sessions_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_sso_sessions_username"), ["username"], unique=False)

    op.create_table(
        "sync_leases",
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "sync_watermarks",
        sa.Column("dc", sa.String(length=512), nullable=False),
        sa.Column("usn", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dc"),
    )


def downgrade() -> None:
    raise NotImplementedError("the first revision is not undone: restore a backup instead")
