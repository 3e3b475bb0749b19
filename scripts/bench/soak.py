#!/usr/bin/env python3
"""Soak a deployment shape: measure its capacity for a mix of real traffic, then
drive that mix at ~80% of it for minutes, and watch what drifts or leaks.

    scripts/bench/soak.py [--shape serve|production] [--nodes 1] [--minutes 10]
                          [--capacity-seconds 30] [--load 0.8] [--clients 8]
                          [--home /dev/shm/govtrust-soak] [--keep]

The shape (scripts/bench/shapes.py) is brought up here, in a fresh home made by
``govtrust init --demo``, on free loopback ports, and down at the end:

- ``serve`` (default): ``govtrust serve`` as shipped (TLS in gunicorn, the IdP's
  and PKI's gunicorn, managed slapd, SQLite);
- ``production``: the same mix through nginx (``govtrust deploy nginx``: TLS, the
  client certificate forwarded to the nodes in ``[certauth] header``) to
  ``--nodes`` ``govtrust node`` processes (default 1: two cores, shared with the
  load clients) on one PostgreSQL 15, with an external slapd; the PKI's URLs in
  the certificates are nginx's (CA certificates, CRLs and pre-signed OCSP GET
  answers from its static files, the rest from a node).

At set-up, ``govtrust cert issue`` gives a ``user-auth`` certificate to the
administrator ``secadmin`` and to four civil servants (keys made here, CSRs); an
OIDC client is registered.

The mix (one *operation* each; weights in ``MIX``): password logins (authorize ->
form -> POST /login -> authorize -> code -> token, the ID token's nonce checked),
certificate logins (the same through /login/certificate, the certificate presented
in the TLS handshake by ``requests``), client-credentials and refresh grants,
introspection, userinfo, a signed-in person's console pages, certificate issuance
(PKCS#12 from the admin console, by an administrator's session at level 3:
password + certificate; the CLI would measure interpreter start-up instead) and
revocation (the admin console, of a certificate issued in this run), OCSP (POST
and GET, for those certificates) and CRL fetches.

Capacity: ``--clients`` client processes run the mix closed-loop (each starts the
next operation when the last ends) for ``--capacity-seconds``; capacity = their
operations per second. The soak then paces the same mix open-loop at ``--load`` x
capacity: operation n of a client is due at start + n / rate, whatever the latency
of the one before (a late client starts at once and the delay is counted as
``late``), so a slower server meets the same arrival rate, not a gentler one.

Printed per minute and in total (``name: value unit``): requests, ``soak_5xx``,
other errors by kind, p50/p99 per endpoint with the drift (last minute / first),
resident memory (VmRSS) and open descriptors of each server process of the shape
(growth from the first to the last minute): for serve the supervisor, the IdP's
and PKI's gunicorn masters and workers, slapd; for production each node's
supervisor, gunicorn master and workers, nginx's master and workers, slapd, the
postmaster and its backends (summed, as ``postgres_backends[all]``: the pools
open and close them), the outbox lag (from the IdP's /metrics), and
``soak_audit_missing``: logins, issuances and revocations that succeeded minus
the audit records found for them in the shape's database (SQLite or PostgreSQL)
afterwards. Loopback only; it stops by itself after the minutes asked for.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import importlib.util
import json
import multiprocessing as mp
import os
import random
import re
import secrets
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
# scripts/bench/idp.py, by path: as ``idp`` it would shadow the product's package.
_spec = importlib.util.spec_from_file_location("bench_idp", HERE / "idp.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_idp"] = bench
_spec.loader.exec_module(bench)
shapes = bench.shapes  # scripts/bench/shapes.py, on the path idp.py set

REDIRECT = bench.REDIRECT
CERT_PEOPLE = 4  # civil servants given a certificate at set-up
MIX: dict[str, int] = {  # relative weights of the operations
    "password_login": 4, "cert_login": 2, "client_credentials": 8, "refresh": 6,
    "introspect": 8, "userinfo": 8, "console": 6, "issue": 1, "revoke": 1,
    "ocsp_post": 6, "ocsp_get": 4, "crl": 2,
}
SAMPLE_EVERY = 5.0  # seconds between samples of /proc and /metrics


def pct(values: list[float], q: float) -> float:
    return bench.pct(values, q)  # type: ignore[no-any-return]


# -- set-up --------------------------------------------------------------------------------

def issue_certificate(server: Any, uid: str, folder: Path) -> tuple[str, str]:
    """A ``user-auth`` certificate for ``uid`` (key made here, CSR to ``govtrust cert
    issue``): the (certificate, key) PEM paths ``requests`` presents."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uid)]))
           .sign(key, hashes.SHA256()))
    (folder / f"{uid}.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    key_path = folder / f"{uid}.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    server.govtrust("cert", "issue", "--uid", uid, "--profile", "user-auth",
                    "--csr", str(folder / f"{uid}.csr"), "--out", str(folder / f"{uid}.pem"))
    return str(folder / f"{uid}.pem"), str(key_path)


# -- one client ----------------------------------------------------------------------------

class Failure(Exception):
    """An answer that is not what the step expects; ``kind`` names it."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Client:
    """One simulated user agent of the mix: its own sessions and tokens."""

    def __init__(self, conf: dict[str, Any], index: int) -> None:
        self.c = conf
        self.index = index
        self.rng = random.Random(index)
        self.records: list[tuple[float, str, float, int]] = []  # (time, endpoint, ms, status)
        self.ops: list[tuple[float, str, bool, str]] = []  # (time, op, ok, error kind)
        self.late = 0
        self.logins = 0
        self.issued: list[str] = []  # serials issued by this client, not yet revoked
        self.issued_all: list[str] = []
        self.revoked: list[str] = []
        self.refresh_tokens: list[str] = []
        self.access_tokens: list[str] = []
        self.user_tokens: list[str] = []
        self.person = self._session()  # a signed-in civil servant (console pages)
        self.admin = self._session(cert=conf["admin_cert"])

    def _session(self, cert: tuple[str, str] | None = None) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # else REQUESTS_CA_BUNDLE overrides the session's verify
        s.verify = self.c["ca"]
        if cert:
            s.cert = cert
        return s

    # every HTTP request goes through here: timed, classified
    def call(self, s: requests.Session, method: str, name: str, url: str,
             **kw: Any) -> requests.Response:
        t0 = time.perf_counter()
        try:
            r = s.request(method, url, allow_redirects=False, timeout=30, **kw)
        except requests.Timeout as e:
            self.records.append((time.time(), name, (time.perf_counter() - t0) * 1000, -1))
            raise Failure("timeout") from e
        except requests.ConnectionError as e:
            self.records.append((time.time(), name, (time.perf_counter() - t0) * 1000, -2))
            raise Failure("connection") from e
        self.records.append((time.time(), name, (time.perf_counter() - t0) * 1000,
                             r.status_code))
        if r.status_code >= 500:
            raise Failure(f"http_{r.status_code}:{name}")
        return r

    def expect(self, r: requests.Response, status: int, name: str) -> requests.Response:
        if r.status_code != status:
            raise Failure(f"http_{r.status_code}:{name}")
        return r

    # -- the flows
    def _authorize_params(self) -> tuple[dict[str, str], str, str]:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                             ).rstrip(b"=").decode()
        nonce = secrets.token_urlsafe(12)
        q = {"response_type": "code", "client_id": self.c["client_id"],
             "redirect_uri": REDIRECT, "scope": "openid profile department", "state": "st",
             "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"}
        return q, verifier, nonce

    def _finish(self, s: requests.Session, location: str, verifier: str, nonce: str) -> None:
        """From the login's redirect back to /authorize: the code, the tokens."""
        iss = self.c["issuer"]
        r = self.expect(self.call(s, "GET", "GET /authorize (back)", iss + location), 302,
                        "authorize_back")
        code = parse_qs(urlsplit(r.headers["Location"]).query).get("code")
        if not code:
            raise Failure("no_code")
        r = self.expect(self.call(s, "POST", "POST /token (code)", iss + "/token", data={
            "grant_type": "authorization_code", "code": code[0], "redirect_uri": REDIRECT,
            "code_verifier": verifier}, auth=(self.c["client_id"], self.c["secret"])),
            200, "token_code")
        body = r.json()
        payload = body["id_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if claims.get("nonce") != nonce:
            raise Failure("nonce_mismatch")
        self.logins += 1
        self.access_tokens = (self.access_tokens + [body["access_token"]])[-20:]
        self.user_tokens = (self.user_tokens + [body["access_token"]])[-10:]
        if "refresh_token" in body:
            self.refresh_tokens = (self.refresh_tokens + [body["refresh_token"]])[-20:]

    def _login_form(self, s: requests.Session, path: str) -> tuple[str, str, requests.Response]:
        """Authorize (new browser), then the login page ``path`` it leads to."""
        s.cookies.clear()
        q, verifier, nonce = self._authorize_params()
        iss = self.c["issuer"]
        r = self.expect(self.call(s, "GET", "GET /authorize", f"{iss}/authorize?{urlencode(q)}"),
                        302, "authorize")
        back = parse_qs(urlsplit(r.headers["Location"]).query).get("return", [""])[0]
        r = self.expect(self.call(s, "GET", f"GET {path}", f"{iss}{path}?"
                                  + urlencode({"return": back})), 200, "login_form")
        return verifier, nonce, r

    @staticmethod
    def _field(r: requests.Response, name: str) -> str:
        m = re.search(rf'name="{name}" value="([^"]*)"', r.text)
        if not m:
            raise Failure(f"no_{name}_field")
        return html.unescape(m.group(1))

    def password_login(self, s: requests.Session | None = None,
                       who: tuple[str, str] | None = None) -> None:
        s = s or self._session()
        uid, password = who or self.rng.choice(self.c["people"])
        verifier, nonce, r = self._login_form(s, "/login")
        r = self.expect(self.call(s, "POST", "POST /login", self.c["issuer"] + "/login", data={
            "csrf": self._field(r, "csrf"), "uid": uid, "password": password,
            "return": self._field(r, "return")}), 302, "login_post")
        self._finish(s, r.headers["Location"], verifier, nonce)

    def cert_login(self) -> None:
        uid, cert = self.rng.choice(self.c["cert_people"])
        s = self.person  # the console pages use this session afterwards
        s.cert = tuple(cert)  # type: ignore[assignment]
        verifier, nonce, r = self._login_form(s, "/login/certificate")
        r = self.expect(self.call(s, "POST", "POST /login/certificate",
                                  self.c["issuer"] + "/login/certificate", data={
                                      "csrf": self._field(r, "csrf"),
                                      "return": self._field(r, "return")}),
                        302, "cert_login_post")
        self._finish(s, r.headers["Location"], verifier, nonce)

    def admin_login(self) -> None:
        """Password, then certificate on the same browser: level 3."""
        s = self.admin
        self.password_login(s, self.c["admin"])
        r = self.expect(self.call(s, "GET", "GET /login/certificate",
                                  self.c["issuer"] + "/login/certificate?return=/console/admin/"),
                        200, "admin_cert_form")
        r = self.expect(self.call(s, "POST", "POST /login/certificate",
                                  self.c["issuer"] + "/login/certificate",
                                  data={"csrf": self._field(r, "csrf"),
                                        "return": "/console/admin/"}), 302, "admin_cert_post")
        self.logins += 1
        self.expect(self.call(s, "GET", "GET /console/admin/",
                              self.c["issuer"] + "/console/admin/"), 200, "admin_page")

    def client_credentials(self) -> None:
        r = self.expect(self.call(self.person, "POST", "POST /token (client_credentials)",
                                  self.c["issuer"] + "/token",
                                  data={"grant_type": "client_credentials"},
                                  auth=(self.c["client_id"], self.c["secret"])),
                        200, "client_credentials")
        self.access_tokens = (self.access_tokens + [r.json()["access_token"]])[-20:]

    def refresh(self) -> None:
        if not self.refresh_tokens:
            return self.password_login()
        token = self.refresh_tokens.pop(self.rng.randrange(len(self.refresh_tokens)))
        r = self.expect(self.call(self.person, "POST", "POST /token (refresh)",
                                  self.c["issuer"] + "/token",
                                  data={"grant_type": "refresh_token", "refresh_token": token},
                                  auth=(self.c["client_id"], self.c["secret"])),
                        200, "refresh")
        body = r.json()
        self.refresh_tokens.append(body["refresh_token"])
        self.access_tokens = (self.access_tokens + [body["access_token"]])[-20:]

    def introspect(self) -> None:
        if not self.access_tokens:
            self.client_credentials()
        r = self.expect(self.call(self.person, "POST", "POST /introspect",
                                  self.c["issuer"] + "/introspect",
                                  data={"token": self.rng.choice(self.access_tokens)},
                                  auth=(self.c["client_id"], self.c["secret"])),
                        200, "introspect")
        if "active" not in r.json():
            raise Failure("introspect_body")

    def userinfo(self) -> None:
        # an access token of a login (client-credentials tokens have no subject)
        if not self.user_tokens:
            return self.password_login()
        token = self.rng.choice(self.user_tokens)
        self.expect(self.call(self.person, "GET", "GET /userinfo",
                              self.c["issuer"] + "/userinfo",
                              headers={"Authorization": f"Bearer {token}"}), 200, "userinfo")

    def console(self) -> None:
        if "gt_session" not in str(self.person.cookies.keys()) and not self.person.cookies:
            self.cert_login()
        page = self.rng.choice(("/console/", "/console/certificates", "/console/sessions",
                                "/console/sign-ins"))
        r = self.call(self.person, "GET", f"GET {page}", self.c["issuer"] + page)
        if r.status_code == 302:  # the session ended (expired, or ended elsewhere)
            self.cert_login()
            r = self.call(self.person, "GET", f"GET {page}", self.c["issuer"] + page)
        self.expect(r, 200, "console")

    def _admin_csrf(self, path: str) -> str:
        r = self.call(self.admin, "GET", "GET " + re.sub(r"/[0-9a-f]{20,}", "/<serial>", path),
                      self.c["issuer"] + path)
        if r.status_code in (302, 403):  # the admin session lapsed: sign in again
            self.admin.cookies.clear()
            self.admin_login()
            r = self.call(self.admin, "GET", "GET " + re.sub(r"/[0-9a-f]{20,}", "/<serial>",
                                                               path), self.c["issuer"] + path)
        return self._field(self.expect(r, 200, "admin_form"), "csrf")

    def issue(self) -> None:
        path = "/console/admin/certificates/issue"
        csrf = self._admin_csrf(path)
        uid, _ = self.rng.choice(self.c["people"])
        r = self.expect(self.call(self.admin, "POST", "POST " + path, self.c["issuer"] + path,
                                  data={"csrf": csrf, "mode": "pkcs12", "uid": uid,
                                        "profile": "user-auth",
                                        "passphrase": "soak-" + secrets.token_hex(8)}),
                        200, "issue")
        m = re.search(r'filename="([0-9a-f]+)\.p12"', r.headers.get("Content-Disposition", ""))
        if not m:
            raise Failure("issue_no_serial")
        self.issued.append(m.group(1))
        self.issued_all.append(m.group(1))

    def revoke(self) -> None:
        if not self.issued:
            return self.issue()
        serial = self.issued.pop(0)
        path = f"/console/admin/certificates/{serial}"
        csrf = self._admin_csrf(path)
        self.expect(self.call(self.admin, "POST", "POST /console/admin/certificates/<serial>/"
                              "revoke", self.c["issuer"] + path + "/revoke",
                              data={"csrf": csrf, "reason": "superseded", "confirm": "yes"}),
                    303, "revoke")
        self.revoked.append(serial)

    def _ocsp_request(self) -> bytes:
        serial = int(self.rng.choice(self.c["serials"] + self.issued_all[-20:]), 16)
        name_hash, key_hash = hashes_of(self.c["issuing_ca"])
        b = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            name_hash, key_hash, serial, hashes.SHA1())
        return b.build().public_bytes(serialization.Encoding.DER)

    def ocsp_post(self) -> None:
        r = self.expect(self.call(self.person, "POST", "POST /ocsp", self.c["ocsp_url"],
                                  data=self._ocsp_request(),
                                  headers={"Content-Type": "application/ocsp-request"}),
                        200, "ocsp_post")
        if ocsp.load_der_ocsp_response(r.content).response_status != \
                ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise Failure("ocsp_unsuccessful")

    def ocsp_get(self) -> None:
        encoded = base64.b64encode(self._ocsp_request()).decode()
        r = self.expect(self.call(self.person, "GET", "GET /ocsp/<request>",
                                  self.c["ocsp_url"] + "/" + encoded), 200, "ocsp_get")
        if ocsp.load_der_ocsp_response(r.content).response_status != \
                ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise Failure("ocsp_unsuccessful")

    def crl(self) -> None:
        r = self.expect(self.call(self.person, "GET", "GET /crl/<name>.crl", self.c["crl_url"]),
                        200, "crl")
        x509.load_der_x509_crl(r.content)

    def run_op(self, op: str) -> None:
        t = time.time()
        try:
            getattr(self, op)()
            self.ops.append((t, op, True, ""))
        except Failure as f:
            self.ops.append((t, op, False, f.kind))
        except Exception as e:  # a broken body, a missing field: counted, not fatal
            self.ops.append((t, op, False, type(e).__name__))


_ISSUER_HASHES: dict[bytes, tuple[bytes, bytes]] = {}


def hashes_of(issuer_der: bytes) -> tuple[bytes, bytes]:
    """SHA-1 of the issuer's name and key, as an OCSP CertID names it."""
    if issuer_der not in _ISSUER_HASHES:
        cert = x509.load_der_x509_certificate(issuer_der)
        name = hashlib.sha1(cert.subject.public_bytes()).digest()
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        # the BIT STRING's contents: parse the SPKI DER just enough (ec keys: fixed shape)
        key_bits = _spki_bits(spki)
        _ISSUER_HASHES[issuer_der] = (name, hashlib.sha1(key_bits).digest())
    return _ISSUER_HASHES[issuer_der]


def _spki_bits(spki: bytes) -> bytes:
    def read(b: bytes, i: int) -> tuple[int, int, int]:  # tag, content start, content end
        tag, n = b[i], b[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(b[i:i + k], "big")
            i += k
        return tag, i, i + n

    _, start, _ = read(spki, 0)  # SEQUENCE
    _, _, alg_end = read(spki, start)  # AlgorithmIdentifier
    tag, bits, end = read(spki, alg_end)
    assert tag == 0x03
    return spki[bits + 1:end]  # skip the unused-bits octet


# -- the driver processes ------------------------------------------------------------------

def _client_main(conf: dict[str, Any], index: int, mode: str, start: float, until: float,
                 rate: float, out: Any) -> None:
    client = Client(conf, index)
    try:
        client.admin_login()
        client.cert_login()
        client.password_login()
    except Exception as e:  # set-up failed: report it as an error, drive nothing
        client.ops.append((time.time(), "setup", False, f"setup:{e}"))
        out.put(_result(client))
        return
    ops = [op for op, w in MIX.items() for _ in range(w)]
    rng = random.Random(1000 + index)
    while time.time() < start:
        time.sleep(0.01)
    n = 0
    while True:
        now = time.time()
        if now >= until:
            break
        if mode == "open":
            due = start + n / rate
            if due >= until:
                break
            if due > now:
                time.sleep(due - now)
            elif now - due > 0.1:
                client.late += 1
        n += 1
        client.run_op(rng.choice(ops))
    out.put(_result(client))


def _result(c: Client) -> dict[str, Any]:
    return {"records": c.records, "ops": c.ops, "late": c.late, "logins": c.logins,
            "issued": c.issued_all, "revoked": c.revoked}


def drive(conf: dict[str, Any], clients: int, mode: str, seconds: float,
          rate: float = 0.0, on_tick: Callable[[], None] | None = None
          ) -> tuple[list[dict[str, Any]], float]:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    start = time.time() + 3.0 + 0.5 * clients  # after every client's sign-ins
    until = start + seconds
    procs = [ctx.Process(target=_client_main,
                         args=(conf, i, mode, start, until, rate / clients, q))
             for i in range(clients)]
    for p in procs:
        p.start()
    results: list[dict[str, Any]] = []
    while len(results) < clients:
        if on_tick is not None:
            on_tick()
        try:
            results.append(q.get(timeout=SAMPLE_EVERY))
        except Exception:
            if time.time() > until + 120:
                raise RuntimeError("clients did not finish") from None
    for p in procs:
        p.join()
    return results, start


# -- what the server holds -----------------------------------------------------------------

def proc_usage(pid: int) -> tuple[float, int] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("VmRSS:")) / 1024
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration, ValueError):
        return None


