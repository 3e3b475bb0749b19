"""The encrypted backup container: a passphrase, scrypt, and AES-256-GCM in frames.

Layout (all integers big-endian)::

    magic    16 bytes  b"GOVTRUST-BACKUP\\n"
    hlen      4 bytes  length of the header
    header   hlen      JSON: format, kdf parameters, salt, nonce prefix, key check
    frames             4-byte ciphertext length, then AES-GCM ciphertext + tag

The frames follow the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár,
"Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", 2015):
frame *i* is sealed under the nonce ``prefix(7) || i(4) || last(1)``, with the
SHA-256 of magic and header as associated data. So a changed byte anywhere, a
changed header, frames swapped, dropped or repeated, and a file cut after any
frame (no frame marked last) are all detected. The key check in the header
(a hash of the second half of the scrypt output) tells a wrong passphrase apart
from a modified archive; it gives an attacker nothing that decrypting the
first frame would not.

This module knows nothing of what the plaintext is (``idp.runtime.backup``
writes a tar stream into it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"GOVTRUST-BACKUP\n"
FORMAT = 1
CHUNK = 1 << 20
# scrypt with N = 2**17, r = 8: 128 MiB and a few tenths of a second per try.
SCRYPT_N = 1 << 17
SCRYPT_R = 8
SCRYPT_P = 1
# A header may not make a reader spend more than this (a hostile archive could
# otherwise ask for gigabytes of scrypt memory before the key check).
MAX_SCRYPT_N = 1 << 20
MAX_HEADER = 4096
MIN_PASSPHRASE = 12
_TAG = 16
_PREFIX = 7


class ArchiveError(Exception):
    """The archive cannot be opened; ``reason`` is one of the class constants."""

    NOT_AN_ARCHIVE = "not_an_archive"
    NEWER_FORMAT = "newer_format"
    WRONG_PASSPHRASE = "wrong_passphrase"
    CORRUPT = "corrupt"
    TRUNCATED = "truncated"

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


@dataclass(frozen=True)
class _Params:
    n: int
    r: int
    p: int
    salt: bytes
    prefix: bytes


def _derive(passphrase: bytes, params: _Params) -> tuple[bytes, str]:
    """(AES key, key check) from the passphrase."""
    out = Scrypt(salt=params.salt, length=64, n=params.n, r=params.r, p=params.p
                 ).derive(passphrase)
    check = hashlib.sha256(b"govtrust-backup key check\0" + out[32:]).hexdigest()
    return out[:32], check


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= 1 << 32:
        raise ArchiveError(ArchiveError.CORRUPT, "archive has too many frames")
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def check_passphrase(passphrase: bytes) -> None:
    if len(passphrase) < MIN_PASSPHRASE:
        raise ValueError(f"the backup passphrase must be at least {MIN_PASSPHRASE} "
                         "characters long")


class EncryptingWriter:
    """A binary file-like object: what is written goes out encrypted, in frames.

    ``close()`` seals the last frame; without it the archive reads as truncated.
    """

    def __init__(self, out: IO[bytes], passphrase: bytes, *, n: int = SCRYPT_N) -> None:
        check_passphrase(passphrase)
        params = _Params(n, SCRYPT_R, SCRYPT_P, os.urandom(16), os.urandom(_PREFIX))
        key, check = _derive(passphrase, params)
        header = json.dumps({
            "format": FORMAT, "kdf": "scrypt", "n": params.n, "r": params.r, "p": params.p,
            "salt": base64.b64encode(params.salt).decode(),
            "nonce_prefix": base64.b64encode(params.prefix).decode(),
            "cipher": "AES-256-GCM", "chunk": CHUNK, "check": check,
        }, sort_keys=True).encode()
        out.write(MAGIC + struct.pack(">I", len(header)) + header)
        self._out = out
        self._aead = AESGCM(key)
        self._aad = hashlib.sha256(MAGIC + header).digest()
        self._prefix = params.prefix
        self._buffer = bytearray()
        self._index = 0
        self.closed = False

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("write to a closed archive")
        self._buffer += data
        # Keep at least one byte back: the last frame must be written by close().
        while len(self._buffer) > CHUNK:
            self._frame(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def _frame(self, plain: bytes, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, last), plain, self._aad)
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._index += 1

    def close(self) -> None:
        if not self.closed:
            self._frame(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._out.flush()
            self.closed = True


def read_header(source: IO[bytes]) -> dict[str, Any]:
    """The clear header (format and KDF parameters), checked for shape."""
    if source.read(len(MAGIC)) != MAGIC:
        raise ArchiveError(ArchiveError.NOT_AN_ARCHIVE, "not a GovTrust backup archive")
    raw_len = source.read(4)
    if len(raw_len) != 4:
        raise ArchiveError(ArchiveError.TRUNCATED, "the archive is truncated (header)")
    (length,) = struct.unpack(">I", raw_len)
    if length > MAX_HEADER:
        raise ArchiveError(ArchiveError.CORRUPT, "the archive header is corrupt")
    raw = source.read(length)
    if len(raw) != length:
        raise ArchiveError(ArchiveError.TRUNCATED, "the archive is truncated (header)")
    try:
        header = json.loads(raw)
    except ValueError:
        raise ArchiveError(ArchiveError.CORRUPT, "the archive header is corrupt") from None
    if not isinstance(header, dict):
        raise ArchiveError(ArchiveError.CORRUPT, "the archive header is corrupt")
    fmt = header.get("format")
    if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT:
        raise ArchiveError(ArchiveError.NEWER_FORMAT,
                           f"the archive has format {fmt}, written by a newer GovTrust; "
                           f"this one reads format {FORMAT}")
    if fmt != FORMAT or header.get("kdf") != "scrypt" or header.get("cipher") != "AES-256-GCM":
        raise ArchiveError(ArchiveError.CORRUPT, "the archive header is corrupt")
    header["_raw"] = raw
    return header


def _params(header: dict[str, Any]) -> _Params:
    try:
        n, r, p = (int(header[k]) for k in ("n", "r", "p"))
        salt = base64.b64decode(header["salt"], validate=True)
        prefix = base64.b64decode(header["nonce_prefix"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise ArchiveError(ArchiveError.CORRUPT, "the archive header is corrupt") from None
    if not (2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 4
            and len(salt) >= 16 and len(prefix) == _PREFIX):
        raise ArchiveError(ArchiveError.CORRUPT, "the archive header has unsafe KDF parameters")
    return _Params(n, r, p, salt, prefix)


def decrypt(source: IO[bytes], passphrase: bytes, sink: IO[bytes]) -> int:
    """Decrypt ``source`` into ``sink``, every frame authenticated; bytes written.

    The sink receives plaintext as frames pass, so it must be a scratch file the
    caller throws away unless this returns (it raises on the first bad frame).
    """
    header = read_header(source)
    params = _params(header)
    key, check = _derive(passphrase, params)
    if not hmac.compare_digest(check, str(header.get("check", ""))):
        raise ArchiveError(ArchiveError.WRONG_PASSPHRASE,
                           "wrong passphrase for this backup archive")
    aead = AESGCM(key)
    aad = hashlib.sha256(MAGIC + header["_raw"]).digest()
    index = 0
    total = 0
    while True:
        raw_len = source.read(4)
        if not raw_len:
            raise ArchiveError(ArchiveError.TRUNCATED,
                               f"the archive is truncated: it ends after frame {index} "
                               "without its last frame")
        if len(raw_len) != 4:
            raise ArchiveError(ArchiveError.TRUNCATED, "the archive is truncated mid-frame")
        (length,) = struct.unpack(">I", raw_len)
        if not _TAG <= length <= CHUNK + _TAG:
            raise ArchiveError(ArchiveError.CORRUPT,
                               f"the archive is corrupt: frame {index} has a bad length")
        sealed = source.read(length)
        if len(sealed) != length:
            raise ArchiveError(ArchiveError.TRUNCATED, "the archive is truncated mid-frame")
        plain = None
        last = False
        for last in (False, True):
            try:
                plain = aead.decrypt(_nonce(params.prefix, index, last), sealed, aad)
                break
            except InvalidTag:
                continue
        if plain is None:
            raise ArchiveError(ArchiveError.CORRUPT,
                               f"the archive is corrupt or was modified: frame {index} "
                               "failed authentication")
        sink.write(plain)
        total += len(plain)
        index += 1
        if last:
            if source.read(1):
                raise ArchiveError(ArchiveError.CORRUPT,
                                   "the archive is corrupt or was modified: data after "
                                   "its last frame")
            return total
