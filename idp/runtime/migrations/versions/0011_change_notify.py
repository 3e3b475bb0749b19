"""PostgreSQL only: triggers that NOTIFY ``govtrust_change`` on every change to
clients, signing keys, CA certificates, certificates and tokens, so every node
drops its cached copy at once (``idp.runtime.changes``). NOTIFY inside the
writing transaction is delivered at commit and dropped on rollback. SQLite has
one machine and nothing to tell: this migration does nothing there.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Copied here (not imported) so the migration keeps meaning what it meant.
# Issuing a certificate or a token announces nothing: NOTIFY takes a database-wide
# lock at commit, and nobody caches what does not exist yet; their changes (a
# revocation) are announced.
_TABLES = (
    ("oauth_clients", "client", "client_id", "INSERT OR UPDATE OR DELETE"),
    ("idp_signing_keys", "signing_key", "kid", "INSERT OR UPDATE OR DELETE"),
    ("ca_certificates", "ca", "role", "INSERT OR UPDATE OR DELETE"),
    ("certificates", "certificate", "serial", "UPDATE"),
    ("oauth_tokens", "token", "family", "UPDATE"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, topic, column, events in _TABLES:
        op.execute(f"""
            CREATE FUNCTION govtrust_notify_{table}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('govtrust_change', '{topic}:' ||
                    CASE WHEN TG_OP = 'DELETE' THEN OLD.{column} ELSE NEW.{column} END);
                RETURN NULL;
            END $$""")
        op.execute(f"""
            CREATE TRIGGER govtrust_notify AFTER {events} ON {table}
            FOR EACH ROW EXECUTE FUNCTION govtrust_notify_{table}()""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, _topic, _column, _events in _TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS govtrust_notify ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS govtrust_notify_{table}()")
