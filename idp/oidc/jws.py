"""Verification of the JWS Compact Serialization (RFC 7515 section 7.1) of the JWTs
this IdP signs itself (access tokens, RFC 9068; ID tokens, OIDC Core 2), and of no
one else's.

A general JOSE library has to accept every form the RFCs allow; we only ever
produce one: three base64url parts without padding, a protected header of exactly
``alg`` (ES256 or RS256), ``kid`` and ``typ``, and a JSON object as payload. So
anything else is refused before a key is looked up: no ``crit``, no ``b64``
(RFC 7797), no ``jku``/``jwk``/``x5u`` and no other parameter, and only canonical
base64url (RFC 7515 section 2; Appendix C: no padding, no ``+``/``/``, no
whitespace, no stray bits), and no member name twice in the header or payload. The
signature is checked with ``cryptography`` on the key the header's ``kid`` names,
which must be of the header's ``alg``, before the payload is decoded; the payload's
claims are ``idp.oidc.claims``' business. An ES256 signature is the raw ``r || s``,
32 octets each (RFC 7518 section 3.4); a high-S signature verifies, as in OpenSSL,
since we sign with OpenSSL and do not normalise S (nothing here keys on the token's
bytes: revocation goes by ``jti``).

No I/O: ``idp.oidc.keys.KeyStore`` holds the keys and calls this.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

MAX_TOKEN = 8192
MAX_HEADER = 512  # base64url characters; ours is about 140
HEADER_PARAMETERS = frozenset({"alg", "kid", "typ"})
ES256_OCTETS = 32  # RFC 7518 section 3.4: r and s, each as 32 octets, big-endian

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class InvalidToken(ValueError):
    """A JWT did not verify against our published keys (bad alg, kid, signature)."""


@dataclass(frozen=True)
class VerifyKey:
    """A published key, ready to verify: its ``alg`` and its ``cryptography`` key."""

    alg: str
    key: PublicKey

    @classmethod
    def of(cls, alg: str, key: object) -> VerifyKey:
        """Check that ``key`` is a key ``alg`` can use (P-256 for ES256, RSA for RS256)."""
        if alg == "ES256":
            if not (isinstance(key, ec.EllipticCurvePublicKey)
                    and isinstance(key.curve, ec.SECP256R1)):
                raise TypeError("ES256 needs a P-256 public key")
            return cls(alg, key)
        if alg == "RS256":
            if not isinstance(key, rsa.RSAPublicKey):
                raise TypeError("RS256 needs an RSA public key")
            return cls(alg, key)
        raise ValueError(f"algorithm {alg!r} is not supported")


@dataclass(frozen=True)
class CompactJWS:
    """A token split into its parts, its header parsed; nothing verified yet."""

    header: dict[str, Any]
    signing_input: bytes
    payload: str
    signature: str

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def kid(self) -> str:
        return str(self.header["kid"])


def b64decode(part: str) -> bytes:
    """Canonical unpadded base64url only (RFC 7515 section 2): the decoded bytes
    must encode back to exactly ``part``."""
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("bad base64url") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != part.encode("ascii"):
        raise InvalidToken("bad base64url")
    return raw


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 7515 section 4 and RFC 7519 section 4: a parser must reject duplicate
    # member names or take the last. We reject: two ``aud`` in one payload is no
    # token we wrote, and no reader should pick a different one than we did.
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("duplicate member name")
    return value


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64decode(part), object_pairs_hook=_unique_members)
    except ValueError:  # JSON, UTF-8 and base64url errors are all ValueErrors
        raise InvalidToken(f"malformed {what}") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"malformed {what}")
    return value


def split(token: str, algs: tuple[str, ...], typ: str | None) -> CompactJWS:
    """Parse the parts and check the header as we write it: ``alg`` one of
    ``algs``, ``kid`` a string, ``typ`` equal to ``typ`` (case-insensitively,
    RFC 7515 section 4.1.9) when asked, nothing else."""
    if not token or len(token) > MAX_TOKEN or not token.isascii():
        raise InvalidToken("not a compact JWS")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("not a compact JWS")
    head, payload, signature = parts
    if len(head) > MAX_HEADER:
        raise InvalidToken("malformed header")
    header = _json_object(head, "header")
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in algs or not isinstance(kid, str):
        raise InvalidToken(f"algorithm {alg!r} is not accepted")
    if not header.keys() <= HEADER_PARAMETERS:
        raise InvalidToken("unexpected header parameter")
    found = header.get("typ", "")
    if typ is not None and (not isinstance(found, str) or found.lower() != typ):
        raise InvalidToken("wrong token type")
    return CompactJWS(header, f"{head}.{payload}".encode("ascii"), payload, signature)


def verify(jws: CompactJWS, key: VerifyKey) -> dict[str, Any]:
    """Check the signature with ``key`` (whose alg must be the header's), then
    return the claims, which must be a JSON object."""
    if key.alg != jws.alg:
        raise InvalidToken("unknown key")
    signature = b64decode(jws.signature)
    try:
        if isinstance(key.key, ec.EllipticCurvePublicKey):
            if len(signature) != 2 * ES256_OCTETS:
                raise InvalidToken("bad signature")
            r = int.from_bytes(signature[:ES256_OCTETS], "big")
            s = int.from_bytes(signature[ES256_OCTETS:], "big")
            key.key.verify(encode_dss_signature(r, s), jws.signing_input,
                           ec.ECDSA(hashes.SHA256()))
        else:
            key.key.verify(signature, jws.signing_input, padding.PKCS1v15(),
                           hashes.SHA256())
    except InvalidSignature:
        raise InvalidToken("bad signature") from None
    return _json_object(jws.payload, "payload")

