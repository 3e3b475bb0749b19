"""Certificate signature login: a USB key signs a challenge (证书签名登录).

Browsers and nginx do not speak SM2 TLS (TLCP needs Tongsuo-patched servers), so
Chinese government sites log people in the other way round: the page hands out a
nonce, the key's middleware signs a challenge built from it, and the site checks
the signature, the certificate chain and the certificate's live status. The
request format for key vendors is in ``docs/signature-login.md``:

- the challenge is the UTF-8 string ``govtrust-login:v1:<issuer>:<nonce>`` (the
  issuer binds the signature to this IdP, the nonce to this attempt);
- the signature is SM3withSM2 with the default ID ``1234567812345678`` (GM/T 0009,
  DER ``SM2Signature``) for an SM2 key, ecdsa-with-SHA256 (DER ``Ecdsa-Sig-Value``,
  RFC 3279 section 2.2.3) for an ECDSA key;
- the chain (leaf first) is checked by ``idp.login.certificate`` exactly as a TLS
  client certificate is (path, validity, keyUsage digitalSignature, EKU clientAuth,
  owner, revocation, ``swk``/``hwk``).

A nonce lives :data:`NONCE_SECONDS`, is bound to the browser it was issued to (a
random cookie whose digest is stored beside it), and is consumed by one
compare-and-set UPDATE before the signature is looked at, so it is single-use
across workers and nodes, and a failed attempt burns it. Every refusal is a
:class:`~idp.login.certificate.CertificateRefused`.

Framework-free: plain values in, plain values or a refusal out; the table is
``idp.login.tables.login_nonces``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from idp.login.certfields import load_certificate, sm2_key
from idp.login.refusals import CertificateRefused, Refusal
from idp.login.tables import login_nonces, rowcount
from pki import sm2
from pki.model import serial_hex

CHALLENGE_PREFIX = "govtrust-login:v1"
NONCE_SECONDS = 120
MAX_CHAIN = 4  # leaf, issuing CA, root, and one spare
MAX_CHAIN_TEXT = 32 * 1024  # PEM of a few certificates; the whole form stays under 64 KiB
MAX_SIGNATURE_TEXT = 512  # base64 of a DER (r, s) pair on a 521-bit curve is ~190
MAX_NONCE = 64
_NONCE = re.compile(r"[A-Za-z0-9_-]{32,64}")  # what secrets.token_urlsafe(32) writes
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*-----END CERTIFICATE-----")


def challenge(issuer: str, nonce: str) -> bytes:
    """The exact bytes a client signs: ``govtrust-login:v1:<issuer>:<nonce>`` in UTF-8.

    The issuer makes a signature for another site useless here, and the nonce one
    for another attempt."""
    return f"{CHALLENGE_PREFIX}:{issuer}:{nonce}".encode()


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# -- the request ------------------------------------------------------------------------
@dataclass(frozen=True)
class SignatureRequest:
    """What the client posts, parsed: the nonce, the chain (leaf first), the signature."""

    nonce: str
    chain: tuple[x509.Certificate, ...] = field(repr=False)
    signature: bytes = field(repr=False)


def _b64(text: str, reason: Refusal = Refusal.MALFORMED) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CertificateRefused(reason, "not base64") from None


def parse_request(nonce: str, chain: str, signature: str) -> SignatureRequest:
    """Read the posted fields; sizes first, so nothing large is decoded.

    ``chain``: PEM blocks, or base64 DER certificates separated by commas (or
    whitespace), leaf first. ``signature``: base64 of the DER signature.
    """
    if len(chain) > MAX_CHAIN_TEXT:
        raise CertificateRefused(Refusal.TOO_LARGE, f"chain of {len(chain)} characters")
    if len(signature) > MAX_SIGNATURE_TEXT or len(nonce) > MAX_NONCE:
        raise CertificateRefused(Refusal.MALFORMED_REQUEST, "signature or nonce too long")
    if not _NONCE.fullmatch(nonce):
        raise CertificateRefused(Refusal.MALFORMED_REQUEST, "nonce")
    raw = chain.encode("ascii", "replace")
    if b"-----BEGIN" in raw:
        blocks: list[bytes] = _PEM.findall(raw)
        if _PEM.sub(b"", raw).strip():  # anything but line breaks between the blocks
            raise CertificateRefused(Refusal.MALFORMED, "chain is not PEM certificates")
    else:
        blocks = [_b64(part) for part in re.split(r"[,\s]+", chain.strip()) if part]
    if not blocks:
        raise CertificateRefused(Refusal.MALFORMED, "no certificate")
    if len(blocks) > MAX_CHAIN:
        raise CertificateRefused(Refusal.TOO_LARGE, f"{len(blocks)} certificates")
    certs = tuple(load_certificate(b) for b in blocks)
    sig = _b64(signature, Refusal.MALFORMED_REQUEST)
    if not sig:
        raise CertificateRefused(Refusal.MALFORMED_REQUEST, "no signature")
    return SignatureRequest(nonce, certs, sig)


def check_signature(cert: x509.Certificate, signature: bytes, data: bytes) -> None:
    """The leaf's key signed ``data``: SM3withSM2 with the default ID for an SM2
    key, ecdsa-with-SHA256 for an ECDSA key; anything else is refused."""
    def refuse(detail: str) -> CertificateRefused:
        return CertificateRefused(Refusal.BAD_SIGNATURE, detail,
                                  serial=serial_hex(cert.serial_number),
                                  subject=cert.subject.rfc4514_string())

    key = sm2_key(cert)
    if key is not None:
        if not sm2.verify(key, signature, data):
            raise refuse("SM3withSM2 with the default ID does not verify")
        return
    try:
        public = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise refuse("unreadable key") from None
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise refuse("not an SM2 or ECDSA key")
    try:
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise refuse("ecdsa-with-SHA256 does not verify") from None


# -- nonces -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Challenge:
    """A nonce handed to a browser, and the value of the cookie it is bound to."""

    nonce: str
    binding: str
    expires_at: float


class NonceStore:
    """Single-use, short-lived, browser-bound nonces in the shared database."""

    def __init__(self, sessions: sessionmaker[Session], *, seconds: int = NONCE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._sessions = sessions
        self.seconds = seconds
        self._clock = clock

    def issue(self, binding: str | None = None) -> Challenge:
        """A fresh nonce bound to ``binding`` (the browser's cookie; a new one when
        it has none or a malformed one). Rows long expired are swept here."""
        if binding is None or not _NONCE.fullmatch(binding):
            binding = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        now = self._clock()
        with self._sessions.begin() as s:
            s.execute(delete(login_nonces).where(login_nonces.c.expires_at < now - 3600))
            s.execute(insert(login_nonces).values(
                nonce_hash=_digest(nonce), binding_hash=_digest(binding), created_at=now,
                expires_at=now + self.seconds))
        return Challenge(nonce, binding, now + self.seconds)

    def consume(self, nonce: str, binding: str) -> None:
        """Use the nonce once; refuse an unknown (or another browser's), used or
        expired one. The UPDATE is the single point of decision (compare and set)."""
        now = self._clock()
        nonce_hash, binding_hash = _digest(nonce), _digest(binding or "")
        with self._sessions.begin() as s:
            done = rowcount(s.execute(update(login_nonces).where(
                login_nonces.c.nonce_hash == nonce_hash,
                login_nonces.c.binding_hash == binding_hash,
                login_nonces.c.used_at.is_(None),
                login_nonces.c.expires_at > now).values(used_at=now)))
            if done == 1:
                return
            row = s.execute(select(login_nonces).where(
                login_nonces.c.nonce_hash == nonce_hash)).first()
        if row is None or not hmac.compare_digest(row.binding_hash, binding_hash):
            raise CertificateRefused(Refusal.NONCE_UNKNOWN)
        if row.used_at is not None:
            raise CertificateRefused(Refusal.NONCE_USED)
        raise CertificateRefused(Refusal.NONCE_EXPIRED)
