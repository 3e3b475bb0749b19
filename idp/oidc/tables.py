"""The OpenID Connect provider's tables (SQLAlchemy Core): clients, signing keys, codes, tokens.

Everything the OpenID Connect provider must remember lives here, in the one
database every web worker shares, so any worker can answer any request: no
protocol state is kept in a process. Secrets that a request presents (codes,
refresh tokens, session ids) are stored only as SHA-256 digests; they are
random and 256 bits long, so an unkeyed digest suffices (RFC 6819 section 5.1.4.1.3).
Client secrets are the exception: they are keyed-hashed in ``idp.oidc.clients``.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from idp.login.tables import metadata, rowcount  # one MetaData for the IdP's tables

__all__ = ["metadata", "rowcount"]


oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("secret_hash", String(128), nullable=True),  # None for public clients
    Column("public", Boolean, nullable=False),
    Column("auth_method", String(32), nullable=False),
    Column("redirect_uris", Text, nullable=False),  # JSON array
    Column("post_logout_uris", Text, nullable=False),  # JSON array
    Column("backchannel_logout_uri", String(1024), nullable=True),
    Column("level", Integer, nullable=False),
    Column("info_class", String(16), nullable=False),
    Column("allowed_departments", Text, nullable=False),  # JSON array
    Column("allowed_group", String(256), nullable=True),
    Column("first_party", Boolean, nullable=False),
    Column("id_token_alg", String(8), nullable=False),
    Column("jwks", Text, nullable=True),  # for private_key_jwt
    Column("created_at", DateTime(timezone=True), nullable=False),
)

signing_keys = Table(
    "idp_signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(8), nullable=False),
    Column("state", String(8), nullable=False, index=True),  # next | active | retired
    Column("private_pem", Text, nullable=False),  # encrypted PKCS#8
    Column("public_jwk", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("retired_at", DateTime(timezone=True), nullable=True),
)

# A grant is one chain of tokens: a code and everything issued from it, or one
# client-credentials issue. Replaying a code or a rotated refresh token revokes it.
grants = Table(
    "oauth_grants",
    metadata,
    Column("family", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False, index=True),
    Column("subject", String(64), nullable=False, index=True),
    Column("scope", Text, nullable=False),
    Column("sid", String(64), nullable=True, index=True),
    Column("claims", Text, nullable=False),
    Column("auth_time", Integer, nullable=True),
    Column("acr", String(64), nullable=True),
    Column("amr", String(64), nullable=True),
    Column("created_at", Integer, nullable=False),
    Column("revoked_at", Integer, nullable=True),
)

auth_codes = Table(
    "oauth_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("family", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("redirect_uri", String(2048), nullable=False),
    Column("nonce", String(512), nullable=True),
    Column("code_challenge", String(128), nullable=True),
    Column("code_challenge_method", String(8), nullable=True),
    Column("expires_at", Integer, nullable=False),
    Column("used_at", Integer, nullable=True),
)

# Refresh tokens (access tokens are self-contained JWTs and are not stored; rows of
# kind "access" were written before migration 0013 and removed by it).
tokens = Table(
    "oauth_tokens",
    metadata,
    # SHA-256 of the refresh token's value
    Column("token_id", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),  # refresh
    Column("family", String(64), nullable=False, index=True),
    Column("client_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("issued_at", Integer, nullable=False),
    Column("expires_at", Integer, nullable=False),
    Column("rotated_at", Integer, nullable=True),
    Column("revoked_at", Integer, nullable=True),
)

# RFC 7009: access tokens revoked one by one, by jti, kept until they would have
# expired anyway (then purged by the token-cleanup duty). Tokens of a revoked grant
# family need no row here: the family's revoked_at covers them.
revoked_access = Table(
    "oauth_revoked_access",
    metadata,
    Column("jti", String(128), primary_key=True),
    Column("expires_at", Integer, nullable=False, index=True),
)

consents = Table(
    "oauth_consents",
    metadata,
    Column("subject", String(64), primary_key=True),
    Column("client_id", String(64), primary_key=True),
    Column("scope", Text, nullable=False),
    Column("granted_at", Integer, nullable=False),
)

backchannel_deliveries = Table(
    "idp_backchannel_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False),
    Column("uri", String(1024), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("sid", String(64), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt", Integer, nullable=False),
    Column("done", Boolean, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", Integer, nullable=False),
    Index("ix_backchannel_pending", "done", "next_attempt"),
)

# RFC 7523 section 3 item 7: a client assertion's jti is accepted once.
used_assertions = Table(
    "oauth_used_assertions",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires_at", Integer, nullable=False, index=True),
)

