"""CA keys behind one small signing interface, and the encrypted-file key store.

A :class:`Signer` knows its algorithm and public key and signs bytes (it hashes
them itself). Two stores create and find signers by label: :class:`FileKeyStore`
(encrypted PKCS#8 files, passphrase injected by the composition root) and
``pki.pkcs11.Pkcs11KeyStore`` (non-extractable keys in a PKCS#11 token).
"""

from __future__ import annotations

import enum
import os
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PublicKeyTypes,
)

from pki.errors import KeyStoreError

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class KeyAlgorithm(enum.StrEnum):
    """The CA key algorithms ``pki.key_algorithm`` may name."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    ED25519 = "ed25519"

    @property
    def hash(self) -> hashes.SHA256 | hashes.SHA384 | None:
        """The digest signed with this key (None: Ed25519 signs the message)."""
        if self is KeyAlgorithm.EC_P384:
            return hashes.SHA384()
        if self is KeyAlgorithm.ED25519:
            return None
        return hashes.SHA256()

    @property
    def signature_algorithm_der(self) -> bytes:
        """The AlgorithmIdentifier (RFC 5758 §3.2, RFC 4055 §5, RFC 8410 §3) in DER."""
        return _SIG_ALG_DER[self]

    def generate(self) -> PrivateKey:
        if self is KeyAlgorithm.EC_P256:
            return ec.generate_private_key(ec.SECP256R1())
        if self is KeyAlgorithm.EC_P384:
            return ec.generate_private_key(ec.SECP384R1())
        if self is KeyAlgorithm.RSA_3072:
            return rsa.generate_private_key(65537, 3072)
        if self is KeyAlgorithm.RSA_4096:
            return rsa.generate_private_key(65537, 4096)
        return ed25519.Ed25519PrivateKey.generate()

    @classmethod
    def of(cls, key: PublicKeyTypes | CertificateIssuerPrivateKeyTypes) -> KeyAlgorithm:
        pub = key.public_key() if hasattr(key, "public_key") else key
        if isinstance(pub, ec.EllipticCurvePublicKey):
            if isinstance(pub.curve, ec.SECP256R1):
                return cls.EC_P256
            if isinstance(pub.curve, ec.SECP384R1):
                return cls.EC_P384
        elif isinstance(pub, rsa.RSAPublicKey):
            if pub.key_size == 3072:
                return cls.RSA_3072
            if pub.key_size == 4096:
                return cls.RSA_4096
        elif isinstance(pub, ed25519.Ed25519PublicKey):
            return cls.ED25519
        raise KeyStoreError("?", f"unsupported CA key type {type(pub).__name__}")


_SIG_ALG_DER = {
    # ecdsa-with-SHA256 / -SHA384: parameters absent (RFC 5758 §3.2)
    KeyAlgorithm.EC_P256: bytes.fromhex("300a06082a8648ce3d040302"),
    KeyAlgorithm.EC_P384: bytes.fromhex("300a06082a8648ce3d040303"),
    # sha256WithRSAEncryption: parameters NULL (RFC 4055 §5)
    KeyAlgorithm.RSA_3072: bytes.fromhex("300d06092a864886f70d01010b0500"),
    KeyAlgorithm.RSA_4096: bytes.fromhex("300d06092a864886f70d01010b0500"),
    # id-Ed25519: parameters absent (RFC 8410 §3)
    KeyAlgorithm.ED25519: bytes.fromhex("300506032b6570"),
}


@runtime_checkable
class Signer(Protocol):
    """Signs with one CA key that never leaves its store."""

    @property
    def label(self) -> str: ...

    @property
    def algorithm(self) -> KeyAlgorithm: ...

    def public_key(self) -> CertificatePublicKeyTypes: ...

    def sign(self, data: bytes) -> bytes:
        """The signature over ``data`` as it goes into a certificate's BIT STRING
        (DER ECDSA-Sig-Value, PKCS#1 v1.5 block, or raw Ed25519)."""
        ...


class KeyStore(Protocol):
    """Creates and finds CA signers by label."""

    def exists(self, label: str) -> bool: ...

    def create(self, label: str, algorithm: KeyAlgorithm) -> Signer: ...

    def get(self, label: str) -> Signer: ...


@dataclass(frozen=True)
class SoftwareSigner:
    """A signer over a key held in this process (loaded from the file store)."""

    label: str
    private_key: CertificateIssuerPrivateKeyTypes

    @property
    def algorithm(self) -> KeyAlgorithm:
        return KeyAlgorithm.of(self.private_key)

    def public_key(self) -> CertificatePublicKeyTypes:
        return self.private_key.public_key()

    def sign(self, data: bytes) -> bytes:
        key = self.private_key
        digest = self.algorithm.hash
        if isinstance(key, ec.EllipticCurvePrivateKey):
            assert digest is not None
            return key.sign(data, ec.ECDSA(digest))
        if isinstance(key, rsa.RSAPrivateKey):
            assert digest is not None
            return key.sign(data, padding.PKCS1v15(), digest)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        raise KeyStoreError(self.label, f"unsupported key type {type(key).__name__}")


def verify_signature(public_key: PublicKeyTypes, signature: bytes, data: bytes) -> bool:
    """Check a signature made by a :class:`Signer` with the matching public key."""
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            alg = KeyAlgorithm.of(public_key).hash
            assert alg is not None
            public_key.verify(signature, data, ec.ECDSA(alg))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, KeyStoreError):
        return False
    return True


_LABEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def check_label(label: str) -> str:
    if not _LABEL.match(label):
        raise KeyStoreError(label, "labels are 1-64 of [a-z0-9._-]")
    return label


class FileKeyStore:
    """Encrypted PKCS#8 files (PBES2, AES-256) in one folder, mode 0600.

    The passphrase comes from the composition root (a 0600 secret file or the
    environment); it is never written anywhere by this class.
    """

    def __init__(self, folder: Path, passphrase: bytes) -> None:
        if not passphrase:
            raise KeyStoreError("*", "the key store passphrase is empty")
        self.folder = folder
        self._passphrase = passphrase
        self._cache: dict[str, SoftwareSigner] = {}
        self._lock = threading.Lock()

    def _path(self, label: str) -> Path:
        return self.folder / f"{check_label(label)}.key.pem"

    def exists(self, label: str) -> bool:
        return self._path(label).exists()

    def create(self, label: str, algorithm: KeyAlgorithm) -> Signer:
        path = self._path(label)
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, stat.S_IRWXU)
        key = algorithm.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._passphrase),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyStoreError(label, f"{path} already exists") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        signer = SoftwareSigner(label, key)
        with self._lock:
            self._cache[label] = signer
        return signer

    def get(self, label: str) -> Signer:
        with self._lock:
            cached = self._cache.get(label)
        if cached is not None:
            return cached
        path = self._path(label)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyStoreError(label, f"{path} does not exist") from None
        try:
            key = serialization.load_pem_private_key(data, self._passphrase)
        except (ValueError, TypeError):
            raise KeyStoreError(label, "cannot decrypt: wrong passphrase or damaged file") \
                from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
                          | ed25519.Ed25519PrivateKey):
            raise KeyStoreError(label, f"unsupported key type {type(key).__name__}")
        signer = SoftwareSigner(label, key)
        with self._lock:
            self._cache[label] = signer
        return signer
