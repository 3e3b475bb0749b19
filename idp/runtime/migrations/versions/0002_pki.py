"""The CA inventory: CA certificates, issued certificates, CRLs, approved DNS names.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ca_certificates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("role", sa.String(16), nullable=False, index=True),
        sa.Column("key_label", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "certificates",
        sa.Column("serial", sa.String(40), primary_key=True),
        sa.Column("owner_kind", sa.String(16), nullable=False),
        sa.Column("owner_uid", sa.String(256), nullable=False, index=True),
        sa.Column("owner_entry_uuid", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(32), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True, index=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("invalidity_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hardware_key", sa.Boolean, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "crls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("issuer", sa.String(16), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("delta", sa.Boolean, nullable=False),
        sa.Column("base_number", sa.Integer, nullable=True),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("issuer", "number", name="uq_crls_issuer_number"),
    )
    op.create_table(
        "approved_dns_names",
        sa.Column("app", sa.String(128), primary_key=True),
        sa.Column("dns_name", sa.String(253), primary_key=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for name in ("approved_dns_names", "crls", "certificates", "ca_certificates"):
        op.drop_table(name)
