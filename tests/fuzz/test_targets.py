"""A short hypothesis pass over every fuzz target (tests/fuzz/targets.py).

Each target gets random bytes and mutations of its seeds; the long runs are
scripts/bench/fuzz.py. The regression tests below are crashes the fuzzers found,
each kept under its own name with the input that found it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from directory.ldif import parse_ldif
from idp.errors import InvalidClientMetadata
from idp.oidc.clients import validate_redirect_uri
from idp.oidc.keys import InvalidToken
from pki.csr import parse_csr
from pki.errors import BadRequest
from tests.fixtures.idp import ISSUER, FakeDirectory, make_services
from tests.fuzz import targets

# Fast parsers get more examples than the ones that go through a Flask app.
EXAMPLES = {"ocsp_http": 60, "id_token_hint": 100, "client_assertion": 60, "login_form": 60}


def mutated(name: str) -> st.SearchStrategy[bytes]:
    """A seed with a few bytes replaced, inserted or cut, or plain random bytes."""
    def mutate(seed: bytes, edits: list[tuple[int, int, int]]) -> bytes:
        data = bytearray(seed)
        for kind, at, value in edits:
            at = at % (len(data) + 1)
            if kind == 0 and data:
                data[at % len(data)] = value
            elif kind == 1:
                data[at:at] = bytes((value,))
            else:
                del data[at:at + value % 8]
        return bytes(data)

    edit = st.tuples(st.integers(0, 2), st.integers(0, 1 << 16), st.integers(0, 255))
    from_seed = st.builds(mutate, st.sampled_from(targets.seeds(name)),
                          st.lists(edit, max_size=6))
    return st.one_of(from_seed, st.binary(max_size=512))


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_target_holds_under_random_input(name: str) -> None:
    target = targets.TARGETS[name]

    @settings(max_examples=EXAMPLES.get(name, 200), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated(name))
    def run(data: bytes) -> None:
        target(data)

    run()


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_target_accepts_its_seeds(name: str) -> None:
    for seed in targets.seeds(name):
        targets.TARGETS[name](seed)


# -- crashes found, kept as regressions --------------------------------------------------

def test_ldif_not_utf8_on_the_first_line_is_an_error_not_a_crash() -> None:
    # python-ldap's LDIFParser reads the first line in its constructor, outside
    # the try that caught decoding errors of parse(): b"\xff" raised out.
    parsed = parse_ldif(b"\xff\n")
    assert not parsed.rows
    assert parsed.errors and parsed.errors[0][0] == 1
    assert "not valid LDIF" in parsed.errors[0][1]


def test_csr_with_version_4_is_a_bad_request_not_a_crash() -> None:
    # Found by scripts/bench/fuzz.py: pyca/cryptography raises InvalidVersion, which
    # is no ValueError, for a CSR whose version is not v1 (RFC 2986 §4.1).
    der_bytes = bytearray(targets.seeds("csr")[0])
    at = der_bytes.index(b"\x02\x01\x00")  # CertificationRequestInfo.version
    der_bytes[at + 2] = 4
    with pytest.raises(BadRequest) as caught:
        parse_csr(bytes(der_bytes), max_bytes=64 * 1024)
    assert caught.value.reason == "garbage"


def test_ldif_ending_inside_a_folded_line_is_an_error_not_a_crash() -> None:
    # Found by scripts/bench/fuzz.py: python-ldap raises EOFError, no ValueError.
    parsed = parse_ldif(b"dn: uid=zhangwei,ou=peopldn: e,dc=uid=zhbea")
    assert not parsed.rows
    assert parsed.errors and "not valid LDIF" in parsed.errors[0][1]


def test_redirect_uri_with_an_unbalanced_bracket_is_refused_not_a_crash() -> None:
    # Found by scripts/bench/fuzz.py: urlsplit raises ValueError("Invalid IPv6 URL").
    with pytest.raises(InvalidClientMetadata):
        validate_redirect_uri("https://app.ll[ck/cb")


def test_tokens_with_made_up_kids_do_not_reload_the_keys_each_time(tmp_path: Path) -> None:
    # Found by the id_token_hint target's rate (24 inputs/s): every unknown kid
    # forced a reload that decrypts each private key, so /logout with made-up
    # kids cost a key derivation per request.
    services = make_services(tmp_path / "home", ISSUER, FakeDirectory())
    keys = services.provider.keys
    header = base64.urlsafe_b64encode(json.dumps(
        {"alg": "ES256", "kid": "made-up", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        keys.verify(f"{header}.e30.c2ln", typ="jwt")
    loaded = keys._loaded
    for _ in range(20):
        with pytest.raises(InvalidToken):
            keys.verify(f"{header}.e30.c2ln", typ="jwt")
    assert keys._loaded is loaded
    services.close()


def test_ldif_dn_given_as_a_url_is_an_error_not_a_crash() -> None:
    # Found by scripts/bench/fuzz.py at 1,000,000 inputs: "dn:< URL" made python-ldap
    # call .decode() on None (AttributeError).
    parsed = parse_ldif(b"dn:< file:///etc/passwd\nuid: zhangwei\n\n")
    assert not parsed.rows
    assert parsed.errors and "dn:<" in parsed.errors[0][1]


# -- the HTTP targets reach the code they fuzz ----------------------------------------------

def test_client_assertion_target_reaches_the_assertion_check_past_the_throttle() -> None:
    # On the real clock the throttle (60 failed /token requests a minute per client)
    # answered 429 to nearly every input of a long run, before the assertion was
    # read. The fuzz clock moves a window every 64 requests: the assertion check is
    # reached, and the throttle's refusal still comes in every window.
    idp = targets._idp()
    idp.clock.next_window()
    targets.STATUSES.clear()
    expired = idp.signed_expired
    for _ in range(3 * idp.clock.per_window):
        targets.client_assertion(expired)
    refused = targets.STATUSES["POST /token 429"]
    assert refused == 3 * (idp.clock.per_window - 60)
    assert targets.STATUSES["POST /token 400"] == 3 * 60


def test_login_form_target_logs_in_and_reaches_the_code_check() -> None:
    # The fuzzed CSRF field never matched the page's token, so POST /login never got
    # past the CSRF check, and POST /login/otp never had a session to check a code
    # for. The seed's CSRF field "token" now stands for the page's real token.
    idp = targets._idp()
    idp.clock.next_window()
    targets.STATUSES.clear()
    targets.login_form(targets.seeds("login_form")[0])
    assert targets.STATUSES["POST /login 302"] == 1
    assert targets.STATUSES["POST /login/otp 401"] == 1
    assert targets.COOKIE_NAME not in idp.caller.cookies  # the next input starts logged out


def test_ocsp_http_target_has_a_request_for_a_certificate_the_ca_issued() -> None:
    targets.STATUSES.clear()
    targets.ocsp_http(targets._pki().issued_request)
    assert targets.STATUSES["POST /ocsp 200"] == 1
