"""A key wrapped to a certificate: CMS EnvelopedData (RFC 5652 §6) that
``openssl cms -decrypt`` opens.

pyca/cryptography's envelope builder takes RSA recipients only; an ECDSA
certificate needs key agreement (RFC 5753 §3.1, ephemeral-static ECDH), which
is assembled here with the DER helpers of ``pki.der``:

- a fresh ephemeral key on the recipient's curve (``originatorKey``, §3.1.1);
- ``dhSinglePass-stdDH-sha256kdf-scheme`` (§7.1.4): the shared secret through the
  ANSI X9.63 KDF with SHA-256 over ``ECC-CMS-SharedInfo`` (§7.2) gives the
  key-encryption key, which wraps the content key with AES-256 key wrap
  (RFC 3394, RFC 3565 §2.3.2);
- the content itself in AES-256-CBC (RFC 3565 §2.3.1) with a random IV.

RSA recipients go through pyca's builder (key transport, RFC 5652 §6.2.1).
"""

from __future__ import annotations

import base64
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from cryptography.hazmat.primitives.serialization import pkcs7

from pki import der

ENVELOPED_DATA = "1.2.840.113549.1.7.3"
DATA = "1.2.840.113549.1.7.1"
EC_PUBLIC_KEY = "1.2.840.10045.2.1"
STD_DH_SHA256_KDF = "1.3.132.1.11.1"
AES256_WRAP = "2.16.840.1.101.3.4.1.45"
AES256_CBC = "2.16.840.1.101.3.4.1.42"


class UnsupportedRecipient(ValueError):
    """The certificate's key cannot receive an envelope (Ed25519, an unknown type)."""


def envelope(content: bytes, recipient: x509.Certificate) -> bytes:
    """``content`` encrypted to ``recipient``'s public key: a CMS ContentInfo, DER."""
    public = recipient.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return pkcs7.PKCS7EnvelopeBuilder().set_data(content).add_recipient(recipient) \
            .encrypt(serialization.Encoding.DER, [])
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise UnsupportedRecipient(type(public).__name__)
    content_key = os.urandom(32)
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()

    ephemeral = ec.generate_private_key(public.curve)
    shared = ephemeral.exchange(ec.ECDH(), public)
    wrap_alg = der.sequence(der.oid(AES256_WRAP))
    # RFC 5753 §7.2 ECC-CMS-SharedInfo: keyInfo, suppPubInfo [2] = key length in bits.
    shared_info = der.sequence(wrap_alg, der.explicit(2, der.octet_string(
        (256).to_bytes(4, "big"))))
    kek = X963KDF(hashes.SHA256(), 32, shared_info).derive(shared)
    wrapped = aes_key_wrap(kek, content_key)

    point = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint)
    # OriginatorPublicKey: id-ecPublicKey, parameters absent (RFC 5753 §3.1.1).
    originator = der.explicit(0, der.tlv(0xA1, der.sequence(der.oid(EC_PUBLIC_KEY))
                                         + der.bit_string(point)))
    issuer_and_serial = der.sequence(recipient.issuer.public_bytes(),
                                     der.integer(recipient.serial_number))
    kari = der.tlv(0xA1, b"".join([
        der.integer(3),  # RFC 5652 §6.2.2: version is always 3
        originator,
        der.sequence(der.oid(STD_DH_SHA256_KDF), wrap_alg),
        der.sequence(der.sequence(issuer_and_serial, der.octet_string(wrapped))),
    ]))
    encrypted_content_info = der.sequence(
        der.oid(DATA),
        der.sequence(der.oid(AES256_CBC), der.octet_string(iv)),
        der.tlv(0x80, encrypted),  # [0] IMPLICIT OCTET STRING
    )
    # RFC 5652 §6.1: a kari recipient (version 3) makes the EnvelopedData version 2.
    enveloped = der.sequence(der.integer(2), der.tlv(0x31, kari), encrypted_content_info)
    return der.sequence(der.oid(ENVELOPED_DATA), der.explicit(0, enveloped))


def to_pem(envelope_der: bytes) -> bytes:
    """The PEM form ``openssl cms -inform PEM`` reads (label ``CMS``)."""
    body = base64.encodebytes(envelope_der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CMS-----\n" + b"\n".join(lines) + b"\n-----END CMS-----\n"
