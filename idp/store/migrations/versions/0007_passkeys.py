"""Passkeys (WebAuthn) as second factors: a factor of kind "webauthn" keeps a credential id, public key, sign
count and transports, and no secret.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mfa_factors") as batch:
        batch.alter_column("secret", existing_type=sa.Text(), nullable=True)
        batch.add_column(sa.Column("credential_id", sa.LargeBinary(length=1024), nullable=True))
        batch.add_column(sa.Column("public_key", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("sign_count", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("transports", sa.String(length=200), nullable=True))
    op.create_index("ix_mfa_factors_credential_id", "mfa_factors", ["credential_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_mfa_factors_credential_id", table_name="mfa_factors")
    op.execute("DELETE FROM mfa_factors WHERE kind = 'webauthn'")
    with op.batch_alter_table("mfa_factors") as batch:
        batch.drop_column("transports")
        batch.drop_column("sign_count")
        batch.drop_column("public_key")
        batch.drop_column("credential_id")
        batch.alter_column("secret", existing_type=sa.Text(), nullable=False)
