"""Self-contained access tokens: the ``oauth_revoked_access`` table (RFC 7009
revocation of one access token, by jti, until it expires), the stored access-token
rows removed (access tokens are no longer written; ``idp.oidc.tokens`` says why),
and on PostgreSQL the ``oauth_tokens`` trigger narrowed to revocations: a refresh
token's rotation is an UPDATE too, and NOTIFY takes a database-wide lock at commit.
A revoked access token is announced like a revoked refresh token (``token:<jti>``).

Access tokens signed before this revision carry a jti that names no grant family:
they are inactive from now on (at most one access-token lifetime, 10 minutes, is cut
short; their apps refresh, and refresh tokens are kept).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _notify_function(table: str, topic: str, column: str) -> str:
    # Copied from 0011 (not imported) so each migration keeps meaning what it meant.
    return f"""
        CREATE OR REPLACE FUNCTION govtrust_notify_{table}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('govtrust_change', '{topic}:' ||
                CASE WHEN TG_OP = 'DELETE' THEN OLD.{column} ELSE NEW.{column} END);
            RETURN NULL;
        END $$"""


def upgrade() -> None:
    op.create_table(
        "oauth_revoked_access",
        sa.Column("jti", sa.String(128), primary_key=True, nullable=False),
        sa.Column("expires_at", sa.Integer, nullable=False, index=True),
    )
    op.execute("DELETE FROM oauth_tokens WHERE kind = 'access'")
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS govtrust_notify ON oauth_tokens")
    op.execute("""
        CREATE TRIGGER govtrust_notify AFTER UPDATE OF revoked_at ON oauth_tokens
        FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at)
        EXECUTE FUNCTION govtrust_notify_oauth_tokens()""")
    op.execute(_notify_function("oauth_revoked_access", "token", "jti"))
    op.execute("""
        CREATE TRIGGER govtrust_notify AFTER INSERT ON oauth_revoked_access
        FOR EACH ROW EXECUTE FUNCTION govtrust_notify_oauth_revoked_access()""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS govtrust_notify ON oauth_revoked_access")
        op.execute("DROP FUNCTION IF EXISTS govtrust_notify_oauth_revoked_access()")
        op.execute("DROP TRIGGER IF EXISTS govtrust_notify ON oauth_tokens")
        op.execute("""
            CREATE TRIGGER govtrust_notify AFTER UPDATE ON oauth_tokens
            FOR EACH ROW EXECUTE FUNCTION govtrust_notify_oauth_tokens()""")
    op.drop_table("oauth_revoked_access")
