"""Fuzz targets: every parser that meets the outside, one function each.

A target takes the fuzzer's bytes and drives one parser with them. The parser
must either return a value or raise its own typed error (``BadRequest``,
``OCSPRequestError``, ``InvalidToken`` ...); any other exception, or a 5xx from an
HTTP surface, is a crash and propagates out of the target. The same functions
serve the short hypothesis pass in tests/fuzz/test_targets.py and the long runs
of scripts/bench/fuzz.py, so a crash found by either is reproduced by calling
the target with the same bytes.

Targets that need a CA or an IdP build one lazily, once per process, in a
temporary folder (a real CA with file keys on SQLite; the IdP app with its real
provider on SQLite; the directory's ``authenticate`` is the test stand-in, since
these targets fuzz form and token handling, not LDAP).
"""

from __future__ import annotations

import base64
import collections
import functools
import json
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from asn1crypto import core as a_core
from authlib.oauth2 import OAuth2Error
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp

from directory.csvimport import Parsed, parse_csv
from directory.ldif import parse_ldif
from idp.errors import InvalidClientMetadata
from idp.login.certificate import CertificateRefused, load_certificate
from idp.login.forwarded import TrustedProxies, client_address, forwarded_certificate
from idp.login.sessions import COOKIE_NAME
from idp.oidc import params
from idp.oidc.clients import redirect_uri_matches, validate_redirect_uri
from idp.oidc.keys import InvalidToken
from idp.oidc.logout import LogoutError, validate_end_session
from idp.web.kit import safe_return
from pki import csr as pki_csr
from pki import der, sm2
from pki.errors import BadRequest, OCSPRequestError
from pki.ocsp import ParsedRequest, parse_request
from policies.profiles import load_profile
from tests.fuzz.wsgi import Answer, Caller

Target = Callable[[bytes], None]


class Crash(AssertionError):
    """A parser answered with something other than a value or its typed error."""


def _text(data: bytes) -> str:
    # Bytes from the fuzzer become text the way a web server hands it over:
    # undecodable bytes are replaced, never dropped.
    return data.decode("utf-8", "surrogateescape").encode("utf-8", "replace").decode("utf-8")


def _split(data: bytes, parts: int) -> list[bytes]:
    """Cut the input at NUL bytes into ``parts`` fields (missing ones are empty)."""
    pieces = data.split(b"\x00", parts - 1)
    return pieces + [b""] * (parts - len(pieces))


# -- PKI: CSRs, OCSP, DER ------------------------------------------------------------------

@functools.cache
def _profiles() -> tuple[Any, ...]:
    return (load_profile("user-auth"), load_profile("tls-server"))


def csr(data: bytes) -> None:
    """pki.csr: parse a PKCS#10 request (PEM or DER) and check it against profiles."""
    try:
        request = pki_csr.parse_csr(data, max_bytes=64 * 1024)
    except BadRequest:
        return
    raw = request.public_bytes(serialization.Encoding.DER)
    for profile in _profiles():
        try:
            if sm2.request_is_sm2(raw):
                pki_csr.check_sm2_csr(request, profile)
            else:
                pki_csr.check_csr(request, profile)
        except BadRequest:
            pass


def ocsp_request(data: bytes) -> None:
    """pki.ocsp.parse_request: an RFC 6960 request, fast path and general parser."""
    try:
        parsed = parse_request(data)
    except OCSPRequestError:
        return
    if not isinstance(parsed, ParsedRequest) or not parsed.cert_ids:
        raise Crash(f"parse_request returned {parsed!r}")


