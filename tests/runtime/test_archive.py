"""The encrypted container (idp.runtime.archive): STREAM framing over AES-256-GCM.

Pure logic over bytes, so no server; a small scrypt cost keeps it quick (the
header carries the cost, and the reader bounds it)."""

from __future__ import annotations

import io
import json
import os
import struct

import pytest

from idp.runtime.archive import CHUNK, MAX_SCRYPT_N, ArchiveError, EncryptingWriter, decrypt

PASSPHRASE = b"a long enough passphrase"


def seal(plain: bytes, n: int = 1 << 12) -> bytes:
    out = io.BytesIO()
    writer = EncryptingWriter(out, PASSPHRASE, n=n)
    writer.write(plain)
    writer.close()
    return out.getvalue()


def open_(sealed: bytes, passphrase: bytes = PASSPHRASE) -> bytes:
    out = io.BytesIO()
    decrypt(io.BytesIO(sealed), passphrase, out)
    return out.getvalue()


def frames(sealed: bytes) -> tuple[bytes, list[bytes]]:
    """(magic + header, [each frame with its length prefix])."""
    at = 20 + struct.unpack(">I", sealed[16:20])[0]
    head, found = sealed[:at], []
    while at < len(sealed):
        length = struct.unpack(">I", sealed[at:at + 4])[0]
        found.append(sealed[at:at + 4 + length])
        at += 4 + length
    return head, found


def refused(sealed: bytes, reason: str, passphrase: bytes = PASSPHRASE) -> None:
    with pytest.raises(ArchiveError) as caught:
        open_(sealed, passphrase)
    assert caught.value.reason == reason


PLAIN = os.urandom(CHUNK * 2 + 12345)  # three frames


def test_round_trip_over_several_frames() -> None:
    sealed = seal(PLAIN)
    assert open_(sealed) == PLAIN and len(frames(sealed)[1]) == 3
    assert PLAIN[:64] not in sealed


def test_an_empty_plaintext_is_one_last_frame() -> None:
    assert open_(seal(b"")) == b""


def test_wrong_passphrase() -> None:
    refused(seal(b"x"), ArchiveError.WRONG_PASSPHRASE, b"another long passphrase")


def test_swapped_frames() -> None:
    head, parts = frames(seal(PLAIN))
    refused(head + parts[1] + parts[0] + parts[2], ArchiveError.CORRUPT)


def test_dropped_last_frame() -> None:
    head, parts = frames(seal(PLAIN))
    refused(head + parts[0] + parts[1], ArchiveError.TRUNCATED)


def test_dropped_middle_frame() -> None:
    head, parts = frames(seal(PLAIN))
    refused(head + parts[0] + parts[2], ArchiveError.CORRUPT)


def test_data_after_the_last_frame() -> None:
    refused(seal(b"x") + b"\0", ArchiveError.CORRUPT)


def test_frames_from_another_archive() -> None:
    head, _ = frames(seal(PLAIN))
    _, others = frames(seal(PLAIN))
    refused(head + b"".join(others), ArchiveError.CORRUPT)


def _with_header(sealed: bytes, **change: object) -> bytes:
    head, parts = frames(sealed)
    header = json.loads(head[20:])
    header.update(change)
    raw = json.dumps(header).encode()
    return head[:16] + struct.pack(">I", len(raw)) + raw + b"".join(parts)


def test_changed_header_field() -> None:
    refused(_with_header(seal(b"x"), chunk=CHUNK // 2), ArchiveError.CORRUPT)


def test_unsafe_kdf_cost_is_refused_before_deriving() -> None:
    refused(_with_header(seal(b"x"), n=MAX_SCRYPT_N * 2), ArchiveError.CORRUPT)


def test_newer_format() -> None:
    refused(_with_header(seal(b"x"), format=2), ArchiveError.NEWER_FORMAT)


def test_short_passphrase_is_refused() -> None:
    with pytest.raises(ValueError):
        EncryptingWriter(io.BytesIO(), b"short")
