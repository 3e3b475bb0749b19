"""SSO sessions keep when they started (``created_at``, carried across cookie
rotation) and the serial of the certificate they logged in with.

``created_at`` is what ``policies.assurance.enrolled_during`` compares enrolment
times with: a factor enrolled after the session began does not count in it.
It is kept to the microsecond (a float), not the second: an authenticator enrolled
in the same second the session began must still count as enrolled in it.
Sessions that exist before this migration get their ``auth_time`` (the latest
login or step-up), the only time they kept; they are at most ``session_hours``
old, so the approximation ends with them.

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
    with op.batch_alter_table("idp_sessions") as batch:
        batch.add_column(sa.Column("created_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("cert_serial", sa.String(64), nullable=True))
    op.execute("UPDATE idp_sessions SET created_at = auth_time WHERE created_at IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("idp_sessions") as batch:
        batch.drop_column("cert_serial")
        batch.drop_column("created_at")
