"""The KMC's storage key: a key-encryption key (KEK) that wraps every escrowed
private key, kept encrypted in the key store folder like the CA keys.

:class:`FileKeyEncryptionKey` is a random AES-256 key in ``<label>.kek`` (mode
0600), itself sealed with AES-256-GCM under a key derived by scrypt (RFC 7914)
from the key store passphrase. Escrowed keys are sealed under it with AES-256-GCM
(NIST SP 800-38D, 96-bit random nonces), the caller's ``context`` (the key's
identity) as associated data, so a wrapped key copied onto another row fails to
open instead of silently becoming someone else's key.

A PKCS#11 KEK would be a ``CKK_AES`` 256-bit key generated in the token with
``CKA_SENSITIVE`` true and ``CKA_EXTRACTABLE`` false, used through
``CKM_AES_GCM`` encrypt/decrypt (SoftHSM2 and most HSMs have it): the same two
methods, the key never in this process. It is not built yet.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from pki.errors import KeyStoreError
from pki.keys import check_label

_MAGIC = b"GTKEK1"
_BLOB = b"\x01"  # version of a sealed escrowed key
_SCRYPT_N = 2**15


class KeyEncryptionKey(Protocol):
    """Seals and opens escrowed keys; the key itself never leaves the store."""

    @property
    def label(self) -> str: ...

    def wrap(self, plaintext: bytes, context: bytes) -> bytes: ...

    def unwrap(self, sealed: bytes, context: bytes) -> bytes: ...


def _derive(passphrase: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=8, p=1).derive(passphrase)


class FileKeyEncryptionKey:
    """An AES-256 KEK in ``folder/<label>.kek``, created on first use."""

    def __init__(self, folder: Path, passphrase: bytes, label: str = "kmc-kek") -> None:
        if not passphrase:
            raise KeyStoreError(label, "the key store passphrase is empty")
        self.folder = folder
        self._label = check_label(label)
        self._passphrase = passphrase
        self._key: AESGCM | None = None
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        return self._label

    @property
    def path(self) -> Path:
        return self.folder / f"{self._label}.kek"

    def _aead(self) -> AESGCM:
        with self._lock:
            if self._key is None:
                self._key = AESGCM(self._load_or_create())
            return self._key

    def _load_or_create(self) -> bytes:
        path = self.path
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            os.chmod(self.folder, stat.S_IRWXU)
            key, salt, nonce = AESGCM.generate_key(256), os.urandom(16), os.urandom(12)
            sealed = AESGCM(_derive(self._passphrase, salt)).encrypt(
                nonce, key, self._label.encode())
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return self._load(path)  # another process made it meanwhile
            with os.fdopen(fd, "wb") as handle:
                handle.write(_MAGIC + salt + nonce + sealed)
                handle.flush()
                os.fsync(handle.fileno())
            return key
        return self._load(path)

    def _load(self, path: Path) -> bytes:
        data = path.read_bytes()
        if not data.startswith(_MAGIC) or len(data) != len(_MAGIC) + 16 + 12 + 48:
            raise KeyStoreError(self._label, f"{path} is not a GovTrust KEK file")
        salt = data[len(_MAGIC):len(_MAGIC) + 16]
        nonce = data[len(_MAGIC) + 16:len(_MAGIC) + 28]
        try:
            return AESGCM(_derive(self._passphrase, salt)).decrypt(
                nonce, data[len(_MAGIC) + 28:], self._label.encode())
        except InvalidTag:
            raise KeyStoreError(self._label, "cannot decrypt: wrong passphrase or damaged "
                                "file") from None

    def wrap(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return _BLOB + nonce + self._aead().encrypt(nonce, plaintext, context)

    def unwrap(self, sealed: bytes, context: bytes) -> bytes:
        if len(sealed) < 1 + 12 + 16 or sealed[:1] != _BLOB:
            raise KeyStoreError(self._label, "not a sealed key")
        try:
            return self._aead().decrypt(sealed[1:13], sealed[13:], context)
        except InvalidTag:
            raise KeyStoreError(self._label, "sealed key does not open: damaged, or not "
                                "this key's") from None
