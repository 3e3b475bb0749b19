"""SSO sessions remember the device (User-Agent) and address they started from,
so a person can tell their sessions apart in the console and end the right one.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idp_sessions") as batch:
        batch.add_column(sa.Column("user_agent", sa.String(256), nullable=True))
        batch.add_column(sa.Column("address", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idp_sessions") as batch:
        batch.drop_column("address")
        batch.drop_column("user_agent")
