"""The second factor: TOTP factors (secrets sealed), hashed recovery codes and remembered browsers, each
keyed by the person's objectGUID.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mfa_factors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("guid", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mfa_factors_guid", "mfa_factors", ["guid"])
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("guid", sa.String(length=36), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_mfa_recovery_codes_guid", "mfa_recovery_codes", ["guid"])
    op.create_table(
        "mfa_remembered_browsers",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("guid", sa.String(length=36), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_mfa_remembered_browsers_guid", "mfa_remembered_browsers", ["guid"])


def downgrade() -> None:
    op.drop_table("mfa_remembered_browsers")
    op.drop_table("mfa_recovery_codes")
    op.drop_table("mfa_factors")
