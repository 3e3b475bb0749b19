"""CRLs (RFC 5280 §5): complete and delta, built in one pass from a list.

The revokedCertificates sequence is DER-encoded directly: a million entries take
seconds, where growing a pyca/cryptography builder one entry at a time copies the
builder each time. The TBS is then signed by any :class:`pki.keys.Signer`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki import der
from pki.assemble import sign_tbs
from pki.keys import Signer
from pki.model import RevocationReason, RevokedEntry

OID_REASON_CODE = "2.5.29.21"
OID_INVALIDITY_DATE = "2.5.29.24"
OID_CRL_NUMBER = "2.5.29.20"
OID_DELTA_CRL_INDICATOR = "2.5.29.27"
OID_AKI = "2.5.29.35"

CONTENT_TYPE = "application/pkix-crl"


def _reason_extension(reason: RevocationReason) -> bytes:
    return der.extension(OID_REASON_CODE, der.enumerated(reason.code))


# The few reason-code extensions there are, encoded once.
_REASON_EXT = {r: _reason_extension(r) for r in RevocationReason}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SHORT = [bytes((n,)) for n in range(0x80)]


def _time(at: datetime) -> bytes:
    # der.time without strftime: this runs once per entry of a million-entry CRL.
    # A naive time is UTC already (the store keeps UTC; SQLite hands it back naive):
    # only its fields are read, so it is not copied to attach the zone.
    if at.tzinfo is not None and at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    if at.year < 2050:
        return b"\x17\x0d%02d%02d%02d%02d%02d%02dZ" % (
            at.year % 100, at.month, at.day, at.hour, at.minute, at.second)
    return der.generalized_time(at)


def encode_entry(entry: RevokedEntry) -> bytes:
    """One revokedCertificates element (RFC 5280 §5.1.2.6)."""
    serial = entry.serial
    body = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    exts = b""
    # RFC 5280 §5.3.1: the reason code unspecified SHOULD be absent.
    if entry.reason is not None and entry.reason is not RevocationReason.UNSPECIFIED:
        exts = _REASON_EXT[entry.reason]
    if entry.invalidity_date is not None:
        # RFC 5280 §5.3.2: always GeneralizedTime.
        exts += der.extension(OID_INVALIDITY_DATE, der.generalized_time(entry.invalidity_date))
    # Every length of an ordinary entry is below 128, one octet (X.690 §8.1.3.4).
    n = len(body)
    inner = b"\x02" + (_SHORT[n] if n < 0x80 else der.length(n)) + body \
        + _time(entry.revoked_at)
    if exts:
        n = len(exts)
        inner += b"\x30" + (_SHORT[n] if n < 0x80 else der.length(n)) + exts
    n = len(inner)
    return b"\x30" + (_SHORT[n] if n < 0x80 else der.length(n)) + inner


def build_crl(*, issuer: x509.Certificate, signer: Signer, entries: Iterable[RevokedEntry],
              number: int, this_update: datetime, next_update: datetime,
              base_number: int | None = None) -> bytes:
    """A signed CRL; a delta CRL when ``base_number`` is given (RFC 5280 §5.2.4)."""
    body = b"".join(encode_entry(e) for e in entries)
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    exts = [
        # RFC 5280 §5.2.1: AKI keyIdentifier [0] IMPLICIT.
        der.extension(OID_AKI, der.sequence(der.tlv(0x80, ski))),
        # RFC 5280 §5.2.3: a monotonically increasing CRL number.
        der.extension(OID_CRL_NUMBER, der.integer(number)),
    ]
    if base_number is not None:
        # RFC 5280 §5.2.4: critical, names the complete CRL this delta updates.
        exts.append(der.extension(OID_DELTA_CRL_INDICATOR, der.integer(base_number),
                                  critical=True))
    tbs = der.sequence(
        der.integer(1),  # v2
        signer.algorithm.signature_algorithm_der,
        issuer.subject.public_bytes(serialization.Encoding.DER),
        der.time(this_update),
        der.time(next_update),
        # RFC 5280 §5.1.2.6: absent (not empty) when nothing is revoked.
        der.tlv(0x30, body) if body else b"",
        der.explicit(0, der.sequence(*exts)),
    )
    return sign_tbs(tbs, signer)
