"""Token signing keys: ES256 by default, RS256 for clients that ask for it.

Keys live in the shared database (private halves encrypted as PKCS#8 under a key
derived from the ``cookie-key`` secret), so every worker and node signs with the
same key and publishes the same JWKS (RFC 7517). Each algorithm has one *active*
key that signs, one *next* key that is already published but does not sign yet,
and *retired* keys kept published until every token they signed has expired.
``rotate`` retires the active key, promotes the next one (which relying parties
have had time to fetch) and publishes a new next key (OIDC Core 10.1.1).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwk, jwt
from joserfc.jws import JWSRegistry
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from idp.errors import NoSigningKey
from idp.oidc import jws
from idp.oidc.jws import InvalidToken, VerifyKey
from idp.oidc.tables import signing_keys

__all__ = ["ALGS", "InvalidToken", "KeyInfo", "KeyStore", "derive_passphrase"]

ALGS = ("ES256", "RS256")
NEXT, ACTIVE, RETIRED = "next", "active", "retired"
# Longest lifetime of anything we sign (ID and access tokens) plus clock skew.
RETIRED_KEEP = timedelta(hours=1)
CACHE_SECONDS = 30.0
MIN_RELOAD_SECONDS = 1.0
# One registry per algorithm, built once: joserfc builds one per call otherwise.
_REGISTRIES = {alg: JWSRegistry(algorithms=[alg]) for alg in ALGS}


def derive_passphrase(cookie_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"govtrust idp signing keys").derive(cookie_key)


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    alg: str
    state: str
    created_at: datetime


@dataclass(frozen=True)
class _Loaded:
    at: float
    signers: dict[str, tuple[str, Any]]  # alg -> (kid, joserfc private key)
    public: dict[str, VerifyKey]  # kid -> its alg and cryptography public key
    jwks: dict[str, Any]


def _generate(alg: str) -> Any:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class KeyStore:
    def __init__(self, sessions: sessionmaker[Session], passphrase: bytes,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._sessions = sessions
        self._passphrase = passphrase
        self._clock = clock
        self._loaded: _Loaded | None = None

    # -- administration -------------------------------------------------------
    def ensure(self) -> list[KeyInfo]:
        """Create an active and a next key for each algorithm that lacks them."""
        made = []
        with self._sessions.begin() as s:
            states = {(r.alg, r.state) for r in s.execute(
                select(signing_keys.c.alg, signing_keys.c.state)).all()}
            for alg in ALGS:
                for state in (ACTIVE, NEXT):
                    if (alg, state) not in states:
                        made.append(self._create(s, alg, state))
        self._loaded = None
        return made

    def rotate(self) -> list[KeyInfo]:
        """Promote every next key, retire the active ones, publish new next keys."""
        now = self._clock()
        made = []
        with self._sessions.begin() as s:
            for alg in ALGS:
                nxt = s.execute(select(signing_keys.c.kid).where(
                    signing_keys.c.alg == alg, signing_keys.c.state == NEXT)).first()
                if nxt is None:  # nothing published ahead: publish first, rotate next time
                    made.append(self._create(s, alg, NEXT))
                    continue
                s.execute(update(signing_keys).where(
                    signing_keys.c.alg == alg, signing_keys.c.state == ACTIVE)
                    .values(state=RETIRED, retired_at=now))
                s.execute(update(signing_keys).where(signing_keys.c.kid == nxt.kid)
                          .values(state=ACTIVE))
                made.append(self._create(s, alg, NEXT))
            s.execute(delete(signing_keys).where(signing_keys.c.state == RETIRED,
                                                 signing_keys.c.retired_at < now - RETIRED_KEEP))
        self._loaded = None
        return made

    def invalidate(self) -> None:
        """Re-read the keys on next use (another node rotated them)."""
        self._loaded = None

    def list(self) -> list[KeyInfo]:
        with self._sessions() as s:
            rows = s.execute(select(signing_keys).order_by(signing_keys.c.created_at)).all()
        return [KeyInfo(r.kid, r.alg, r.state, r.created_at) for r in rows]

    def _create(self, s: Session, alg: str, state: str) -> KeyInfo:
        private = _generate(alg)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._passphrase))
        public = jwk.import_key(private.public_key(), "EC" if alg == "ES256" else "RSA")
        kid = public.thumbprint()
        public_jwk = {**public.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}
        now = self._clock()
        s.execute(insert(signing_keys).values(
            kid=kid, alg=alg, state=state, private_pem=pem.decode("ascii"),
            public_jwk=json.dumps(public_jwk), created_at=now))
        return KeyInfo(kid, alg, state, now)

    # -- use ------------------------------------------------------------------
    def _load(self, force: bool = False) -> _Loaded:
        loaded = self._loaded
        age = time.monotonic() - loaded.at if loaded is not None else None
        if loaded is not None and age is not None and (
                age < MIN_RELOAD_SECONDS or (not force and age < CACHE_SECONDS)):
            # A forced reload (a token naming a kid we do not know) decrypts every
            # private key again: at most one a second, or anyone sending JWTs with
            # made-up kids to /logout makes each request cost a key derivation.
            return loaded
        with self._sessions() as s:
            rows = s.execute(select(signing_keys)).all()
        signers: dict[str, tuple[str, Any]] = {}
        public: dict[str, VerifyKey] = {}
        keys = []
        for r in rows:
            data = json.loads(r.public_jwk)
            keys.append(data)
            public[r.kid] = VerifyKey.of(r.alg, jwk.import_key(data).get_op_key("verify"))
            if r.state == ACTIVE:
                priv = serialization.load_pem_private_key(r.private_pem.encode("ascii"),
                                                          self._passphrase)
                key: Any = priv
                signers[r.alg] = (r.kid, jwk.import_key(key, "EC" if r.alg == "ES256"
                                                        else "RSA"))
        loaded = _Loaded(time.monotonic(), signers, public, {"keys": keys})
        self._loaded = loaded
        return loaded

    def jwks(self) -> dict[str, Any]:
        return self._load().jwks

    def sign(self, claims: dict[str, Any], *, alg: str = "ES256", typ: str = "JWT") -> str:
        signer = self._load().signers.get(alg)
        if signer is None:
            signer = self._load(force=True).signers.get(alg)
            if signer is None:
                raise NoSigningKey(alg)
        kid, key = signer
        return jwt.encode({"alg": alg, "kid": kid, "typ": typ}, claims, key,
                          registry=_REGISTRIES[alg])

    def verify(self, token: str, *, typ: str | None = None) -> tuple[dict[str, Any],
                                                                     dict[str, Any]]:
        """Verify a JWT we signed; return (header, claims). Only ES256/RS256 with one
        of our kids, in the one form we sign (``idp.oidc.jws``), is accepted, so
        ``alg: none`` and HS256 forgeries fail here. Expiry is the caller's
        business (logout accepts an expired id_token_hint)."""
        parsed = jws.split(token, ALGS, typ)
        key = self._load().public.get(parsed.kid) or self._load(force=True).public.get(
            parsed.kid)
        if key is None:
            raise InvalidToken("unknown key")
        return parsed.header, jws.verify(parsed, key)
