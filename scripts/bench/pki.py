#!/usr/bin/env python3
"""Benchmark the CA, each figure beside its baseline measured in the same run.

- issuance: certificates/s from CSRs, recorded in the database with their audit
  record, on SQLite (WAL file; ``issuance_durable``) and on PostgreSQL (a
  throwaway cluster with the product's durable settings, its folder beside the
  SQLite file; ``issuance_durable_postgresql``), beside building and signing the
  same certificate in memory with pyca/cryptography alone; and their ratios.
  ``--db sqlite|postgresql|both`` (default both, PostgreSQL when installed).
  Sequential, with ``--issue-threads`` threads of one process (``_Nthreads``), and
  with ``--issue-procs`` processes (``_Nprocs``, each its own connections and
  remembered audit head, as the deployed workers), each beside the bare build+sign
  at the same concurrency.
- OCSP, in both deployment shapes (``--shape``), beside ``openssl ocsp`` as a
  responder on the same index of certificates with the same key, which runs with
  its ``wrk`` inside a private network namespace (``unshare -n``): POST without
  and with a nonce, and the RFC 6960 A.1 GET of the no-nonce request.
  one-machine: responses/s over HTTP on loopback from the PKI app under granian
  as ``govtrust serve`` runs it (``--ocsp-server gthread --ocsp-server sync`` add
  gunicorn's worker models beside it), POST of a kept answer and POST with a
  nonce (signed fresh); production: a real nginx with the configuration
  ``govtrust deploy nginx`` renders, the exported public files and one node
  (granian, as ``govtrust node``) behind it: GET of a pre-signed answer (nginx's
  static file), POST of the same request (the file again, through nginx's njs
  script when installed) and POST with a nonce (the node). Each with its ratio
  to the matching openssl figure.
- escrowed dual issuance: pairs/s of a user-sign certificate from a CSR plus an
  escrowed user-encrypt certificate (the KMC generates the key, seals it under
  its KEK, records it, the CA issues, the key goes out wrapped to the signing
  certificate as CMS), beside two plain CSR issuances; and their ratio.
- CRL: seconds (wall and CPU) to generate a 1,000,000-entry CRL from the database, beside
  ``openssl ca -gencrl`` on the same revoked serials.
- SM2 (GM/T 0015): SM3withSM2 certificates/s from OpenSSL-made SM2 CSRs (recorded
  like the others) and SM2-signed OCSP responses/s (in process, with a nonce so
  each is signed), beside tongsuopy's bare SM2 signatures/s and
  ``openssl speed -seconds 2 sm2``; SM2 escrowed dual issuance pairs/s (an SM2
  user-sign certificate from a CSR plus an escrowed SM2 user-encrypt one, the key
  delivered as a GM/T 0009 SM2EnvelopedKey) beside two plain SM2 CSR issuances.

Prints ``name: value unit`` lines.

    scripts/bench/pki.py [--issue 2000] [--issue-threads 4] [--issue-procs 2] [--dual 300]
                         [--duration 5]
                         [--crl-entries 1000000]
                         [--db both|sqlite|postgresql] [--skip PART]
                         [--shape one-machine|production] [--ocsp-server granian|gthread|sync]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402
from sqlalchemy import select  # noqa: E402

from directory.model import Person  # noqa: E402
from idp.runtime.db import make_engine, session_factory, upgrade  # noqa: E402
from idp.runtime.serve import granian_command  # noqa: E402
from pki.audit_store import AuditLog  # noqa: E402
from pki.authority import CertificateAuthority  # noqa: E402
from pki.certs import end_entity_builder, general_names, new_serial, subject_for  # noqa: E402
from pki.csr import check_csr, parse_csr  # noqa: E402
from pki.keys import FileKeyStore, SoftwareSigner  # noqa: E402
from pki.model import CASettings  # noqa: E402
from pki.publish import RecordingPublisher  # noqa: E402
from pki.store import SqlCertificateStore, certificates  # noqa: E402
from policies.profiles import KeyKind, profiles  # noqa: E402

PASSPHRASE = "bench passphrase, not a secret"
WSGI = '''
import os
from idp.runtime.db import make_engine, session_factory
from pki.audit_store import AuditLog
from pki.authority import CertificateAuthority
from pki.http import create_app
from pki.keys import FileKeyStore
from pki.model import CASettings
from pki.publish import RecordingPublisher
from pki.store import SqlCertificateStore


def app():
    sessions = session_factory(make_engine(os.environ["BENCH_DB"]))
    ca = CertificateAuthority(SqlCertificateStore(sessions),
                              FileKeyStore(__import__("pathlib").Path(os.environ["BENCH_KEYS"]),
                                           os.environ["BENCH_PASS"].encode()),
                              CASettings(), publisher=RecordingPublisher(),
                              audit=AuditLog(sessions))
    return create_app(ca)
'''


def out(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.6g} {unit}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def person(i: int) -> Person:
    return Person(uid=f"user{i:07d}", dn=f"uid=user{i:07d},ou=people,dc=beijing,dc=gov,dc=cn",
                  entry_uuid=f"uuid-{i}", display_name="张伟", department=("市财政局", "预算处"),
                  email=f"user{i:07d}@beijing.gov.cn")


def make_ca(folder: Path, url: str | None = None) -> tuple[CertificateAuthority, str]:
    url = url or f"sqlite:///{folder / 'govtrust.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    ca = CertificateAuthority(SqlCertificateStore(sessions),
                              FileKeyStore(folder / "keys", PASSPHRASE.encode()), CASettings(),
                              publisher=RecordingPublisher(), audit=AuditLog(sessions))
    ca.initialize(actor="bench")
    return ca, url


# -- escrowed dual issuance --------------------------------------------------------------
def bench_dual(ca: CertificateAuthority, url: str, folder: Path, n: int, rounds: int = 3) -> None:
    """Best of alternating rounds, as for issuance."""
    from pki.kek import FileKeyEncryptionKey
    from pki.kmc import KeyManagementCentre, WrapTo
    from pki.kmc_store import SqlEscrowStore

    kmc = KeyManagementCentre(SqlEscrowStore(session_factory(make_engine(url))),
                              FileKeyEncryptionKey(folder / "keys", PASSPHRASE.encode()), ca)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(50)]
    csrs = [x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
            .sign(keys[i % 50], hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
            for i in range(2 * n)]
    p = person(1)
    per_round = max(1, n // rounds)
    escrowed = plain = 0.0
    for r in range(rounds):
        batch = csrs[2 * r * per_round:2 * (r + 1) * per_round]
        start = time.perf_counter()
        for csr in batch[:per_round]:
            sign = ca.issue_from_csr(p, "user-sign", csr, actor="bench")
            kmc.issue_escrowed(p, WrapTo(sign.certificate), actor="bench")
        escrowed = max(escrowed, per_round / (time.perf_counter() - start))
        start = time.perf_counter()
        for i in range(per_round):
            ca.issue_from_csr(p, "user-sign", batch[per_round + i], actor="bench")
            ca.issue_from_csr(p, "user-auth", batch[i], actor="bench")
        plain = max(plain, per_round / (time.perf_counter() - start))
    out("dual_issuance_escrowed", escrowed, "pairs/s")
    out("dual_issuance_two_csrs", plain, "pairs/s")
    out("dual_issuance_ratio", escrowed / plain, "x")


# -- issuance ------------------------------------------------------------------------------
def in_threads(work: Callable[[bytes], object], batch: list[bytes], threads: int) -> float:
    """Rate of ``work`` over ``batch`` shared by ``threads`` threads (1: this one)."""
    if threads == 1:
        start = time.perf_counter()
        for item in batch:
            work(item)
        return len(batch) / (time.perf_counter() - start)
    import threading

    errors: list[BaseException] = []

    def run(chunk: list[bytes]) -> None:
        try:
            for item in chunk:
                work(item)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(batch[i::threads],))
               for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return len(batch) / elapsed


def in_processes(work: Callable[[bytes], object], batch: list[bytes], procs: int,
                 engines: list[Any]) -> float:
    """Rate of ``work`` over ``batch`` shared by ``procs`` forked processes, as
    ``govtrust serve``'s and ``govtrust node``'s worker processes issue: each with
    its own connections (``engines`` disposed in the child, the parent's kept) and
    its own remembered audit head, so each finds the head the others moved."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    go = ctx.Event()

    def run(chunk: list[bytes]) -> None:
        for engine in engines:
            engine.dispose(close=False)  # the parent's pooled connections stay its own
        go.wait()
        for item in chunk:
            work(item)

    workers = [ctx.Process(target=run, args=(batch[i::procs],)) for i in range(procs)]
    for w in workers:
        w.start()
    time.sleep(0.5)  # all forked and waiting
    start = time.perf_counter()
    go.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    failed = [w.exitcode for w in workers if w.exitcode != 0]
    if failed:
        raise RuntimeError(f"issuing processes failed: exit codes {failed}")
    return len(batch) / elapsed


def bench_issuance(cas: dict[str, CertificateAuthority], n: int, rounds: int = 3,
                   threads: int = 1, procs: int = 1) -> None:
    """Alternate rounds of each database and the bare build+sign, best of each: the
    machine may be shared. ``cas`` maps a database name to an authority on it.
    ``threads`` > 1 adds the same figures with that many concurrent issuers in one
    process, the bare build+sign with as many threads (group commit only gathers
    concurrent issuances). ``procs`` > 1 adds them with that many issuing processes
    (``_Nprocs``), the bare build+sign in as many: the deployed shape, whose
    workers are processes and whose writers find the audit head each other moved."""
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(50)]
    csrs = [x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
            .sign(keys[i % 50], hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
            for i in range(n)]
    p = person(0)
    profile = profiles()["user-auth"]
    first = next(iter(cas.values()))
    issuer = first.issuing_certificate
    signer = first.issuing_signer()
    assert isinstance(signer, SoftwareSigner)
    per_round = max(1, n // rounds)
    counts = sorted({1, threads})
    durable = {(db, t): 0.0 for db in cas for t in counts}
    bare = dict.fromkeys(counts, 0.0)
    durable_procs = dict.fromkeys(cas, 0.0)
    bare_procs = 0.0
    engines = [ca.store._engine for ca in cas.values()]  # type: ignore[attr-defined]  # noqa: SLF001

    def build_and_sign(csr: bytes) -> None:
        req = x509.load_pem_x509_csr(csr)
        assert req.is_signature_valid
        now = datetime.now(UTC)
        builder = end_entity_builder(
            profile=profile, public_key=req.public_key(),  # type: ignore[arg-type]
            key_kind=KeyKind.EC, subject=subject_for(profile, first.settings, person=p),
            sans=general_names(profile, first.settings, person=p, dns_names=()),
            issuer=issuer, settings=first.settings, now=now, serial=new_serial())
        builder.sign(signer.private_key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER)

    for r in range(rounds):
        batch = csrs[r * per_round:(r + 1) * per_round]
        for t in counts:
            for db, ca in cas.items():
                rate = in_threads(lambda csr, ca=ca: ca.issue_from_csr(  # type: ignore[misc]
                    p, "user-auth", csr, actor="bench"), batch, t)
                durable[db, t] = max(durable[db, t], rate)
            bare[t] = max(bare[t], in_threads(build_and_sign, batch, t))
        if procs > 1:
            for db, ca in cas.items():
                rate = in_processes(lambda csr, ca=ca: ca.issue_from_csr(  # type: ignore[misc]
                    p, "user-auth", csr, actor="bench"), batch, procs, engines)
                durable_procs[db] = max(durable_procs[db], rate)
            bare_procs = max(bare_procs, in_processes(build_and_sign, batch, procs, []))
    check_csr(parse_csr(csrs[0], 65536), profile)
    suffix = {"sqlite": "", "postgresql": "_postgresql"}
    for t in counts:
        tail = "" if t == 1 else f"_{t}threads"
        for db in cas:
            out(f"issuance_durable{suffix[db]}{tail}", durable[db, t], "certs/s")
        out(f"issuance_bare_cryptography{tail}", bare[t], "certs/s")
        for db in cas:
            out(f"issuance_ratio{suffix[db]}{tail}", durable[db, t] / bare[t], "x")
    if procs > 1:
        tail = f"_{procs}procs"
        for db in cas:
            out(f"issuance_durable{suffix[db]}{tail}", durable_procs[db], "certs/s")
        out(f"issuance_bare_cryptography{tail}", bare_procs, "certs/s")
        for db in cas:
            out(f"issuance_ratio{suffix[db]}{tail}", durable_procs[db] / bare_procs, "x")


@contextlib.contextmanager
def postgres_ca(base: Path | None, folder: Path) -> Iterator[CertificateAuthority]:
    """An authority on a throwaway PostgreSQL cluster (tests/fixtures/postgres.py),
    with the server's durable defaults (fsync, synchronous_commit on)."""
    from tests.fixtures.postgres import PostgresCluster

    cluster = PostgresCluster(base=base, settings=())
    cluster.start()
    try:
        ca, _ = make_ca(folder, cluster.create_database())
        yield ca
    finally:
        cluster.stop()


# -- OCSP ------------------------------------------------------------------------------------
def lua_post(path: Path, body: bytes) -> Path:
    escaped = "".join(f"\\{b}" for b in body)
    path.write_text('wrk.method = "POST"\n'
                    f'wrk.body = "{escaped}"\n'
                    'wrk.headers["Content-Type"] = "application/ocsp-request"\n')
    return path


def wrk_rate(cmd_prefix: list[str], url: str, script: Path, duration: int) -> tuple[float, str]:
    proc = subprocess.run([*cmd_prefix, "wrk", "-t2", "-c16", f"-d{duration}s", "-s",
                           str(script), url], capture_output=True, text=True,
                          timeout=duration + 60)
    rate = 0.0
    for line in proc.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            rate = float(line.split()[1])
    return rate, proc.stdout + proc.stderr


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate, nonce: bool) -> bytes:
    b = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    if nonce:
        b = b.add_extension(x509.OCSPNonce(secrets.token_bytes(16)), critical=False)
    return b.build().public_bytes(serialization.Encoding.DER)


def write_index(db_url: str, path: Path) -> None:
    """``openssl ca``'s text database of every certificate the CA recorded."""
    engine = make_engine(db_url)
    c = certificates.c
    q = select(c.serial, c.status, c.not_after, c.revoked_at, c.reason, c.subject)
    with engine.connect() as conn, path.open("w", encoding="utf-8") as handle:
        result = conn.execution_options(stream_results=True, yield_per=50_000).execute(q)
        for serial, status, not_after, revoked_at, reason, subject in result:
            # The index wants an even number of hex digits.
            serial = serial.upper().rjust(len(serial) + len(serial) % 2, "0")
            exp = not_after.strftime("%y%m%d%H%M%SZ")
            name = "/" + "/".join(reversed(subject.split(",")))
            if status != "valid" and revoked_at is not None:
                rev = revoked_at.strftime("%y%m%d%H%M%SZ")
                if status == "hold":
                    rev += ",certificateHold"
                elif reason and reason != "unspecified":
                    rev += f",{reason}"
                handle.write(f"R\t{exp}\t{rev}\t{serial}\tunknown\t{name}\n")
            else:
                handle.write(f"V\t{exp}\t\t{serial}\tunknown\t{name}\n")
    engine.dispose()
    # Many certificates share a subject (one person, several certificates).
    path.with_name(path.name + ".attr").write_text("unique_subject = no\n")


# The WSGI servers the one-machine shape can be measured under: `govtrust serve`
# runs the first (idp.runtime.serve.granian_command); the others are for comparison.
OCSP_SERVERS = ("granian", "gthread", "sync")
# What `govtrust node` runs behind nginx (idp.runtime.node).
NODE_SERVER = "granian"


def start_pki_server(kind: str, port: int, env: dict[str, str], folder: Path,
                     workers: int) -> subprocess.Popen[bytes]:
    """The bench's PKI app (pki.http.create_app) under ``kind``, on 127.0.0.1:port."""
    venv = ROOT / ".venv" / "bin"
    if kind == "granian":
        cmd = granian_command("bench_pki_app:app", f"127.0.0.1:{port}", workers, 4)
    else:
        cmd = [str(venv / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}",
               "--log-level", "warning"]
        if kind == "gthread":  # 4 threads and keep-alive, as the IdP runs
            cmd += ["-k", "gthread", "--threads", "4", "--keep-alive", "15"]
        cmd.append("bench_pki_app:app()")
    return subprocess.Popen(cmd, env=env, cwd=folder)


def wait_ready(base: str, deadline_s: float = 60) -> None:
    """Ready when a worker has built its CA and answers, not when the port opens."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        try:
            if requests.get(f"{base}/ca/root.der", timeout=5).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base} did not answer within {deadline_s} s")


# Rounds of each measurement, openssl's and ours in turn; the best of each is kept.
ROUNDS = 2


def best_rate(url: str, script: Path, duration: int, runs: int = 2) -> float:
    """Best of ``runs`` runs: the machine may be shared."""
    rates = [wrk_rate([], url, script, duration) for _ in range(runs)]
    best = max(rates)
    if not best[0] or "Non-2xx" in best[1]:
        print(f"{url}: {best[1][-500:]}", file=sys.stderr)
    return best[0]


def ratio(name: str, ours: float, theirs: float) -> None:
    if ours and theirs:
        out(name, ours / theirs, "x")


def lua_get(path: Path) -> Path:
    path.write_text('wrk.method = "GET"\n')
    return path


def bench_ocsp(ca: CertificateAuthority, db_url: str, folder: Path, duration: int,
               shapes: list[str], servers: list[str]) -> None:
    """Both deployment shapes beside ``openssl ocsp`` measured in the same run.

    one machine: the PKI app under each of ``servers`` (POST, the way relying
    parties ask: a pre-signed answer and a nonce answer signed fresh);
    production: a real nginx with the configuration `govtrust deploy nginx`
    renders (idp.runtime.nginx.render), the exported public files, one node
    (granian, as `govtrust node`) behind it: GET of a pre-signed answer, POST of
    the same request (nginx's njs script, when installed) and POST with a nonce,
    which nginx hands to the node.
    """
    if not shutil.which("wrk"):
        print("ocsp: skipped (wrk not installed)")
        return
    issued = ca.find(uid=person(0).uid, limit=1)[0]
    cert = x509.load_der_x509_certificate(issued.der)
    issuer = ca.issuing_certificate
    plain_der = ocsp_request(cert, issuer, nonce=False)
    plain = lua_post(folder / "plain.lua", plain_der)
    with_nonce = lua_post(folder / "nonce.lua", ocsp_request(cert, issuer, nonce=True))
    get = lua_get(folder / "get.lua")
    get_path = "/" + base64.b64encode(plain_der).decode("ascii")
    (folder / "bench_pki_app.py").write_text(WSGI)
    env = {**os.environ, "BENCH_DB": db_url, "BENCH_KEYS": str(folder / "keys"),
           "BENCH_PASS": PASSPHRASE, "PYTHONPATH": f"{folder}:{ROOT}"}
    workers = max(2, os.cpu_count() or 2)
    prepare_openssl(ca, db_url, folder)
    overall: dict[str, float] = {}

    def yardstick(kinds: list[str], into: dict[str, float]) -> None:
        for kind, rate in openssl_rates(folder, duration, workers, get_path, kinds).items():
            into[kind] = max(into.get(kind, 0.0), rate)
            overall[kind] = max(overall.get(kind, 0.0), rate)

    if "one-machine" in shapes:
        for kind in servers:
            port = free_port()
            server = start_pki_server(kind, port, env, folder, workers)
            theirs: dict[str, float] = {}
            cached = nonce = 0.0
            try:
                url = f"http://127.0.0.1:{port}/ocsp"
                wait_ready(f"http://127.0.0.1:{port}")
                wrk_rate([], url, plain, 1)  # every worker up, caches warm
                # Rounds of openssl then ours, best of each: on a shared machine the
                # yardstick is measured beside the figure it divides.
                for _ in range(ROUNDS):
                    yardstick(["plain", "nonce"], theirs)
                    cached = max(cached, best_rate(url, plain, duration, runs=1))
                    nonce = max(nonce, best_rate(url, with_nonce, duration, runs=1))
            finally:
                server.terminate()
                server.wait(10)
            # The historical names are the figures of what `govtrust serve` runs.
            name = "ocsp_http_govtrust" if kind == servers[0] else f"ocsp_http_{kind}"
            out(f"{name}_cached", cached, "responses/s")
            out(f"{name}_nonce", nonce, "responses/s")
            ratio(f"{name}_ratio_cached_vs_openssl", cached, theirs.get("plain", 0.0))
            ratio(f"{name}_ratio_nonce_vs_openssl", nonce, theirs.get("nonce", 0.0))
    if "production" in shapes:
        bench_ocsp_production(ca, folder, env, duration, workers, NODE_SERVER, get_path,
                              get, plain, with_nonce, yardstick)
    # The best openssl figure of any round (each ratio above used its own rounds').
    out("ocsp_http_openssl_no_nonce", overall.get("plain", 0.0), "responses/s")
    out("ocsp_http_openssl_nonce", overall.get("nonce", 0.0), "responses/s")
    if "production" in shapes:
        out("ocsp_http_openssl_get", overall.get("get", 0.0), "responses/s")


def bench_ocsp_production(ca: CertificateAuthority, folder: Path, env: dict[str, str],
                          duration: int, workers: int, server_kind: str, get_path: str,
                          get: Path, plain: Path, with_nonce: Path,
                          yardstick: Callable[[list[str], dict[str, float]], None]) -> None:
    from idp.runtime.nginx import NJS_MODULE, NginxSettings, Upstream, ocsp_post_js, render
    from pki import public_files

    if not shutil.which("nginx"):
        print("ocsp_production: skipped (nginx not installed)")
        return
    public = folder / "public"
    report = public_files.export([(ca, ca.responder)], ca.find(limit=100_000), public,
                                 datetime.now(UTC), version="bench")
    request = base64.b64decode(get_path.lstrip("/"))
    assert (public / "ocsp" / public_files.file_path(request)).is_file(), "no pre-signed file"
    out("ocsp_production_files", report.ocsp_files, "files")
    # nginx's TLS server (the IdP side) needs a certificate; the bench never uses it.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    tls = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
           .public_key(key.public_key()).serial_number(new_serial())
           .not_valid_before(now).not_valid_after(now + timedelta(days=1))
           .sign(key, hashes.SHA256()))
    (folder / "tls.pem").write_bytes(tls.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    run = folder / "nginx"
    for sub in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    node_port, pki_port, tls_port = free_port(), free_port(), free_port()
    script = None
    if NJS_MODULE.is_file():  # as `govtrust deploy nginx` does: POST from the files too
        script = run / "govtrust_ocsp.js"
        script.write_text(ocsp_post_js(public))
    settings = NginxSettings(
        nodes=(Upstream("127.0.0.1", node_port),), idp_listen=f"127.0.0.1:{tls_port}",
        pki_listen=f"127.0.0.1:{pki_port}", server_name="127.0.0.1",
        certificate=folder / "tls.pem", certificate_key=folder / "tls.key",
        trusted_certificate=folder / "tls.pem", public_root=public, full=True, run_dir=run,
        user="root" if os.geteuid() == 0 else None, ocsp_post_js=script)
    (folder / "nginx.conf").write_text(render(settings))
    node = start_pki_server(server_kind, node_port, env, folder, workers)
    nginx = subprocess.Popen(["nginx", "-e", str(run / "startup.log"), "-c",
                              str(folder / "nginx.conf"), "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{pki_port}"
        wait_ready(f"http://127.0.0.1:{node_port}")
        wait_ready(base)
        answer = requests.get(base + "/ocsp" + get_path, timeout=5)
        assert answer.ok and "max-age" in answer.headers.get("Cache-Control", ""), \
            "the GET was not answered from nginx's files"
        posted = requests.post(base + "/ocsp", data=base64.b64decode(get_path.lstrip("/")),
                               headers={"Content-Type": "application/ocsp-request"}, timeout=5)
        from_file = posted.content == answer.content
        wrk_rate([], base + "/ocsp", with_nonce, 1)  # the node's workers warm
        theirs: dict[str, float] = {}
        got = post = nonce = 0.0
        for _ in range(ROUNDS):
            yardstick(["get", "plain", "nonce"], theirs)
            got = max(got, best_rate(base + "/ocsp" + get_path, get, duration, runs=1))
            post = max(post, best_rate(base + "/ocsp", plain, duration, runs=1))
            nonce = max(nonce, best_rate(base + "/ocsp", with_nonce, duration, runs=1))
    finally:
        nginx.send_signal(signal.SIGQUIT)
        node.terminate()
        for proc in (nginx, node):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    out("ocsp_production_nginx_get_presigned", got, "responses/s")
    ratio("ocsp_production_ratio_get_vs_openssl_get", got, theirs.get("get", 0.0))
    # From nginx's file (njs) when the module is there, else from the node.
    where = "nginx" if from_file else "node"
    out(f"ocsp_production_{where}_post_presigned", post, "responses/s")
    ratio(f"ocsp_production_ratio_{where}_post_vs_openssl", post, theirs.get("plain", 0.0))
    out("ocsp_production_node_post_nonce", nonce, "responses/s")
    ratio("ocsp_production_ratio_nonce_vs_openssl", nonce, theirs.get("nonce", 0.0))


def prepare_openssl(ca: CertificateAuthority, db_url: str, folder: Path) -> None:
    """``openssl ocsp``'s files: the same index, responder key and certificate."""
    issuer = ca.issuing_certificate
    write_index(db_url, folder / "index.txt")
    rcert, rsigner = ca.ocsp_credentials()
    assert isinstance(rsigner, SoftwareSigner)
    (folder / "ocsp.pem").write_bytes(rcert.public_bytes(serialization.Encoding.PEM))
    (folder / "ocsp.key").write_bytes(rsigner.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (folder / "issuing.pem").write_bytes(issuer.public_bytes(serialization.Encoding.PEM))


def openssl_rates(folder: Path, duration: int, workers: int, get_path: str,
                  kinds: list[str]) -> dict[str, float]:
    """``openssl ocsp -multi`` answering each of ``kinds`` once: ``plain`` (POST, no
    nonce), ``nonce`` (POST with one), ``get`` (the RFC 6960 A.1 GET of ``plain``)."""
    script = folder / "openssl_ocsp.sh"
    # Started afresh for each run: when wrk stops, the half-sent requests it leaves
    # behind make the responder give up, so a second run would find nobody. The
    # GET is checked once with curl: a "successful" answer, or no GET figure.
    script.write_text(f"""set -e
ip link set lo up
cd {folder}
port=8888
for s in {" ".join(kinds)}; do
  port=$((port + 1))
  openssl ocsp -index index.txt -CA issuing.pem -rsigner ocsp.pem -rkey ocsp.key \\
    -port $port -multi {workers} -nmin 240 > openssl_ocsp_$s.log 2>&1 &
  pid=$!
  # A probe connection would be a malformed request, which ends the responder: wait.
  sleep 1
  url=http://127.0.0.1:$port/
  if [ $s = get ]; then
    url=http://127.0.0.1:$port{get_path}
    curl -s -o get.der $url || true
  fi
  timeout {duration + 20} wrk -t2 -c16 -d{duration}s -s $s.lua $url \\
    | grep Requests/sec | sed "s/^/$s /" || true
  pkill -P $pid || true
  kill $pid || true
  sleep 0.5
done
""")

    # Its own process group, killed whole at the end: a responder left behind by a
    # timed-out run would spin on a half-closed socket and skew every later figure.
    child = subprocess.Popen(["unshare", "-n", "bash", str(script)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=len(kinds) * (duration + 25) + 30)
    except subprocess.TimeoutExpired:
        stdout, stderr = "", "openssl ocsp run timed out"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    rates: dict[str, float] = {}
    for line in stdout.splitlines():
        kind, _, value = line.split()
        rates[kind] = max(rates.get(kind, 0.0), float(value))
    answer = folder / "get.der"
    if answer.is_file() and answer.stat().st_size:
        status = ocsp.load_der_ocsp_response(answer.read_bytes()).response_status
        if status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            print(f"ocsp_openssl_get: answered {status.name}: no GET figure", file=sys.stderr)
            rates.pop("get", None)
    if len(rates) < len(kinds):
        logs = " | ".join(p.read_text()[-300:] for p in folder.glob("openssl_ocsp_*.log"))
        print(f"ocsp_openssl: incomplete: {stderr.strip()[:300]} {logs}", file=sys.stderr)
    return rates


# -- a CRL of a million entries -------------------------------------------------------------
def bench_crl(entries: int, folder: Path) -> None:
    ca, url = make_ca(folder)
    engine = make_engine(url)
    now = datetime.now(UTC).replace(microsecond=0)
    start = time.perf_counter()
    # Setup only: rows go in through the driver, dates in SQLAlchemy's SQLite format.
    cols = [c.name for c in certificates.columns]
    sql = (f"INSERT INTO certificates ({', '.join(cols)}) "
           f"VALUES ({', '.join('?' for _ in cols)})")
    fmt = "%Y-%m-%d %H:%M:%S.000000"
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        batch: list[tuple[object, ...]] = []
        for i in range(entries):
            at = (now - timedelta(seconds=i)).strftime(fmt)
            end_at = (now + timedelta(days=365 - i // 86400)).strftime(fmt)
            row = {"serial": format(new_serial(), "x"), "owner_kind": "person",
                   "owner_uid": f"user{i:07d}", "owner_entry_uuid": f"uuid-{i}",
                   "profile": "user-auth", "subject": "CN=x", "not_before": at,
                   "not_after": end_at, "status": "revoked", "issued_at": at,
                   "status_changed_at": at, "revoked_at": at,
                   "reason": "keyCompromise" if i % 2 else "superseded",
                   "invalidity_date": None, "hardware_key": 0, "hierarchy": "ecdsa",
                   "der": b"-"}
            batch.append(tuple(row[c] for c in cols))
            if len(batch) == 50_000:
                cur.executemany(sql, batch)
                batch = []
        if batch:
            cur.executemany(sql, batch)
        raw.commit()
    finally:
        raw.close()
    out("crl_setup_insert", time.perf_counter() - start, "s")

    start, cpu = time.perf_counter(), time.process_time()
    rec = ca.generate_crl(delta=False, actor="bench")
    ours, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
    assert rec.entries == entries
    out("crl_1m_govtrust_generate", ours, "s")
    # CPU seconds too: on a shared machine the wall time of either side moves with
    # the load (2x between two runs), its CPU time far less.
    out("crl_1m_govtrust_generate_cpu", ours_cpu, "s")
    out("crl_1m_govtrust_size", len(rec.der) / 1e6, "MB")
    start = time.perf_counter()
    parsed = x509.load_der_x509_crl(rec.der)
    assert parsed.is_signature_valid(ca.issuing_certificate.public_key())  # type: ignore
    out("crl_1m_check_signature", time.perf_counter() - start, "s")

    # openssl ca -gencrl on the same serials (its text index, its own config).
    index = folder / "index.txt"
    write_index(url, index)
    signer = ca.issuing_signer()
    assert isinstance(signer, SoftwareSigner)
    (folder / "issuing.key").write_bytes(signer.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (folder / "issuing.pem").write_bytes(ca.issuing_certificate.public_bytes(
        serialization.Encoding.PEM))
    (folder / "crlnumber").write_text("1000\n")
    (folder / "ca.cnf").write_text(f"""[ca]
default_ca = bench
[bench]
database = {index}
crlnumber = {folder / 'crlnumber'}
certificate = {folder / 'issuing.pem'}
private_key = {folder / 'issuing.key'}
default_md = sha256
default_crl_days = 2
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid
""")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(["openssl", "ca", "-batch", "-config", str(folder / "ca.cnf"),
                           "-gencrl", "-out", str(folder / "openssl.crl")],
                          capture_output=True, text=True, timeout=1800)
    theirs = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    theirs_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    if proc.returncode != 0:
        print(f"crl_1m_openssl_gencrl: failed: {proc.stderr.strip()[:300]}")
        return
    out("crl_1m_openssl_gencrl", theirs, "s")
    out("crl_1m_openssl_gencrl_cpu", theirs_cpu, "s")
    out("crl_ratio_govtrust_vs_openssl", ours / theirs, "x")
    out("crl_ratio_cpu_govtrust_vs_openssl", ours_cpu / theirs_cpu, "x")


# -- SM2 ---------------------------------------------------------------------------------
def bench_sm2(folder: Path, n: int, duration: int) -> None:
    from pki import der, sm2

    url = f"sqlite:///{folder / 'govtrust.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    default = CertificateAuthority(SqlCertificateStore(sessions),
                                   FileKeyStore(folder / "keys", PASSPHRASE.encode()),
                                   CASettings(sm2=True), publisher=RecordingPublisher(),
                                   audit=AuditLog(sessions))
    default.initialize(actor="bench")  # both hierarchies
    ca = default.sm2
    csrs = []
    for i in range(20):  # made as a relying party would: OpenSSL with the default ID
        key = folder / f"k{i}.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "SM2", "-out", key], check=True,
                       capture_output=True)
        csrs.append(subprocess.run(
            ["openssl", "req", "-new", "-key", key, "-sm3", "-sigopt",
             "distid:1234567812345678", "-subj", "/CN=bench"], check=True,
            capture_output=True).stdout)
    p = person(0)
    start = time.perf_counter()
    issued = [ca.issue_from_csr(p, "user-sign", csrs[i % 20], actor="bench") for i in range(n)]
    out("sm2_issuance_durable", n / (time.perf_counter() - start), "certs/s")
    bench_sm2_dual(default, sessions, folder, csrs, max(1, min(n, 300)))

    issuer = ca.issuing_certificate
    name = issuer.subject.public_bytes(serialization.Encoding.DER)
    point = sm2.certificate_public_key(issuer.public_bytes(serialization.Encoding.DER)).point
    import hashlib

    def request(serial: int) -> bytes:
        cid = der.sequence(der.sequence(der.oid("1.3.14.3.2.26"), b"\x05\x00"),
                           der.octet_string(hashlib.sha1(name).digest()),  # noqa: S324
                           der.octet_string(hashlib.sha1(point).digest()),  # noqa: S324
                           der.integer(serial))
        nonce = der.tlv(0xA2, der.sequence(der.extension(
            "1.3.6.1.5.5.7.48.1.2", der.octet_string(secrets.token_bytes(16)))))
        return der.sequence(der.sequence(der.sequence(der.sequence(cid)), nonce))

    requests_ = [request(i.certificate.serial_number) for i in issued[:200]]
    responder = ca.responder
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration:
        responder.respond(requests_[done % len(requests_)])
        done += 1
    out("sm2_ocsp_signed_inprocess", done / (time.perf_counter() - start), "responses/s")

    signer = ca.issuing_signer()
    data = secrets.token_bytes(256)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2:
        signer.sign(data)
        done += 1
    out("sm2_sign_bare_tongsuopy", done / (time.perf_counter() - start), "signs/s")
    proc = subprocess.run(["openssl", "speed", "-seconds", "2", "sm2"], capture_output=True,
                          text=True)
    line = next((ln for ln in proc.stdout.splitlines() if "SM2" in ln), "")
    if line:
        out("sm2_sign_openssl_speed", float(line.split()[-2]), "signs/s")
    else:
        print(f"sm2_sign_openssl_speed: failed: {proc.stderr.strip()[:200]}", file=sys.stderr)
    engine.dispose()


def bench_sm2_dual(default: CertificateAuthority, sessions: Any, folder: Path,
                   csrs: list[bytes], n: int) -> None:
    """SM2 pairs: CSR user-sign + escrowed user-encrypt, beside two CSR issuances."""
    from pki.kek import FileKeyEncryptionKey
    from pki.kmc import KeyManagementCentre, WrapTo
    from pki.kmc_store import SqlEscrowStore
    from pki.model import HierarchyName

    kmc = KeyManagementCentre(SqlEscrowStore(sessions),
                              FileKeyEncryptionKey(folder / "keys", PASSPHRASE.encode()),
                              default)
    ca, p = default.sm2, person(2)
    kmc.kek.wrap(b"warm", b"up")  # the KEK's scrypt is paid once, not per pair
    start = time.perf_counter()
    for i in range(n):
        sign = ca.issue_from_csr(p, "user-sign", csrs[i % len(csrs)], actor="bench")
        kmc.issue_escrowed(p, WrapTo(sign.certificate), actor="bench",
                           hierarchy=HierarchyName.SM2)
    escrowed = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(n):
        ca.issue_from_csr(p, "user-sign", csrs[i % len(csrs)], actor="bench")
        ca.issue_from_csr(p, "user-auth", csrs[(i + 1) % len(csrs)], actor="bench")
    plain = n / (time.perf_counter() - start)
    out("sm2_dual_issuance_escrowed", escrowed, "pairs/s")
    out("sm2_dual_issuance_two_csrs", plain, "pairs/s")
    out("sm2_dual_issuance_ratio", escrowed / plain, "x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issue", type=int, default=2000)
    parser.add_argument("--dual", type=int, default=300)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--crl-entries", type=int, default=1_000_000)
    parser.add_argument("--issue-threads", type=int, default=4,
                        help="concurrent issuers in one process for the _Nthreads issuance "
                             "figures, beside the sequential ones (1: sequential only)")
    parser.add_argument("--issue-procs", type=int, default=2,
                        help="issuing processes for the _Nprocs issuance figures, as the "
                             "deployed workers issue (1: none)")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["issuance", "dual", "ocsp", "crl", "sm2"])
    parser.add_argument("--db", choices=["both", "sqlite", "postgresql"], default="both",
                        help="databases for the issuance figures (both: PostgreSQL too "
                             "when its binaries are installed)")
    parser.add_argument("--shape", action="append", choices=["one-machine", "production"],
                        help="OCSP deployment shape(s) to measure (default: both)")
    parser.add_argument("--ocsp-server", action="append", choices=list(OCSP_SERVERS),
                        help="WSGI server(s) of the one-machine shape (default: granian, "
                             "what `govtrust serve` runs)")
    args = parser.parse_args()
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="govtrust-pki-bench-", dir=base) as tmp, \
            contextlib.ExitStack() as stack:
        folder = Path(tmp)
        (folder / "ca").mkdir()
        ca, url = make_ca(folder / "ca")
        if "issuance" not in args.skip:
            from tests.fixtures.postgres import PG_BIN

            cas: dict[str, CertificateAuthority] = {}
            if args.db != "postgresql":
                cas["sqlite"] = ca
            if args.db == "postgresql" or (args.db == "both" and (PG_BIN / "initdb").exists()):
                (folder / "pg").mkdir()
                cas["postgresql"] = stack.enter_context(postgres_ca(base, folder / "pg"))
            elif args.db == "both":
                print("issuance_durable_postgresql: skipped (PostgreSQL not installed)")
            bench_issuance(cas, args.issue, threads=args.issue_threads,
                           procs=args.issue_procs)
        else:
            ca.issue_from_csr(person(0), "user-auth", x509.CertificateSigningRequestBuilder()
                              .subject_name(x509.Name([])).sign(
                                  ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
                              .public_bytes(serialization.Encoding.PEM))
        if "dual" not in args.skip:
            bench_dual(ca, url, folder / "ca", args.dual)
        if "ocsp" not in args.skip:
            bench_ocsp(ca, url, folder / "ca", args.duration,
                       args.shape or ["one-machine", "production"],
                       args.ocsp_server or [OCSP_SERVERS[0]])
        if "crl" not in args.skip:
            (folder / "crl").mkdir()
            bench_crl(args.crl_entries, folder / "crl")
        if "sm2" not in args.skip:
            (folder / "sm2").mkdir()
            bench_sm2(folder / "sm2", min(args.issue, 1000), args.duration)


if __name__ == "__main__":
    main()