def der_reader(data: bytes) -> None:
    """Our DER readers (pki.sm2: SPKI and request sniffing) and the DER writer's
    round trip through an independent decoder (asn1crypto)."""
    try:
        sm2.parse_spki(data)
    except sm2.SM2Error:
        pass
    if not isinstance(sm2.request_is_sm2(data), bool):
        raise Crash("request_is_sm2 returned a non-bool")
    value = int.from_bytes(data[:64], "big", signed=True) if data else 0
    decoded = a_core.Integer.load(der.integer(value)).native
    if decoded != value:
        raise Crash(f"INTEGER {value} decoded as {decoded}")
    arcs = [2, 5] + [b for b in data[:16]]
    dotted = ".".join(str(a) for a in arcs)
    if a_core.ObjectIdentifier.load(der.oid(dotted)).dotted != dotted:
        raise Crash(f"OID {dotted} does not round-trip")
    payload = data[:300]
    if a_core.OctetString.load(der.octet_string(payload)).native != payload:
        raise Crash("OCTET STRING does not round-trip")


# -- directory import -------------------------------------------------------------------

def _check_parsed(parsed: Parsed) -> None:
    if not isinstance(parsed, Parsed):
        raise Crash(f"returned {parsed!r}")
    for line, reason in parsed.errors:
        if not isinstance(line, int) or not isinstance(reason, str) or not reason:
            raise Crash(f"error without a line and reason: {(line, reason)!r}")


def csv_import(data: bytes) -> None:
    """directory.csvimport.parse_csv: never raises; rows or (line, reason)."""
    _check_parsed(parse_csv(data))


def ldif_import(data: bytes) -> None:
    """directory.ldif.parse_ldif: never raises; rows or (line, reason)."""
    _check_parsed(parse_ldif(data))


# -- OIDC: redirect URIs, return, parameters ------------------------------------------------

REGISTERED = ("https://app.example.gov.cn/callback", "http://127.0.0.1:5000/callback")


def redirect_uri(data: bytes) -> None:
    """idp.oidc.clients: registration check and the exact-match rule."""
    uri = _text(data)
    try:
        validate_redirect_uri(uri)
    except InvalidClientMetadata:
        pass
    matched = redirect_uri_matches(REGISTERED, uri)
    if matched is not (uri in REGISTERED):
        raise Crash(f"redirect_uri_matches({uri!r}) is {matched}")


def return_value(data: bytes) -> None:
    """idp.web.kit.safe_return: only our own paths come back, never another host."""
    value = safe_return(_text(data))
    if value == "/":
        return
    if not value.startswith(("/authorize?", "/console/")) or value.startswith("//") \
            or not value.isascii() or "\\" in value or any(c in value for c in "\r\n\t "):
        raise Crash(f"safe_return let {value!r} through")


def oidc_params(data: bytes) -> None:
    """idp.oidc.params: grammar, duplicates, max_age and the claims request."""
    fields = _split(data, 4)
    pairs = [("claims", _text(fields[0])), ("max_age", _text(fields[1])),
             ("state", _text(fields[2])), ("nonce", _text(fields[3]))]
    params.malformed(pairs)
    params.duplicated(pairs + [("state", "x")])
    try:
        params.check_authorization_request(pairs)
    except OAuth2Error:
        pass
    try:
        params.parse_claims(_text(data))
    except OAuth2Error:
        pass
    try:
        params.parse_max_age(_text(data))
    except OAuth2Error:
        pass


# -- login: the forwarded client certificate -------------------------------------------------

_TRUSTED = TrustedProxies.parse(["10.0.0.0/8", "::1"])


def forwarded(data: bytes) -> None:
    """idp.login.forwarded: X-Forwarded-For and the nginx certificate header, then
    the certificate parser the header feeds."""
    remote, xff, cert_header = (_text(p) for p in _split(data, 3))
    address = client_address(remote, xff, _TRUSTED)
    if not isinstance(address, str):
        raise Crash(f"client_address returned {address!r}")
    client_address("10.0.0.7", xff, _TRUSTED)
    for peer in ("10.0.0.7", remote):
        presented = forwarded_certificate(peer, {"X-SSL-Client-Cert": cert_header}, _TRUSTED)
        if presented.data is not None:
            try:
                load_certificate(presented.data)
            except CertificateRefused:
                pass
    try:
        load_certificate(data)
    except CertificateRefused:
        pass


# -- the IdP over HTTP: JWTs, logout hints, login forms --------------------------------------

