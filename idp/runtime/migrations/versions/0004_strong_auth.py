"""Strong authentication: TOTP credentials (encrypted secrets, last accepted time
step, failure count) and single-use recovery codes (see ``idp.login.otp_store``).

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
        "otp_credentials",
        sa.Column("person_uuid", sa.String(64), primary_key=True, nullable=False),
        sa.Column("uid", sa.String(256), nullable=False),
        sa.Column("secret", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("last_step", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "otp_recovery_codes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True, nullable=False),
        sa.Column("person_uuid", sa.String(64),
                  sa.ForeignKey("otp_credentials.person_uuid", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_otp_recovery_codes_person_uuid", "otp_recovery_codes", ["person_uuid"])


def downgrade() -> None:
    op.drop_index("ix_otp_recovery_codes_person_uuid", table_name="otp_recovery_codes")
    op.drop_table("otp_recovery_codes")
    op.drop_table("otp_credentials")
