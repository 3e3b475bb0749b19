"""SSO sessions remember when each login method was done (``method_times``), so a
step-up keeps the session and the assurance policy can judge each method's age.

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
    with op.batch_alter_table("idp_sessions") as batch:
        batch.add_column(sa.Column("method_times", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idp_sessions") as batch:
        batch.drop_column("method_times")
