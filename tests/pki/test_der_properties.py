"""Our DER encoders (pki.der) give the same bytes as asn1crypto, for any input.

Hypothesis draws the values; asn1crypto is the independent encoder. Integers get
the boundaries where a minimal two's-complement encoding changes length (±2^k,
±2^k ± 1) on top of the random draws, negative ones included (X.690 §8.3.2).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from asn1crypto import core, crl, ocsp
from hypothesis import example, given
from hypothesis import strategies as st

from pki import der
from pki.model import RevocationReason

# Values around every power of two up to 4096 bits, on both sides of zero.
_BOUNDARIES = st.builds(lambda k, d, sign: sign * (2**k + d),
                        st.integers(0, 4096), st.integers(-1, 1), st.sampled_from([1, -1]))
_INTEGERS = st.one_of(st.integers(), st.integers(-(2**4096), 2**4096), _BOUNDARIES)


@given(_INTEGERS)
@example(0)
@example(-128)
@example(-129)
@example(-32768)
@example(2**159)
@example(-(2**159))
def test_integer_matches_asn1crypto(value: int) -> None:
    assert der.integer(value) == core.Integer(value).dump()


@pytest.mark.parametrize("value", [-128, -32768, -(2**63)])
def test_negative_integer_is_minimal(value: int) -> None:
    # X.690 §8.3.2: the first nine bits are not all ones, so -2^(8n-1) fits n octets.
    body = der.integer(value)[2:]
    assert body[0] == 0x80 and not any(body[1:])


@pytest.mark.parametrize("reason", list(RevocationReason))
def test_enumerated_matches_asn1crypto_crl_reason(reason: RevocationReason) -> None:
    assert der.enumerated(reason.code) == crl.CRLReason(reason.code).dump()


@pytest.mark.parametrize("status", [0, 1, 2, 3, 5, 6])
def test_enumerated_matches_asn1crypto_ocsp_status(status: int) -> None:
    assert der.enumerated(status) == ocsp.OCSPResponseStatus(status).dump()


@given(st.booleans())
def test_boolean_matches_asn1crypto(value: bool) -> None:
    assert der.boolean(value) == core.Boolean(value).dump()


# Lengths on both sides of the short/long form switch (127/128) and of 1, 2, 3 octets.
_BLOBS = st.one_of(st.binary(max_size=300),
                   st.sampled_from([127, 128, 255, 256, 65535, 65536]).map(lambda n: b"\x5a" * n))


@given(_BLOBS)
def test_octet_string_matches_asn1crypto(value: bytes) -> None:
    assert der.octet_string(value) == core.OctetString(value).dump()


@given(_BLOBS)
def test_bit_string_matches_asn1crypto(value: bytes) -> None:
    assert der.bit_string(value) == core.OctetBitString(value).dump()


@given(st.lists(_BLOBS, max_size=5))
def test_sequence_of_octet_strings_matches_asn1crypto(values: list[bytes]) -> None:
    class Blobs(core.SequenceOf):
        _child_spec = core.OctetString

    assert (der.sequence(*(der.octet_string(v) for v in values))
            == Blobs([core.OctetString(v) for v in values]).dump())


@st.composite
def _oids(draw: st.DrawFn) -> str:
    # X.660: the first arc is 0, 1 or 2; under 0 and 1 the second is below 40.
    first = draw(st.integers(0, 2))
    second = draw(st.integers(0, 39) if first < 2 else st.integers(0, 2**70))
    rest = draw(st.lists(st.integers(0, 2**70), max_size=10))
    return ".".join(str(a) for a in (first, second, *rest))


@given(_oids())
@example("1.3.6.1.4.1.311.20.2.3")
@example("2.999.3")
def test_oid_matches_asn1crypto(dotted: str) -> None:
    assert der.oid(dotted) == core.ObjectIdentifier(dotted).dump()


@given(st.integers(0, 30), _INTEGERS)
def test_explicit_matches_asn1crypto(tag: int, value: int) -> None:
    assert der.explicit(tag, der.integer(value)) == core.Integer(value, explicit=tag).dump()


def test_explicit_refuses_a_high_tag_number() -> None:
    with pytest.raises(ValueError, match="high-tag-number"):
        der.explicit(31, der.integer(1))


# Whole seconds (our encoders drop fractions, as RFC 5280 §4.1.2.5 requires) in
# any offset; the encoders convert to UTC.
_TIMES = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9998, 12, 31),
                      timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)),
                                                 timezone(timedelta(hours=-5))])
                      ).map(lambda at: at.replace(microsecond=0))


@given(_TIMES)
def test_generalized_time_matches_asn1crypto(at: datetime) -> None:
    assert der.generalized_time(at) == core.GeneralizedTime(at.astimezone(UTC)).dump()


@given(_TIMES)
@example(datetime(1949, 12, 31, 23, 59, 59, tzinfo=UTC))
@example(datetime(1950, 1, 1, tzinfo=UTC))
@example(datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC))
@example(datetime(2050, 1, 1, tzinfo=UTC))
def test_time_matches_asn1crypto(at: datetime) -> None:
    utc = at.astimezone(UTC)
    # RFC 5280 §4.1.2.5: UTCTime for 1950..2049, GeneralizedTime for every other year.
    expected = (core.UTCTime(utc) if 1950 <= utc.year < 2050
                else core.GeneralizedTime(utc))
    assert der.time(at) == expected.dump()


# Revocation times of any kind a store hands back: UTC, another offset, or naive
# (UTC already); 1950 on (UTCTime before 2050, GeneralizedTime after).
_REVOKED_AT = st.one_of(
    _TIMES.filter(lambda at: at.astimezone(UTC).year >= 1950),
    st.datetimes(min_value=datetime(1950, 1, 2), max_value=datetime(9998, 12, 31))
    .map(lambda at: at.replace(microsecond=0)))
# Serials up to 20 octets as RFC 5280 §4.1.2.2 allows, and far longer ones.
_SERIALS = st.one_of(st.integers(1, 2**160 - 1), st.integers(1, 2**1100),
                     st.sampled_from([1, 127, 128, 255, 256, 2**159, 2**503, 2**504 - 1]))


@given(_SERIALS, _REVOKED_AT, st.sampled_from([None, *RevocationReason]),
       st.none() | _TIMES)
@example(2**159, datetime(2049, 12, 31, 23, 59, 59), RevocationReason.KEY_COMPROMISE, None)
@example(2**159, datetime(2050, 1, 1, tzinfo=UTC), None, None)
@example(2**503, datetime(2026, 12, 2, tzinfo=UTC), RevocationReason.AA_COMPROMISE,
         datetime(2026, 12, 1, tzinfo=UTC))
def test_crl_entry_matches_asn1crypto(serial: int, revoked_at: datetime,
                                      reason: RevocationReason | None,
                                      invalidity: datetime | None) -> None:
    """pki.crl.encode_entry, its one-format fast path and its general one, against
    asn1crypto's RevokedCertificate (RFC 5280 §5.1.2.6, §5.3.1, §5.3.2)."""
    from pki import crl as ours
    from pki.model import RevokedEntry

    utc = revoked_at.replace(tzinfo=UTC) if revoked_at.tzinfo is None \
        else revoked_at.astimezone(UTC)
    extensions = []
    if reason is not None and reason is not RevocationReason.UNSPECIFIED:
        extensions.append({"extn_id": "crl_reason", "extn_value": crl.CRLReason(reason.code)})
    if invalidity is not None:
        extensions.append({"extn_id": "invalidity_date",
                           "extn_value": core.GeneralizedTime(invalidity.astimezone(UTC))})
    expected: dict[str, object] = {
        "user_certificate": serial,
        "revocation_date": ({"utc_time": utc} if utc.year < 2050 else {"general_time": utc})}
    if extensions:
        expected["crl_entry_extensions"] = extensions
    entry = RevokedEntry(serial, revoked_at, reason, invalidity)
    assert ours.encode_entry(entry) == crl.RevokedCertificate(expected).dump()
