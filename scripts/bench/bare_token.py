"""The yardstick for ``scripts/bench/idp.py``: the least a Python token endpoint does.

A client-credentials token endpoint (RFC 6749 §4.4) in one Flask view: HTTP Basic
client authentication checked in constant time (``hmac.compare_digest`` of
HMAC-SHA256 digests, so neither length nor content leaks), one ES256 JWT access
token signed with joserfc (as ``idp.oidc.keys`` signs ours), one row inserted per
token into SQLite (WAL, ``synchronous=NORMAL``), the JSON answer. Nothing else:
no authlib, no ORM, no audit, no throttle, no TLS. What GovTrust's ``/token``
adds on top of this is overhead to justify, so the benchmark prints each of our
figures as a fraction of this one, measured in the same run under gunicorn with
the same worker settings.

Run by idp.py as ``gunicorn 'bare_token:create_app()'`` with ``BARE_DIR`` set to a
folder holding ``client.json`` (id, secret) and where ``tokens.db`` is made.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from joserfc import jwk, jwt

LIFETIME = 300


def create_app() -> Flask:
    folder = Path(os.environ["BARE_DIR"])
    client = json.loads((folder / "client.json").read_text(encoding="utf-8"))
    client_id: str = client["client_id"]
    # A random key per process: the secret's digest is compared, never the secret.
    mac_key = secrets.token_bytes(32)
    expected = hmac.new(mac_key, client["client_secret"].encode(), hashlib.sha256).digest()
    key = jwk.ECKey.generate_key("P-256", private=True)
    issuer = "http://bare.invalid"
    local = threading.local()  # one SQLite connection per gunicorn thread

    def db() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(folder / "tokens.db", isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS tokens (jti TEXT PRIMARY KEY, "
                         "client_id TEXT NOT NULL, expires_at INTEGER NOT NULL)")
            local.conn = conn
        return conn

    app = Flask(__name__)

    def refuse() -> Response:
        out = Response(json.dumps({"error": "invalid_client"}), status=401,
                       mimetype="application/json")
        out.headers["WWW-Authenticate"] = 'Basic realm="token"'
        return out

    @app.post("/token")
    def token() -> Any:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return refuse()
        try:
            given_id, _, given_secret = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return refuse()
        given = hmac.new(mac_key, given_secret.encode(), hashlib.sha256).digest()
        if not (hmac.compare_digest(given_id.encode(), client_id.encode())
                & hmac.compare_digest(given, expected)):
            return refuse()
        if request.form.get("grant_type") != "client_credentials":
            return {"error": "unsupported_grant_type"}, 400
        now = int(time.time())
        jti = secrets.token_urlsafe(16)
        claims = {"iss": issuer, "sub": client_id, "aud": issuer, "client_id": client_id,
                  "iat": now, "exp": now + LIFETIME, "jti": jti}
        access = jwt.encode({"alg": "ES256", "typ": "at+jwt"}, claims, key,
                            algorithms=["ES256"])
        db().execute("INSERT INTO tokens VALUES (?, ?, ?)", (jti, client_id, now + LIFETIME))
        return {"access_token": access, "token_type": "Bearer", "expires_in": LIFETIME}

    return app
