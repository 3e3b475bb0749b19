"""CRLs (RFC 5280 §5): complete and delta, built in one pass from a list.

The revokedCertificates sequence is DER-encoded directly: a million entries take
seconds, where growing a pyca/cryptography builder one entry at a time copies the
builder each time. The TBS is then signed by any :class:`pki.keys.Signer`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
_SHORT = [bytes((n,)) for n in range(0x80)]
# An entry's whole crlEntryExtensions for each reason alone (RFC 5280 §5.3.1: the
# reason code unspecified SHOULD be absent, so it has none).
_REASON_ONLY: dict[RevocationReason | None, bytes] = {
    r: b"" if r is RevocationReason.UNSPECIFIED
    else b"\x30" + _SHORT[len(_REASON_EXT[r])] + _REASON_EXT[r] for r in RevocationReason}
_REASON_ONLY[None] = b""
# SEQUENCE { INTEGER serial, UTCTime, crlEntryExtensions }, each length one octet:
# the shape of nearly every entry, made by one formatting instead of six joins.
_ORDINARY = b"\x30%c\x02%c%b\x17\x0d%02d%02d%02d%02d%02d%02dZ%b"
# Serials up to 20 octets (RFC 5280 §4.1.2.2) and well beyond keep the entry under
# 128 octets: 2 + 63 + 15 (the UTCTime) + 14 (a reason's extensions) = 94.
_ORDINARY_SERIAL_OCTETS = 0x40


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
    n = (serial.bit_length() + 8) // 8
    at = entry.revoked_at
    if at.tzinfo is not None and at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    if entry.invalidity_date is None and n < _ORDINARY_SERIAL_OCTETS and at.year < 2050:
        # The usual entry: UTCTime (RFC 5280 §5.1.2.6 via §4.1.2.5, before 2050), a
        # reason at most, every length below 128 (X.690 §8.1.3.4).
        exts = _REASON_ONLY[entry.reason]
        return _ORDINARY % (2 + n + 15 + len(exts), n, serial.to_bytes(n, "big"),
                            at.year % 100, at.month, at.day, at.hour, at.minute,
                            at.second, exts)
    return _encode_any(serial, at, entry.reason, entry.invalidity_date)


def _encode_any(serial: int, at: datetime, reason: RevocationReason | None,
                invalidity_date: datetime | None) -> bytes:
    """An entry of any shape: long serials, GeneralizedTime, an invalidity date."""
    body = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    exts = b""
    # RFC 5280 §5.3.1: the reason code unspecified SHOULD be absent.
    if reason is not None and reason is not RevocationReason.UNSPECIFIED:
        exts = _REASON_EXT[reason]
    if invalidity_date is not None:
        # RFC 5280 §5.3.2: always GeneralizedTime.
        exts += der.extension(OID_INVALIDITY_DATE, der.generalized_time(invalidity_date))
    inner = der.tlv(0x02, body) + _time(at)
    if exts:
        inner += der.tlv(0x30, exts)
    return der.tlv(0x30, inner)


def encode_entries(entries: Iterable[RevokedEntry]) -> list[bytes]:
    """The revokedCertificates elements of ``entries``, in order: a list, whose
    length is the CRL's entry count (``bytes.join`` would make one anyway)."""
    return [encode_entry(e) for e in entries]


def build_crl(*, issuer: x509.Certificate, signer: Signer, entries: Sequence[bytes],
              number: int, this_update: datetime, next_update: datetime,
              base_number: int | None = None) -> bytes:
    """A signed CRL of ``entries`` (:func:`encode_entries`); a delta CRL when
    ``base_number`` is given (RFC 5280 §5.2.4)."""
    body = b"".join(entries)
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