class Sampler:
    """Every ``SAMPLE_EVERY`` s: RSS and descriptors of each server process, outbox lag."""

    def __init__(self, shape: Any, session: requests.Session) -> None:
        self.shape = shape
        self.session = session
        self.samples: list[tuple[float, dict[str, tuple[float, int]], float]] = []
        self.last = 0.0

    def tick(self) -> None:
        if time.time() - self.last < SAMPLE_EVERY:
            return
        self.last = time.time()
        usage: dict[str, tuple[float, int]] = {}
        for role, pid in self.shape.processes().items():
            u = proc_usage(pid)
            if u is None:
                continue
            if role.startswith("postgres_backend"):  # come and go with the pools: summed
                rss, fds = usage.get("postgres_backends[all]", (0.0, 0))
                usage["postgres_backends[all]"] = (rss + u[0], fds + u[1])
            else:
                usage[f"{role}[{pid}]"] = u
        lag = float("nan")
        try:
            body = self.session.get(self.shape.issuer + "/metrics", timeout=10).text
            m = re.search(r"^govtrust_outbox_lag_seconds ([\d.e+-]+)$", body, re.M)
            lag = float(m.group(1)) if m else lag
        except requests.RequestException:
            pass
        self.samples.append((self.last, usage, lag))


# -- the audit log afterwards -------------------------------------------------------------

