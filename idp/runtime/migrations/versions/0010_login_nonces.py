"""The challenges of certificate signature login (``idp_login_nonces``): single-use
nonces bound to a browser, shared by every worker and node through the database.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idp_login_nonces",
        sa.Column("nonce_hash", sa.String(64), primary_key=True),
        sa.Column("binding_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
    )
    op.create_index("ix_idp_login_nonces_expires_at", "idp_login_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_idp_login_nonces_expires_at", table_name="idp_login_nonces")
    op.drop_table("idp_login_nonces")
