"""The login tables (SQLAlchemy Core): SSO sessions, the apps each session reached,
the throttle's failure windows, and the challenges of signature login.

They share one ``MetaData`` with ``idp.oidc.tables`` (the provider's codes and
tokens refer to sessions by ``sid``). Session ids (the cookie values) are
stored only as SHA-256 digests: they are random and 256 bits long, so an unkeyed
digest suffices (RFC 6819 section 5.1.4.1.3).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import CursorResult, Result

metadata = MetaData()


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched (the basis of every compare-and-set here)."""
    return int(cast("CursorResult[Any]", result).rowcount)


sso_sessions = Table(
    "idp_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("sid", String(64), nullable=False, unique=True),
    Column("subject", String(64), nullable=False, index=True),  # entryUUID
    Column("uid", String(256), nullable=False),
    Column("claims", Text, nullable=False),  # JSON snapshot taken at login
    Column("auth_time", Integer, nullable=False),
    Column("acr", String(64), nullable=False),
    Column("amr", String(64), nullable=False),  # space-separated
    Column("expires_at", Integer, nullable=False),
    Column("ended_at", Integer, nullable=True),
    # JSON {"pwd": epoch, "swk": epoch}: when each method was last done (step-up)
    Column("method_times", Text, nullable=True),
    # Where the session started, shown to its owner (console: my sessions).
    Column("user_agent", String(256), nullable=True),
    Column("address", String(64), nullable=True),
    # When the session began (epoch seconds, to the microsecond: an enrolment in the
    # same second must still be after it); kept when the cookie rotates at a step-up,
    # so a factor enrolled after it is known as enrolled in this session.
    Column("created_at", Float, nullable=True),
    # The certificate the session last logged in with (lowercase hex), if any.
    Column("cert_serial", String(64), nullable=True),
)

session_clients = Table(
    "idp_session_clients",
    metadata,
    Column("sid", String(64), primary_key=True),
    Column("client_id", String(64), primary_key=True),
)

throttle_windows = Table(
    "idp_throttle",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("window", Integer, nullable=False),
    Column("count", Integer, nullable=False),
)

# Signature login (``idp.login.signature``): one row per challenge handed out. The
# nonce and the browser's binding cookie are stored as SHA-256 digests (both are
# random, 256 bits); ``used_at`` set by one compare-and-set UPDATE is what makes a
# nonce single-use across every worker and node sharing the database.
login_nonces = Table(
    "idp_login_nonces",
    metadata,
    Column("nonce_hash", String(64), primary_key=True),
    Column("binding_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Index("ix_idp_login_nonces_expires_at", "expires_at"),
)
