"""The key management centre: escrowed encryption keys (sealed under the KMC's
key-encryption key), recovery requests and their approvals (``pki.kmc_store``).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kmc_escrowed_keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("serial", sa.String(40), nullable=True, unique=True),
        sa.Column("owner_uid", sa.String(256), nullable=False, index=True),
        sa.Column("owner_entry_uuid", sa.String(64), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("kek_label", sa.String(64), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "kmc_recovery_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("serial", sa.String(40), nullable=False, index=True),
        sa.Column("owner_uid", sa.String(256), nullable=False),
        sa.Column("requester_uid", sa.String(256), nullable=False),
        sa.Column("requester_entry_uuid", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("required", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "kmc_recovery_approvals",
        sa.Column("request_id", sa.String(32), sa.ForeignKey("kmc_recovery_requests.id"),
                  primary_key=True),
        sa.Column("agent_uid", sa.String(256), primary_key=True),
        sa.Column("agent_entry_uuid", sa.String(64), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kmc_recovery_approvals")
    op.drop_table("kmc_recovery_requests")
    op.drop_table("kmc_escrowed_keys")
