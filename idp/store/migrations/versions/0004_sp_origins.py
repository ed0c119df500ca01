"""Where an SP's metadata came from when it was not a URL: the uploaded file's name, or typed by hand, so the
console shows that instead of the stored file's hashed name.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sp_origins",
        sa.Column("entity_id", sa.String(length=1024), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("entity_id"),
    )


def downgrade() -> None:
    op.drop_table("sp_origins")
