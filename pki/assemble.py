"""Sign certificates built with pyca/cryptography by any :class:`pki.keys.Signer`.

cryptography has no external-signer API, so for a key it does not hold we build
the certificate once with a throwaway key *of the same kind* (so the signature
AlgorithmIdentifier inside the TBS is the right one, RFC 5280 §4.1.2.3), take its
``tbs_certificate_bytes``, sign those with the real signer and assemble the DER.
Keys held in this process take the direct route (and are checked to be the
issuer's); anything assembled from an external signature is checked with
``verify_directly_issued_by`` before it leaves.
"""

from __future__ import annotations

import threading

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from pki import der
from pki.errors import KeyStoreError
from pki.keys import KeyAlgorithm, Signer, SoftwareSigner

_throwaway: dict[str, CertificateIssuerPrivateKeyTypes] = {}
_lock = threading.Lock()


def _throwaway_key(algorithm: KeyAlgorithm) -> CertificateIssuerPrivateKeyTypes:
    kind = algorithm.value.split("-")[0]
    with _lock:
        key = _throwaway.get(kind)
        if key is None:
            if kind == "ec":
                key = ec.generate_private_key(ec.SECP256R1())
            elif kind == "rsa":
                key = rsa.generate_private_key(65537, 2048)
            else:
                key = ed25519.Ed25519PrivateKey.generate()
            _throwaway[kind] = key
        return key


def sign_certificate(builder: x509.CertificateBuilder, signer: Signer,
                     issuer: x509.Certificate | None = None) -> x509.Certificate:
    """Sign ``builder`` with ``signer``; check against ``issuer`` (itself if None)."""
    algorithm = signer.algorithm
    if isinstance(signer, SoftwareSigner):
        # cryptography signed with the key itself; what can still go wrong is a key
        # that is not the issuer's, which the public keys show without a verify.
        cert = builder.sign(signer.private_key, algorithm.hash)
        if issuer is not None and issuer.public_key() != signer.public_key():
            raise KeyStoreError(signer.label, "the key is not the issuer's")
        return cert
    draft = builder.sign(_throwaway_key(algorithm), algorithm.hash)
    tbs = draft.tbs_certificate_bytes
    cert = x509.load_der_x509_certificate(
        der.signed(tbs, algorithm.signature_algorithm_der, signer.sign(tbs)))
    try:
        cert.verify_directly_issued_by(issuer or cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise KeyStoreError(signer.label, f"signature does not verify: {exc!r}") from None
    return cert


def sign_tbs(tbs: bytes, signer: Signer) -> bytes:
    """A signed object (CRL, ...) from its TBS bytes (RFC 5280 §5.1)."""
    return der.signed(tbs, signer.algorithm.signature_algorithm_der, signer.sign(tbs))
