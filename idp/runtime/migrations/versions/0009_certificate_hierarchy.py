"""Certificates say which CA hierarchy issued them (the default one or the SM2 one),
so each hierarchy's CRLs and OCSP responder list and answer only for its own.

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


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.add_column(sa.Column("hierarchy", sa.String(16), nullable=False,
                                   server_default="ecdsa"))
        batch.create_index("ix_certificates_hierarchy", ["hierarchy"])


def downgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.drop_index("ix_certificates_hierarchy")
        batch.drop_column("hierarchy")