def audit_since(database_url: str, seq: int) -> list[tuple[str, str, str]]:
    """The audit records after ``seq``, from the shape's database (SQLite or
    PostgreSQL): (action, target, details as JSON text)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as con:
            rows = con.execute(text("SELECT action, target, details FROM audit_log "
                                    "WHERE seq > :seq"), {"seq": seq})
            return [(a, t, d if isinstance(d, str) else json.dumps(d)) for a, t, d in rows]
    finally:
        engine.dispose()


def audit_head(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as con:
            return int(con.execute(text("SELECT coalesce(max(seq), 0) FROM audit_log")
                                   ).scalar_one())
    finally:
        engine.dispose()


# -- the report ----------------------------------------------------------------------------

def report(label: str, records: list[tuple[float, str, float, int]],
           ops: list[tuple[float, str, bool, str]], seconds: float) -> dict[str, list[float]]:
    print(f"{label}_requests: {len(records)} requests ({len(records) / seconds:.1f}/s)")
    print(f"{label}_operations: {len(ops)} operations ({len(ops) / seconds:.1f}/s)")
    name = "soak_5xx" if label == "soak" else f"{label}_soak_5xx"
    print(f"{name}: {sum(1 for r in records if r[3] >= 500)} responses")
    kinds = Counter(op[3] for op in ops if not op[2])
    for kind, n in sorted(kinds.items()):
        print(f"{label}_error[{kind}]: {n} operations")
    by: dict[str, list[float]] = defaultdict(list)
    for _, name, ms, status in records:
        if status > 0:
            by[name].append(ms)
    return by


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=shapes.SHAPES, default="serve",
                        help="serve (govtrust serve, default) or production (nginx -> "
                             "govtrust node on PostgreSQL)")
    parser.add_argument("--nodes", type=int, default=1,
                        help="production: govtrust node processes behind nginx (default 1: "
                             "2 cores, shared with the load clients)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--capacity-seconds", type=float, default=30.0)
    parser.add_argument("--load", type=float, default=0.8, help="fraction of capacity")
    parser.add_argument("--clients", type=int, default=8, help="client processes")
    parser.add_argument("--home", type=Path, default=Path("/dev/shm/govtrust-soak"),
                        help="soak folder (the home, and for production PostgreSQL, in it)")
    parser.add_argument("--keep", action="store_true", help="keep the folder afterwards")
    args = parser.parse_args()
    if args.nodes < 1:
        parser.error("--nodes: at least 1")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in a log

    shapes.exit_on_sigterm()
    with shapes.shape(args.shape, args.home, nodes=args.nodes, keep=args.keep) as shape:
        reg = json.loads(shape.govtrust("--json", "client", "add", "--name", "soak",
                                        "--redirect-uri", REDIRECT, "--level", "2",
                                        "--first-party"))
        folder = shape.work / "soak"
        folder.mkdir()
        people = shape.people()
        admin = shape.admin()
        admin_cert = issue_certificate(shape, admin[0], folder)
        cert_people = [(uid, issue_certificate(shape, uid, folder))
                       for uid, _ in people[:CERT_PEOPLE]]
        leaf = x509.load_pem_x509_certificate(Path(cert_people[0][1][0]).read_bytes())
        aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        ocsp_url = next(d.access_location.value for d in aia
                        if d.access_method == AuthorityInformationAccessOID.OCSP)
        ca_issuers = next(d.access_location.value for d in aia
                          if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS)
        crl_url = leaf.extensions.get_extension_for_class(
            x509.CRLDistributionPoints).value[0].full_name[0].value
        issuing = requests.get(ca_issuers, timeout=10)
        issuing.raise_for_status()
        try:
            issuing_der = x509.load_der_x509_certificate(issuing.content).public_bytes(
                serialization.Encoding.DER)
        except ValueError:
            issuing_der = x509.load_pem_x509_certificate(issuing.content).public_bytes(
                serialization.Encoding.DER)
        conf = {"issuer": shape.issuer, "ca": shape.ca, "client_id": reg["client_id"],
                "secret": reg["client_secret"], "people": people, "admin": admin,
                "admin_cert": admin_cert, "cert_people": cert_people,
                "serials": [format(x509.load_pem_x509_certificate(
                    Path(c[0]).read_bytes()).serial_number, "x") for _, c in cert_people],
                "issuing_ca": issuing_der, "ocsp_url": ocsp_url.rstrip("/"),
                "crl_url": crl_url}
        print(f"soak_shape: {shape.name} ({shape.describe()})")
        print(f"soak: {shape.name} at {shape.issuer} (PKI {ocsp_url}); "
              f"{args.clients} client processes; {os.cpu_count()} cores shared with them")

        # 1. capacity: closed loop
        results, _ = drive(conf, args.clients, "closed", args.capacity_seconds)
        ops = [o for r in results for o in r["ops"]]
        capacity = len(ops) / args.capacity_seconds
        records = [x for r in results for x in r["records"]]
        print(f"capacity_operations: {capacity:.1f} operations/s "
              f"({len(records) / args.capacity_seconds:.1f} requests/s, closed loop, "
              f"{args.capacity_seconds:.0f} s)")
        report("capacity", records, ops, args.capacity_seconds)
        rate = capacity * args.load
        print(f"soak_rate: {rate:.1f} operations/s ({args.load:.0%} of capacity, open loop)")

        # 2. the soak
        seq0 = audit_head(shape.database_url)
        metrics_session = requests.Session()
        metrics_session.trust_env = False
        metrics_session.verify = shape.ca
        sampler = Sampler(shape, metrics_session)
        seconds = args.minutes * 60
        # twice the clients, each a serial user agent: room for the open loop's
        # arrivals to overlap when one answer is slow
        results, start = drive(conf, 2 * args.clients, "open", seconds, rate, sampler.tick)
        time.sleep(3)  # the outbox delivers what the last revocations owed
        sampler.last = 0
        sampler.tick()
        audit = audit_since(shape.database_url, seq0)
        summarise(results, start, seconds, sampler, audit, rate)


def summarise(results: list[dict[str, Any]], start: float, seconds: float, sampler: Sampler,
              audit: list[tuple[str, str, str]], rate: float) -> None:
    records = [x for r in results for x in r["records"]]
    ops = [o for r in results for o in r["ops"]]
    minutes = max(1, int(round(seconds / 60)))
    first: dict[str, list[float]] = {}
    last: dict[str, list[float]] = {}
    for m in range(minutes):
        lo, hi = start + 60 * m, start + 60 * (m + 1)
        label = f"minute_{m + 1}"
        by = report(label, [r for r in records if lo <= r[0] < hi],
                    [o for o in ops if lo <= o[0] < hi], 60.0)
        for name, lat in sorted(by.items()):
            print(f"{label}_p50[{name}]: {pct(lat, 0.5):.1f} ms  p99: {pct(lat, 0.99):.1f} ms")
        window = [s for s in sampler.samples if lo <= s[0] < hi]
        for role in sorted({k for s in window for k in s[1]}):
            vals = [s[1][role] for s in window if role in s[1]]
            print(f"{label}_rss[{role}]: {statistics.mean(v[0] for v in vals):.1f} MB  "
                  f"fds: {max(v[1] for v in vals)}")
        lags = [s[2] for s in window if s[2] == s[2]]
        print(f"{label}_outbox_lag: {max(lags) if lags else float('nan'):.1f} s (max)")
        if m == 0:
            first = by
        last = by
    print("\n# total")
    by = report("soak", records, ops, seconds)
    print(f"soak_rate_target: {rate:.1f} operations/s")
    print(f"soak_late: {sum(r['late'] for r in results)} operations (started >100 ms late)")
    for op in MIX:
        done = [o for o in ops if o[1] == op]
        print(f"soak_op[{op}]: {sum(1 for o in done if o[2])} ok, "
              f"{sum(1 for o in done if not o[2])} failed")
    for name, lat in sorted(by.items()):
        f, la = first.get(name, []), last.get(name, [])
        drift = pct(la, 0.99) / pct(f, 0.99) if f and la else float("nan")
        print(f"soak_p50[{name}]: {pct(lat, 0.5):.1f} ms  p99: {pct(lat, 0.99):.1f} ms  "
              f"p99_drift: {drift:.2f} ratio (last minute / first)")
    if sampler.samples:
        t_first = [s for s in sampler.samples if s[0] < start + 60] or sampler.samples[:1]
        t_last = [s for s in sampler.samples if s[0] >= start + seconds - 60]
        t_last = t_last or sampler.samples[-1:]
        for role in sorted({k for s in sampler.samples for k in s[1]}):
            a = [s[1][role] for s in t_first if role in s[1]]
            b = [s[1][role] for s in t_last if role in s[1]]
            if a and b:
                ra, rb = statistics.mean(v[0] for v in a), statistics.mean(v[0] for v in b)
                print(f"soak_rss[{role}]: {ra:.1f} -> {rb:.1f} MB  growth: {rb - ra:+.1f} MB")
                print(f"soak_fds[{role}]: {max(v[1] for v in a)} -> {max(v[1] for v in b)}  "
                      f"growth: {max(v[1] for v in b) - max(v[1] for v in a):+d}")
            else:
                print(f"soak_process[{role}]: present only in part of the run (restarted?)")
        lags = [s[2] for s in sampler.samples if s[2] == s[2]]
        print(f"soak_outbox_lag: {max(lags) if lags else float('nan'):.1f} s (max), "
              f"{lags[-1] if lags else float('nan'):.1f} s (after the run)")
    logins = sum(r["logins"] for r in results)
    issued = {s for r in results for s in r["issued"]}
    revoked = {s for r in results for s in r["revoked"]}
    audited_logins = sum(1 for action, _, details in audit if action == "idp.login"
                         and json.loads(details).get("result") == "ok")
    audited_issued = {t.removeprefix("cert:") for a, t, _ in audit if a == "cert.issue"}
    audited_revoked = {t.removeprefix("cert:") for a, t, _ in audit if a == "cert.revoke"}
    missing_logins = max(0, logins - audited_logins)
    missing = missing_logins + len(issued - audited_issued) + len(revoked - audited_revoked)
    print(f"soak_logins: {logins} succeeded, {audited_logins} audited")
    print(f"soak_issued: {len(issued)} succeeded, {len(issued & audited_issued)} audited")
    print(f"soak_revoked: {len(revoked)} succeeded, {len(revoked & audited_revoked)} audited")
    print(f"soak_audit_missing: {missing} operations")


if __name__ == "__main__":
    main()
