"""The OpenID provider: clients, signing keys, codes, grants, tokens, SSO sessions,
consents, back-channel logout deliveries, throttle windows (see ``idp.oidc.tables``).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = (
    "oauth_tokens", "oauth_grants", "oauth_consents", "oauth_codes", "oauth_clients",
    "idp_throttle", "idp_signing_keys", "idp_sessions", "idp_session_clients",
    "idp_backchannel_deliveries", "oauth_used_assertions",
)


def upgrade() -> None:
    op.create_table(
        "idp_backchannel_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("uri", sa.String(1024), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("sid", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt", sa.Integer, nullable=False),
        sa.Column("done", sa.Boolean, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Integer, nullable=False),
    )
    op.create_index("ix_backchannel_pending", "idp_backchannel_deliveries",
                    ["done", "next_attempt"])
    op.create_table(
        "idp_session_clients",
        sa.Column("sid", sa.String(64), primary_key=True, nullable=False),
        sa.Column("client_id", sa.String(64), primary_key=True, nullable=False),
    )
    op.create_table(
        "idp_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True, nullable=False),
        sa.Column("sid", sa.String(64), nullable=False, unique=True),
        sa.Column("subject", sa.String(64), nullable=False, index=True),
        sa.Column("uid", sa.String(256), nullable=False),
        sa.Column("claims", sa.Text, nullable=False),
        sa.Column("auth_time", sa.Integer, nullable=False),
        sa.Column("acr", sa.String(64), nullable=False),
        sa.Column("amr", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Integer, nullable=False),
        sa.Column("ended_at", sa.Integer, nullable=True),
    )
    op.create_table(
        "idp_signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True, nullable=False),
        sa.Column("alg", sa.String(8), nullable=False),
        sa.Column("state", sa.String(8), nullable=False, index=True),
        sa.Column("private_pem", sa.Text, nullable=False),
        sa.Column("public_jwk", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "idp_throttle",
        sa.Column("key", sa.String(300), primary_key=True, nullable=False),
        sa.Column("window", sa.Integer, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(64), primary_key=True, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("secret_hash", sa.String(128), nullable=True),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("auth_method", sa.String(32), nullable=False),
        sa.Column("redirect_uris", sa.Text, nullable=False),
        sa.Column("post_logout_uris", sa.Text, nullable=False),
        sa.Column("backchannel_logout_uri", sa.String(1024), nullable=True),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("info_class", sa.String(16), nullable=False),
        sa.Column("allowed_departments", sa.Text, nullable=False),
        sa.Column("allowed_group", sa.String(256), nullable=True),
        sa.Column("first_party", sa.Boolean, nullable=False),
        sa.Column("id_token_alg", sa.String(8), nullable=False),
        sa.Column("jwks", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "oauth_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True, nullable=False),
        sa.Column("family", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("nonce", sa.String(512), nullable=True),
        sa.Column("code_challenge", sa.String(128), nullable=True),
        sa.Column("code_challenge_method", sa.String(8), nullable=True),
        sa.Column("expires_at", sa.Integer, nullable=False),
        sa.Column("used_at", sa.Integer, nullable=True),
    )
    op.create_table(
        "oauth_consents",
        sa.Column("subject", sa.String(64), primary_key=True, nullable=False),
        sa.Column("client_id", sa.String(64), primary_key=True, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("granted_at", sa.Integer, nullable=False),
    )
    op.create_table(
        "oauth_grants",
        sa.Column("family", sa.String(64), primary_key=True, nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False, index=True),
        sa.Column("subject", sa.String(64), nullable=False, index=True),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("sid", sa.String(64), nullable=True, index=True),
        sa.Column("claims", sa.Text, nullable=False),
        sa.Column("auth_time", sa.Integer, nullable=True),
        sa.Column("acr", sa.String(64), nullable=True),
        sa.Column("amr", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("revoked_at", sa.Integer, nullable=True),
    )
    op.create_table(
        "oauth_tokens",
        sa.Column("token_id", sa.String(64), primary_key=True, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("family", sa.String(64), nullable=False, index=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("issued_at", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Integer, nullable=False),
        sa.Column("rotated_at", sa.Integer, nullable=True),
        sa.Column("revoked_at", sa.Integer, nullable=True),
    )
    op.create_table(
        "oauth_used_assertions",
        sa.Column("client_id", sa.String(64), primary_key=True, nullable=False),
        sa.Column("jti", sa.String(256), primary_key=True, nullable=False),
        sa.Column("expires_at", sa.Integer, nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_index("ix_backchannel_pending", "idp_backchannel_deliveries")
    for name in TABLES:
        op.drop_table(name)
