"""Just enough DER (X.690) to assemble signed objects and very large CRLs.

pyca/cryptography signs only with keys it holds. For keys held elsewhere (a
PKCS#11 token) we take the to-be-signed bytes it builds, sign them with the
:class:`pki.keys.Signer`, and wrap ``SEQUENCE { tbs, algorithm, BIT STRING }``
here (RFC 5280 §4.1.1, §5.1.1). The CRL builder uses the same primitives to
encode a million revoked entries in one pass instead of growing a builder.
"""

from __future__ import annotations

from datetime import UTC, datetime


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + length(len(value)) + value


def sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def integer(value: int) -> bytes:
    """X.690 §8.3: two's complement in the fewest octets.

    §8.3.2: the first nine bits are never all ones or all zeros. A positive value
    needs a sign bit above its magnitude; a negative one needs only as many bits
    as its complement ``~value`` (= -value - 1) has, plus the sign bit: -128 is
    ``80``, not ``ff 80``.
    """
    magnitude = value if value >= 0 else ~value
    size = magnitude.bit_length() // 8 + 1
    return tlv(0x02, value.to_bytes(size, "big", signed=True))


def enumerated(value: int) -> bytes:
    return b"\x0a" + integer(value)[1:]


def boolean(value: bool) -> bytes:
    return b"\x01\x01\xff" if value else b"\x01\x01\x00"


def octet_string(value: bytes) -> bytes:
    return tlv(0x04, value)


def bit_string(value: bytes) -> bytes:
    return tlv(0x03, b"\x00" + value)


def oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray()
    # X.690 §8.19: the first two arcs share one subidentifier; each is base 128.
    for arc in [parts[0] * 40 + parts[1], *parts[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))


def explicit(tag_number: int, value: bytes) -> bytes:
    """A context-specific constructed tag, ``[n] EXPLICIT`` (X.690 §8.14)."""
    if not 0 <= tag_number <= 30:
        # X.690 §8.1.2.4: 31 and up need the multi-octet form, which nothing here uses.
        raise ValueError(f"tag number {tag_number} needs the high-tag-number form")
    return tlv(0xA0 | tag_number, value)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def generalized_time(at: datetime) -> bytes:
    return tlv(0x18, _utc(at).strftime("%Y%m%d%H%M%SZ").encode())


def time(at: datetime) -> bytes:
    """RFC 5280 §4.1.2.5: UTCTime for 1950 through 2049, GeneralizedTime otherwise.

    A two-digit year means 1950..2049, so any other year (before 1950 too) must be
    a GeneralizedTime.
    """
    at = _utc(at)
    if 1950 <= at.year < 2050:
        return tlv(0x17, at.strftime("%y%m%d%H%M%SZ").encode())
    return generalized_time(at)


def extension(ext_oid: str, value: bytes, critical: bool = False) -> bytes:
    return sequence(oid(ext_oid), boolean(True) if critical else b"", octet_string(value))


def signed(tbs: bytes, algorithm_der: bytes, signature: bytes) -> bytes:
    """``SEQUENCE { tbs, signatureAlgorithm, signatureValue BIT STRING }``."""
    return sequence(tbs, algorithm_der, bit_string(signature))