class FuzzClock:
    """The IdP's throttle clock in a fuzz run: the time it was made, one window
    later every ``per_window`` requests (whatever the wall clock does, so a run's
    throttle answers depend on its inputs only).

    A fuzzer sends tens of thousands of failures a minute from one address and
    one client, so on the real clock the throttle (60 failed /token requests a
    minute per client, 10 logins per uid) answers 429 to nearly every input before
    the code under test is reached: a 50,000-input run of client_assertion (71 s)
    had at most 60 assertions a minute checked, under 200 in all. Moving to a fresh
    window every ``per_window`` requests keeps both paths in every window: the
    parser for the first ones, the throttle's refusal once the limit is reached."""

    def __init__(self, per_window: int = 64, window_seconds: int = 60) -> None:
        self.per_window, self.window_seconds = per_window, window_seconds
        self.requests = 0
        self.started = time.time()

    def tick(self) -> None:
        self.requests += 1

    def next_window(self) -> None:
        """Skip to the start of the next window (a test that counts from zero)."""
        self.requests = (self.requests // self.per_window + 1) * self.per_window

    def now(self) -> float:
        window = max(self.requests - 1, 0) // self.per_window  # request n is in window (n-1)//64
        return self.started + window * self.window_seconds


# What each HTTP target's requests were answered, by "METHOD path status": how
# much of a run reached the code under test rather than a throttle or a redirect.
STATUSES: collections.Counter[str] = collections.Counter()


@dataclass
class _Idp:
    services: Any
    caller: Caller
    clock: FuzzClock
    client_id: str
    confidential_id: str
    secret: str
    signed_expired: bytes  # an assertion signed with the client's key, expired
    csrf: str = ""


@functools.cache
def _idp() -> _Idp:
    from idp.login.throttle import Throttle
    from idp.oidc.clients import build_client
    from idp.runtime.app import create_app
    from tests.fixtures.idp import ISSUER, PASSWORD, REDIRECT, ZHANG, FakeDirectory, make_services

    home = Path(tempfile.mkdtemp(prefix="govtrust-fuzz-idp-"))
    services = make_services(home / "home", ISSUER,
                             FakeDirectory({"zhangwei": (PASSWORD, ZHANG)}))
    clock = FuzzClock()
    services.provider.throttle = Throttle(services.sessions, clock=clock.now)
    import jwt as pyjwt

    jwk_key = ec.generate_private_key(ec.SECP256R1())
    public_jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(jwk_key.public_key()))
    client, _ = services.provider.clients.add(build_client(
        name="fuzz-jwt", redirect_uris=[REDIRECT], level=2,
        auth_method="private_key_jwt",
        jwks=json.dumps({"keys": [public_jwk]})))
    confidential, secret = services.provider.clients.add(build_client(
        name="fuzz-secret", redirect_uris=[REDIRECT], level=2, first_party=True))
    now = int(time.time())
    expired = pyjwt.encode({"iss": client.client_id, "sub": client.client_id,
                            "aud": f"{ISSUER}/token", "jti": "fuzz-seed",
                            "iat": now - 7200, "exp": now - 3600}, jwk_key,
                           algorithm="ES256")
    app = create_app(services)
    app.testing = True  # an exception escapes to the target instead of becoming a 500
    return _Idp(services, Caller(app), clock, client.client_id, confidential.client_id,
                str(secret), expired.encode())


def _answer(caller: Caller, what: str, answer: Answer) -> Answer:
    """Counts the answer and raises ``Crash`` on a 5xx."""
    STATUSES[f"{what} {answer.status}"] += 1
    if answer.status >= 500:
        raise Crash(f"{what} answered {answer.status}")
    return answer


