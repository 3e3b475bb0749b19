"""The strict verifier of our own JWTs (``idp.oidc.jws``): the one form we sign
verifies; every other form, forgery and mangling is ``InvalidToken``. Real keys,
made here; one named case per refusal. The last tests go through ``KeyStore`` on a
real database, with the keys it made and published."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from idp.oidc import jws
from idp.oidc.jws import InvalidToken, VerifyKey
from tests.fixtures.idp import FakeDirectory, make_services

ISSUER = "https://idp.example.test"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
KEYS = {"ec1": VerifyKey.of("ES256", EC_KEY.public_key()),
        "rsa1": VerifyKey.of("RS256", RSA_KEY.public_key())}
CLAIMS = {"iss": ISSUER, "sub": "app", "jti": "cc.x", "exp": 2_000_000_000}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def obj(value: Any) -> str:
    return b64(json.dumps(value).encode())


def es256(signing_input: bytes, key: ec.EllipticCurvePrivateKey = EC_KEY) -> bytes:
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def token(header: dict[str, Any] | None = None, claims: Any = None,
          sign: Callable[[bytes], bytes] = es256) -> str:
    head = obj(header if header is not None else {"alg": "ES256", "kid": "ec1",
                                                  "typ": "at+jwt"})
    body = obj(claims if claims is not None else CLAIMS)
    return f"{head}.{body}.{b64(sign(f'{head}.{body}'.encode()))}"


def check(value: str, typ: str | None = "at+jwt") -> dict[str, Any]:
    parsed = jws.split(value, ("ES256", "RS256"), typ)
    key = KEYS.get(parsed.kid)
    if key is None:
        raise InvalidToken("unknown key")
    return jws.verify(parsed, key)


def with_signature(value: str, signature: bytes) -> str:
    head, body, _ = value.split(".")
    return f"{head}.{body}.{b64(signature)}"


# -- what we sign verifies -----------------------------------------------------------

def test_es256_token_as_we_sign_it_verifies() -> None:
    assert check(token()) == CLAIMS


def test_rs256_token_as_we_sign_it_verifies() -> None:
    value = token({"alg": "RS256", "kid": "rsa1", "typ": "JWT"}, sign=lambda m: RSA_KEY.sign(
        m, padding.PKCS1v15(), hashes.SHA256()))
    assert check(value, typ="jwt") == CLAIMS


def test_typ_is_compared_without_case() -> None:
    assert check(token({"alg": "ES256", "kid": "ec1", "typ": "AT+JWT"})) == CLAIMS


def test_high_s_twin_of_a_signature_verifies_to_the_same_claims() -> None:
    # ECDSA's (r, n - s) is as valid as (r, s); OpenSSL signs either. Nothing keys
    # on the token's bytes (revocation is by jti), so the twin is the same token.
    value = token()
    sig = base64.urlsafe_b64decode(value.split(".")[2] + "==")
    s = int.from_bytes(sig[32:], "big")
    twin = with_signature(value, sig[:32] + (P256_ORDER - s).to_bytes(32, "big"))
    assert twin != value
    assert check(twin) == check(value)


# -- refused ---------------------------------------------------------------------------

def _hs256_with_our_public_key(m: bytes) -> bytes:
    secret = EC_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    return hmac.new(secret, m, hashlib.sha256).digest()


def _rs256(m: bytes) -> bytes:
    return RSA_KEY.sign(m, padding.PKCS1v15(), hashes.SHA256())


def _raw(head: str, payload: bytes) -> str:
    """Signed as we sign, over a payload written by hand (JSON with a member twice)."""
    body = b64(payload)
    return f"{head}.{body}.{b64(es256(f'{head}.{body}'.encode()))}"


GOOD = token()
HEAD, BODY, SIG = GOOD.split(".")
RAW_SIG = base64.urlsafe_b64decode(SIG + "==")

REFUSED: dict[str, str] = {
    "empty": "",
    "oversized": token(claims={**CLAIMS, "pad": "x" * 9000}),
    "not_ascii": GOOD[:-1] + "é",
    "two_parts": f"{HEAD}.{BODY}",
    "four_parts": f"{GOOD}.{SIG}",
    "five_parts_jwe": f"{HEAD}.{BODY}.{SIG}.{SIG}.{SIG}",
    "alg_none": token({"alg": "none", "kid": "ec1", "typ": "at+jwt"}, sign=lambda m: b""),
    "alg_none_with_our_signature": token({"alg": "none", "kid": "ec1", "typ": "at+jwt"}),
    "alg_missing": token({"kid": "ec1", "typ": "at+jwt"}),
    "alg_hs256_keyed_with_our_public_key": token({"alg": "HS256", "kid": "ec1",
                                                  "typ": "at+jwt"},
                                                 sign=_hs256_with_our_public_key),
    "alg_rs256_naming_our_ec_kid": token({"alg": "RS256", "kid": "ec1", "typ": "at+jwt"},
                                         sign=_rs256),
    "alg_es256_naming_our_rsa_kid": token({"alg": "ES256", "kid": "rsa1", "typ": "at+jwt"}),
    "alg_es384": token({"alg": "ES384", "kid": "ec1", "typ": "at+jwt"}),
    "kid_unknown": token({"alg": "ES256", "kid": "ec2", "typ": "at+jwt"}),
    "kid_missing": token({"alg": "ES256", "typ": "at+jwt"}),
    "kid_not_a_string": token({"alg": "ES256", "kid": 1, "typ": "at+jwt"}),
    "signed_by_another_key_with_our_kid": token(
        sign=lambda m: es256(m, OTHER_EC_KEY)),
    "typ_wrong": token({"alg": "ES256", "kid": "ec1", "typ": "JWT"}),
    "typ_missing": token({"alg": "ES256", "kid": "ec1"}),
    "typ_not_a_string": token({"alg": "ES256", "kid": "ec1", "typ": ["at+jwt"]}),
    "header_crit": token({"alg": "ES256", "kid": "ec1", "typ": "at+jwt", "crit": ["exp"],
                          "exp": 1}),
    "header_b64_false": token({"alg": "ES256", "kid": "ec1", "typ": "at+jwt", "b64": False,
                               "crit": ["b64"]}),
    "header_jku": token({"alg": "ES256", "kid": "ec1", "typ": "at+jwt",
                         "jku": "https://evil.example/jwks"}),
    "header_embedded_jwk": token({"alg": "ES256", "kid": "ec1", "typ": "at+jwt",
                                  "jwk": {"kty": "EC"}}),
    "header_not_an_object": f"{obj(['ES256'])}.{BODY}.{SIG}",
    "header_not_json": f"{b64(b'{alg')}.{BODY}.{SIG}",
    "header_not_utf8": f"{b64(bytes([0xff, 0xfe]))}.{BODY}.{SIG}",
    "header_too_long": token({"alg": "ES256", "kid": "ec1" + "x" * 600, "typ": "at+jwt"}),
    "payload_not_an_object": token(claims=["iss", ISSUER]),
    "payload_not_json": (lambda h, b: f"{h}.{b}.{b64(es256(f'{h}.{b}'.encode()))}")(
        HEAD, b64(b"{iss")),
    "payload_tampered": f"{HEAD}.{obj({**CLAIMS, 'sub': 'admin'})}.{SIG}",
    "header_tampered": f"{obj({'alg': 'ES256', 'kid': 'ec1', 'typ': 'AT+JWT'})}.{BODY}.{SIG}",
    "b64_padded_signature": f"{GOOD}==",
    "b64_padded_header": f"{HEAD}=.{BODY}.{SIG}" if len(HEAD) % 4 else f"{HEAD}==.{BODY}.{SIG}",
    "b64_standard_alphabet": GOOD.replace("-", "+").replace("_", "/")
    if ("-" in GOOD or "_" in GOOD) else GOOD[:-1] + "+",
    "b64_whitespace": f"{HEAD}.{BODY}.{SIG[:10]} {SIG[10:]}",
    "b64_stray_bits": GOOD[:-1] + {"A": "B", "Q": "R", "g": "h", "w": "x"}[GOOD[-1]],
    "b64_impossible_length": f"{HEAD}.{BODY}.{SIG}A",
    "signature_empty": f"{HEAD}.{BODY}.",
    "signature_63_octets": with_signature(GOOD, RAW_SIG[:63]),
    "signature_65_octets": with_signature(GOOD, RAW_SIG + b"\0"),
    "signature_der_encoded": with_signature(GOOD, EC_KEY.sign(
        f"{HEAD}.{BODY}".encode(), ec.ECDSA(hashes.SHA256()))),
    "signature_r_zero": with_signature(GOOD, bytes(32) + RAW_SIG[32:]),
    "signature_s_is_the_order": with_signature(GOOD, RAW_SIG[:32]
                                               + P256_ORDER.to_bytes(32, "big")),
    "signature_all_ones": with_signature(GOOD, b"\xff" * 64),
    "payload_duplicate_aud": _raw(HEAD, b'{"iss": "%s", "aud": "app", "aud": "other", '
                                        b'"sub": "app", "jti": "cc.x", "exp": 2000000000}'
                                  % ISSUER.encode()),
    "payload_nested_duplicate": _raw(HEAD, b'{"iss": "%s", "sub": "app", "jti": "cc.x", '
                                           b'"exp": 2000000000, "x": {"a": 1, "a": 2}}'
                                     % ISSUER.encode()),
    "header_duplicate_typ": _raw(b64(b'{"alg": "ES256", "kid": "ec1", "typ": "JWT", '
                                     b'"typ": "at+jwt"}'), json.dumps(CLAIMS).encode()),
}


@pytest.mark.parametrize("value", list(REFUSED.values()), ids=list(REFUSED))
def test_refused(value: str) -> None:
    with pytest.raises(InvalidToken):
        check(value)


def test_good_token_of_the_refused_table_verifies() -> None:
    # The table's mangled tokens all start from this one: it must be good, or the
    # refusals prove nothing.
    assert check(GOOD) == CLAIMS


def test_key_of_the_wrong_type_for_its_alg_is_not_loaded() -> None:
    with pytest.raises(TypeError):
        VerifyKey.of("ES256", RSA_KEY.public_key())
    with pytest.raises(TypeError):
        VerifyKey.of("ES256", ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(TypeError):
        VerifyKey.of("RS256", EC_KEY.public_key())
    with pytest.raises(ValueError):
        VerifyKey.of("HS256", EC_KEY.public_key())


# -- through the key store, with the keys it made --------------------------------------

def test_key_store_verifies_what_it_signed_and_refuses_its_mangling(tmp_path: Path) -> None:
    services = make_services(tmp_path / "home", ISSUER, FakeDirectory())
    keys = services.provider.keys
    try:
        for alg in ("ES256", "RS256"):
            value = keys.sign(CLAIMS, alg=alg, typ="at+jwt")
            header, claims = keys.verify(value, typ="at+jwt")
            assert claims == CLAIMS and header["alg"] == alg
            head, body, sig = value.split(".")
            for bad in (f"{head}.{obj({**CLAIMS, 'sub': 'x'})}.{sig}",
                        f"{obj({**header, 'alg': 'HS256'})}.{body}.{sig}",
                        f"{obj({**header, 'kid': 'other'})}.{body}.{sig}",
                        f"{obj({**header, 'crit': ['b64'], 'b64': False})}.{body}.{sig}"):
                with pytest.raises(InvalidToken):
                    keys.verify(bad, typ="at+jwt")
            with pytest.raises(InvalidToken):
                keys.verify(value, typ="jwt")
    finally:
        services.close()


def test_key_store_verifies_with_the_next_key_after_a_rotation(tmp_path: Path) -> None:
    services = make_services(tmp_path / "home", ISSUER, FakeDirectory())
    keys = services.provider.keys
    try:
        before = keys.sign(CLAIMS, typ="at+jwt")
        keys.rotate()
        after = keys.sign(CLAIMS, typ="at+jwt")
        assert before.split(".")[0] != after.split(".")[0]  # another kid
        assert keys.verify(before, typ="at+jwt")[1] == CLAIMS  # the retired key
        assert keys.verify(after, typ="at+jwt")[1] == CLAIMS
    finally:
        services.close()
