"""The per-address throttle counts wrong current passwords at the change form too: its partial index covers
both events.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BOTH = sa.text("event IN ('signin', 'password_changed') AND result = 'failure'")
_SIGNIN = sa.text("event = 'signin' AND result = 'failure'")


def _index(where: sa.TextClause) -> None:
    op.drop_index("ix_audit_fail_ip_at", table_name="audit_events")
    op.create_index(
        "ix_audit_fail_ip_at", "audit_events", ["client_ip", "at"], sqlite_where=where, postgresql_where=where
    )


def upgrade() -> None:
    _index(_BOTH)


def downgrade() -> None:
    _index(_SIGNIN)