def id_token_hint(data: bytes) -> None:
    """idp.oidc.keys.verify and logout's hint checks: ``InvalidToken``/``LogoutError``."""
    idp = _idp()
    token = _text(data)
    try:
        idp.services.provider.keys.verify(token, typ="jwt")
    except InvalidToken:
        pass
    try:
        validate_end_session({"id_token_hint": token}, idp.services.provider.keys,
                             idp.services.provider.clients, idp.services.provider.issuer)
    except LogoutError:
        pass
    # A well-formed header and a fuzzed body and signature, signed by no one.
    header = base64.urlsafe_b64encode(json.dumps(
        {"alg": "ES256", "kid": "x", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    try:
        idp.services.provider.keys.verify(f"{header}.{token}.{token}", typ="jwt")
    except InvalidToken:
        pass


def client_assertion(data: bytes) -> None:
    """POST /token with a fuzzed private_key_jwt assertion: 4xx, never 5xx."""
    idp = _idp()
    idp.clock.tick()
    resp = _answer(idp.caller, "POST /token", idp.caller.post("/token", {
        "grant_type": "client_credentials", "client_id": idp.client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": _text(data)}))
    if resp.status == 200:
        raise Crash("a fuzzed client assertion was accepted")


_CSRF_FIELD = re.compile(rb'name="csrf" value="([0-9a-f]{64})"')
# In login_form's input, this CSRF field stands for the page's real token, so that
# the POSTs reach the password and code checks; any other value is sent as is.
REAL_CSRF = "token"
_ADDRESSES = 4096  # login_form's client addresses (198.18.0.0/15, RFC 2544), in turn


def login_form(data: bytes) -> None:
    """The login pages' forms and queries: GET /login, POST /login (a session when
    the password is right), POST /login/otp (the code check, with that session),
    GET /authorize with the whole input as its query. Never a 5xx, never a redirect
    off-site."""
    idp = _idp()
    uid, password, csrf, ret, lang = (_text(p) for p in _split(data, 5))
    browser = idp.caller
    idp.clock.tick()
    n = idp.clock.requests % _ADDRESSES
    browser.remote_addr = f"198.18.{n >> 8}.{n & 255}"
    page = _answer(browser, "GET /login", browser.get(
        "/login", {"return": ret, "login_hint": uid, "lang": lang}))
    if (found := _CSRF_FIELD.search(page.body)) is not None:
        idp.csrf = found.group(1).decode()
    sent = idp.csrf if csrf == REAL_CSRF else csrf
    resp = _answer(browser, "POST /login", browser.post(
        "/login", {"uid": uid, "password": password, "csrf": sent, "return": ret}))
    if resp.status == 302 and not resp.header("Location", "/").startswith(
            ("/", "http://127.0.0.1:9443/")):
        raise Crash(f"login redirected off-site: {resp.header('Location')!r}")
    _answer(browser, "POST /login/otp", browser.post(
        "/login/otp", {"code": password, "csrf": sent, "return": ret}))
    _answer(browser, "GET /authorize", browser.get(
        "/authorize", quote(_text(data), safe="=&")))
    browser.cookies.pop(COOKIE_NAME, None)


# -- PKI over HTTP: OCSP POST and GET ---------------------------------------------------------

@dataclass
class _Pki:
    caller: Caller
    issued_request: bytes  # an OCSP request for a certificate this CA issued


@functools.cache
def _pki() -> _Pki:
    from pki.http import create_app
    from pki.model import CARole
    from tests.fixtures.pki import build_env, make_csr, make_person

    folder = Path(tempfile.mkdtemp(prefix="govtrust-fuzz-pki-"))
    env = build_env(folder, f"sqlite:///{folder / 'govtrust.db'}")
    issued = env.ca.issue_from_csr(make_person(), "user-auth", make_csr()[0])
    cert = issued.certificate
    issuer = env.ca.certificate(env.ca.settings.role(CARole.ISSUING))
    request = (x509_ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
               .add_extension(x509.OCSPNonce(b"fedcba9876543210"), False)
               .build().public_bytes(serialization.Encoding.DER))
    app = create_app(env.ca)
    app.testing = True
    return _Pki(Caller(app), request)


def ocsp_http(data: bytes) -> None:
    """pki.http: OCSP over POST and over GET (RFC 6960 Appendix A): an OCSP
    response (an error status for garbage), never a 5xx."""
    caller = _pki().caller
    _answer(caller, "POST /ocsp", caller.post("/ocsp", data, "application/ocsp-request"))
    encoded = quote(base64.b64encode(data).decode(), safe="")
    _answer(caller, "GET /ocsp/<base64>", caller.get(f"/ocsp/{encoded}"))
    _answer(caller, "GET /ocsp/<text>", caller.get("/ocsp/" + quote(_text(data), safe="/")))


TARGETS: dict[str, Target] = {
    "csr": csr,
    "ocsp_request": ocsp_request,
    "ocsp_http": ocsp_http,
    "der": der_reader,
    "csv_import": csv_import,
    "ldif_import": ldif_import,
    "redirect_uri": redirect_uri,
    "return": return_value,
    "oidc_params": oidc_params,
    "forwarded": forwarded,
    "id_token_hint": id_token_hint,
    "client_assertion": client_assertion,
    "login_form": login_form,
}


# -- seeds: valid inputs the mutators start from -----------------------------------------------

@functools.cache
def _sample_csr() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name.from_rfc4514_string("CN=fuzz")).add_extension(
        x509.SubjectAlternativeName([x509.DNSName("www.example.gov.cn")]), False).sign(
        key, hashes.SHA256())
    return (request.public_bytes(serialization.Encoding.DER),
            request.public_bytes(serialization.Encoding.PEM))


@functools.cache
def _sample_certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string("CN=fuzz")
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1234567)
            .not_valid_before(now).not_valid_after(now.replace(year=now.year + 1))
            .sign(key, hashes.SHA256()))


def _sample_ocsp() -> bytes:
    cert = _sample_certificate()
    return (x509_ocsp.OCSPRequestBuilder().add_certificate(cert, cert, hashes.SHA1())
            .add_extension(x509.OCSPNonce(b"0123456789abcdef"), False)
            .build().public_bytes(serialization.Encoding.DER))


def seeds(name: str) -> list[bytes]:
    """Valid (or nearly valid) inputs for target ``name``, for mutation."""
    csr_der, csr_pem = _sample_csr()
    cert_pem = _sample_certificate().public_bytes(serialization.Encoding.PEM)
    header = ("uid,name,department,title,email,mobile,employee_number,clearance,groups\n")
    table: dict[str, list[bytes]] = {
        "csr": [csr_der, csr_pem],
        "ocsp_request": [_sample_ocsp()],
        "ocsp_http": [_sample_ocsp(), _pki().issued_request],
        "der": [csr_der, _sample_certificate().public_bytes(serialization.Encoding.DER)],
        "csv_import": [(header + "zhangwei,张伟,市财政局/预算处,科长,zw@beijing.gov.cn,"
                        "13800138000,E001,internal,财务审核组\n").encode()],
        "ldif_import": [b"dn: uid=zhangwei,ou=people,dc=beijing,dc=gov,dc=cn\n"
                        b"uid: zhangwei\ncn:: 5byg5Lyf\ngovDepartmentPath: x/y\n"
                        b"mail: zw@beijing.gov.cn\n\n"],
        "redirect_uri": [u.encode() for u in REGISTERED],
        "return": [b"/authorize?client_id=gt-1&state=s", b"/console/"],
        "oidc_params": [b'{"id_token":{"acr":{"essential":true}}}\x00300\x00st\x00n'],
        "forwarded": [b"10.0.0.7\x00203.0.113.9, 10.0.0.8\x00"
                      + quote(cert_pem.decode()).encode()],
        "id_token_hint": [b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"],
        "client_assertion": [b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
                             _idp().signed_expired],
        "login_form": [b"zhangwei\x00Corr3ct-horse-battery\x00token\x00/console/\x00en",
                       b"zhangwei\x00wrong\x00token\x00/authorize?client_id=x&scope=openid"
                       b"\x00zh",
                       b"nobody\x00Corr3ct-horse-battery\x00csrf\x00/\x00"],
    }
    return table[name]
