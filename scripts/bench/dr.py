#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../../.venv/bin/python" "$0" "$@"'
"""The same-city disaster-recovery drill: lose site A under load, count what was lost.

    scripts/bench/dr.py [--steady 60] [--after 60] [--dir /tmp/gt-dr] [--keep]
                        [--patroni-timing TTL/LOOP/RETRY]

Starts the two-site rehearsal (``scripts/cluster up``), measures client-credentials
grants/s through nginx with one, two and three nodes behind it, then runs a
steady mixed load for ``--steady`` seconds, SIGKILLs every process of site A
(``scripts/cluster fail-site A``) and keeps the load going for ``--after`` seconds.

The load, each kind in its own thread, with a client-side ledger of every
operation whose success was returned:
- password logins through nginx (authorize, login form, code, tokens);
- client-credentials grants through nginx;
- certificate issuance (a fresh P-256 CSR each time) and the revocation of every
  other certificate issued, by a registration-authority client holding the CA
  service on the shared database and both directory URIs (the way ``govtrust
  cert issue`` does): there is no unattended issuance over HTTP yet (self-service
  wants a second factor, the console a level-3 administrator).

Afterwards, from a fresh client: every acknowledged certificate must be in the
inventory with its ``cert.issue`` audit record, every acknowledged revocation
must show in OCSP through nginx (and have its ``cert.revoke`` record), ``govtrust
audit verify`` must pass, and no serial may appear twice. Printed:
``dr_rto_seconds`` (from the kill to the first login begun after it that
succeeded), ``dr_failed_requests``, ``dr_lost_acknowledged`` and the rest: each
failure's status and Retry-After, when site B's PostgreSQL became primary
(``primary_up_after_kill_s``, polled on its Patroni) and what still failed after
that, the failures per second after the kill, and the load average.

The gap after the kill is mostly Patroni's leader lease running out (its ttl):
``--patroni-timing 6/1/2`` sets ttl / loop_wait / retry_timeout for the run (with
``patronictl edit-config``, as an operator would) to see what a shorter one gives.

On two shared cores the one-, two- and three-node figures show the overhead of
more processes competing for the same cores, not scale-out.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import importlib.machinery
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
GOVTRUST = ROOT / ".venv" / "bin" / "govtrust"
CLUSTER = ROOT / "scripts" / "cluster"
REDIRECT = "http://127.0.0.1:9/cb"


def load_script(name: str, path: Path) -> Any:
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


# -- the ledger --------------------------------------------------------------------------

@dataclass
class Op:
    kind: str
    started: float
    ended: float
    ok: bool
    detail: str = ""


@dataclass
class Ledger:
    ops: list[Op] = field(default_factory=list)
    issued: dict[str, bytes] = field(default_factory=dict)  # serial -> PEM, acknowledged
    revoked: list[str] = field(default_factory=list)  # acknowledged revocations
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)


def refused(step: str, r: requests.Response) -> RuntimeError:
    """A failed step, with the status and the Retry-After the client was given (a 503
    from a node carries one; nginx's own 502 does not)."""
    after = r.headers.get("Retry-After")
    return RuntimeError(f"{step} {r.status_code}" + (f" Retry-After {after}" if after else ""))


def login_once(s: requests.Session, issuer: str, ca: str, client_id: str, secret: str,
               uid: str, password: str) -> None:
    s.cookies.clear()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                         ).rstrip(b"=").decode()
    q = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
         "scope": "openid profile", "state": "st", "nonce": secrets.token_urlsafe(8),
         "code_challenge": challenge, "code_challenge_method": "S256"}
    r = s.get(f"{issuer}/authorize?{urlencode(q)}", verify=ca, allow_redirects=False, timeout=15)
    if r.status_code != 302:
        raise refused("authorize", r)
    r = s.get(issuer + r.headers["Location"], verify=ca, allow_redirects=False, timeout=15)
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text)
    back = re.search(r'name="return" value="([^"]+)"', r.text)
    if not (csrf and back):
        raise refused("login form", r)
    r = s.post(issuer + "/login", data={"csrf": csrf.group(1), "uid": uid, "password": password,
                                        "return": html.unescape(back.group(1))},
               verify=ca, allow_redirects=False, timeout=15)
    if r.status_code != 302:
        raise refused("login", r)
    r = s.get(issuer + r.headers["Location"], verify=ca, allow_redirects=False, timeout=15)
    code = parse_qs(urlsplit(r.headers.get("Location", "")).query).get("code")
    if not code:
        raise refused("code", r)
    r = s.post(issuer + "/token", data={"grant_type": "authorization_code", "code": code[0],
                                        "redirect_uri": REDIRECT, "code_verifier": verifier},
               auth=(client_id, secret), verify=ca, timeout=15)
    if r.status_code != 200 or "id_token" not in r.json():
        raise refused("token", r)


class Load:
    def __init__(self, conf: dict[str, Any], ledger: Ledger) -> None:
        self.conf = conf
        self.ledger = ledger
        self.stop = threading.Event()

    def timed(self, kind: str, fn: Any) -> bool:
        started = time.monotonic()
        try:
            fn()
        except Exception as exc:
            self.ledger.add(Op(kind, started, time.monotonic(), False,
                               f"{type(exc).__name__}: {str(exc)[:120]}"))
            time.sleep(0.2)  # a failing service is not hammered
            return False
        self.ledger.add(Op(kind, started, time.monotonic(), True))
        return True

    def logins(self, index: int) -> None:
        c = self.conf
        s = requests.Session()
        people = c["people"]
        i = index
        while not self.stop.is_set():
            uid, password = people[i % len(people)]
            i += 2
            self.timed("login", lambda u=uid, p=password: login_once(
                s, c["issuer"], c["ca"], c["client_id"], c["secret"], u, p))

    def grants(self) -> None:
        c = self.conf
        s = requests.Session()

        def grant() -> None:
            r = s.post(c["issuer"] + "/token", data={"grant_type": "client_credentials"},
                       auth=(c["client_id"], c["secret"]), verify=c["ca"], timeout=15)
            if r.status_code != 200:
                raise refused("grant", r)

        while not self.stop.is_set():
            self.timed("grant", grant)
            time.sleep(0.05)

    def certificates(self) -> None:
        """Issue, and revoke every other certificate issued, as an RA client would."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        from idp.runtime.config import Config
        from idp.runtime.services import Services

        services = Services(Config.load(Path(self.conf["home"])))
        uids = [uid for uid, _ in self.conf["people"]]
        pending: list[str] = []
        n = 0
        try:
            while not self.stop.is_set():
                uid = uids[n % len(uids)]
                n += 1
                key = ec.generate_private_key(ec.SECP256R1())
                csr = (x509.CertificateSigningRequestBuilder()
                       .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uid)]))
                       .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))

                def issue(u: str = uid, body: bytes = csr) -> None:
                    person = services.directory.show(u)
                    issued = services.ca.issue_from_csr(person, "user-auth", body, actor="dr")
                    with self.ledger.lock:  # acknowledged: it was returned to us
                        self.ledger.issued[issued.record.serial] = issued.pem
                    pending.append(issued.record.serial)

                self.timed("issue", issue)
                if len(pending) >= 2:
                    serial = pending.pop(0)
                    pending.pop(0)

                    def revoke(s: str = serial) -> None:
                        services.ca.revoke(s, "superseded", actor="dr")
                        with self.ledger.lock:
                            self.ledger.revoked.append(s)

                    # Not retried: a revocation whose acknowledgement was lost may have
                    # committed, and revoking twice is refused.
                    self.timed("revoke", revoke)
                time.sleep(0.1)
        finally:
            services.close()


# -- checks afterwards -----------------------------------------------------------------------

def ocsp_revoked(pki_url: str, pem: bytes, issuer_pem: bytes) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    cert = x509.load_pem_x509_certificate(pem)
    issuer = x509.load_pem_x509_certificate(issuer_pem)
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    r = requests.post(pki_url + "/ocsp", data=req.public_bytes(serialization.Encoding.DER),
                      headers={"Content-Type": "application/ocsp-request"}, timeout=15)
    resp = ocsp.load_der_ocsp_response(r.content)
    return (resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
            and resp.certificate_status == ocsp.OCSPCertStatus.REVOKED)


def verify(conf: dict[str, Any], ledger: Ledger, env: dict[str, str]) -> dict[str, Any]:
    from cryptography.hazmat.primitives.serialization import Encoding
    from sqlalchemy import func, select

    from idp.runtime.config import Config
    from idp.runtime.services import Services
    from pki.audit_store import audit_log
    from pki.store import certificates

    services = Services(Config.load(Path(conf["home"])))
    lost: list[str] = []
    try:
        for serial in ledger.issued:
            if services.ca.get(serial) is None:
                lost.append(f"certificate {serial} not in the inventory")
        issuer_pem = services.ca.issuing_certificate.public_bytes(Encoding.PEM)
        for serial in ledger.revoked:
            if not ocsp_revoked(conf["pki"], ledger.issued[serial], issuer_pem):
                lost.append(f"revocation of {serial} not in OCSP")
        with services.sessions() as session:
            rows = session.execute(select(audit_log.c.action, audit_log.c.target)
                                   .where(audit_log.c.target.like("cert:%"))).all()
            twice = session.execute(
                select(certificates.c.serial).group_by(certificates.c.serial)
                .having(func.count() > 1)).all()
            total = session.execute(select(func.count()).select_from(certificates)).scalar()
            # In the inventory but never acknowledged to the RA client: what `init`
            # issued, and any issuance committed whose answer the failover cut.
            extra: dict[str, int] = {}
            for serial, profile in session.execute(select(certificates.c.serial,
                                                          certificates.c.profile)):
                if serial not in ledger.issued:
                    extra[profile] = extra.get(profile, 0) + 1
        audited = {(r.action, r.target) for r in rows}
        for serial in ledger.issued:
            if ("cert.issue", f"cert:{serial}") not in audited:
                lost.append(f"audit record of issuing {serial} gone")
        for serial in ledger.revoked:
            if ("cert.revoke", f"cert:{serial}") not in audited:
                lost.append(f"audit record of revoking {serial} gone")
    finally:
        services.close()
    audit = subprocess.run([str(GOVTRUST), "--json", "audit", "verify"], env=env,
                           capture_output=True, text=True, timeout=300)
    try:
        audit_report = json.loads(audit.stdout)
    except ValueError:
        audit_report = {"ok": False, "error": audit.stderr[-500:]}
    return {"lost": lost, "serials_issued_twice": len(twice), "certificates_in_inventory": total,
            "unacknowledged_in_inventory": extra, "audit_verify": audit_report}


# -- the drill -----------------------------------------------------------------------------

def throughput(cluster: Any, bench: Any, conf: dict[str, Any], seconds: float,
               work: Path) -> dict[str, dict[str, float]]:
    """Client-credentials grants/s through nginx with 1, 2, 3 nodes behind it."""
    order = ["a1", "b1", "a2"]
    out: dict[str, dict[str, float]] = {}
    for n in (1, 2, 3):
        cluster.front(order[:n])
        r = bench.wrk_load(conf["issuer"] + "/token", "grant_type=client_credentials",
                           (conf["client_id"], conf["secret"]), 8, seconds, work)
        out[str(n)] = {"grants_per_s": round(r["rate"], 1),
                       "per_node": round(r["rate"] / n, 1), "p50_ms": round(r["p50"], 1),
                       "p99_ms": round(r["p99"], 1), "errors": r["errors"]}
    cluster.front(["a1", "a2", "b1"])
    return out


def watch_primary(cluster: Any, site: str, stop: threading.Event) -> list[float]:
    """Poll Patroni's REST API of ``site`` until it answers ``GET /primary`` with 200
    (its PostgreSQL is the read-write primary); the list gets that moment."""
    seen: list[float] = []

    def poll() -> None:
        while not stop.is_set():
            if cluster.rest(site, "/primary") == 200:
                seen.append(time.monotonic())
                return
            time.sleep(0.1)

    threading.Thread(target=poll, daemon=True).start()
    return seen


def patroni_timing(cluster: Any, spec: str) -> dict[str, int]:
    """Set Patroni's ttl / loop_wait / retry_timeout (``TTL/LOOP/RETRY``) in its
    store, as an operator would with ``patronictl edit-config``, and wait until
    both members' REST APIs show it."""
    ttl, loop_wait, retry = (int(x) for x in spec.split("/"))
    if loop_wait + 2 * retry > ttl:
        sys.exit(f"--patroni-timing {spec}: loop_wait + 2 * retry_timeout must be <= ttl")
    conf = cluster.site_dir("A") / "pg" / "patroni.yml"
    subprocess.run(["patronictl", "-c", str(conf), "edit-config", "--force", "--quiet",
                    "-s", f"ttl={ttl}", "-s", f"loop_wait={loop_wait}",
                    "-s", f"retry_timeout={retry}"], check=True, capture_output=True)
    wanted = {"ttl": ttl, "loop_wait": loop_wait, "retry_timeout": retry}
    end = time.monotonic() + 30
    while time.monotonic() < end:
        seen = []
        for site in ("A", "B"):
            port = cluster.state["ports"][f"rest-{site.lower()}"]
            try:
                seen.append(requests.get(f"http://127.0.0.1:{port}/config", timeout=2).json())
            except (requests.RequestException, ValueError):
                seen.append({})
        if all(all(c.get(k) == v for k, v in wanted.items()) for c in seen):
            time.sleep(2 * max(loop_wait, 2))  # a loop or two on the new values
            return wanted
        time.sleep(0.5)
    sys.exit(f"Patroni did not take --patroni-timing {spec} within 30 s")


def summarize(ledger: Ledger, kill_began: float, killed_at: float, ended_at: float,
              primary_at: float | None) -> dict[str, Any]:
    before = [o for o in ledger.ops if o.started < killed_at]
    after = [o for o in ledger.ops if o.started >= killed_at]
    # Whether the surviving node serves as soon as the new primary does: what
    # failed among the operations begun after Patroni's promotion was visible.
    late = [o for o in after if not o.ok and primary_at is not None and o.started >= primary_at]
    by_second: dict[int, int] = {}
    for o in after:
        if not o.ok:
            by_second[int(o.started - killed_at)] = by_second.get(int(o.started - killed_at),
                                                                  0) + 1
    # Recovered = logins succeed again and keep succeeding: the first successful
    # login begun after the last failed one (a login that slipped through on the
    # surviving node just before the database failed over does not count).
    logins = [o for o in after if o.kind == "login"]
    last_failed = max((o.started for o in logins if not o.ok), default=killed_at)
    recovered = sorted((o for o in logins if o.ok and o.started >= last_failed),
                       key=lambda o: o.ended)
    rto = round(recovered[0].ended - killed_at, 2) if recovered else None
    per_kind: dict[str, dict[str, int]] = {}
    for o in ledger.ops:
        k = per_kind.setdefault(o.kind, {"ok": 0, "failed": 0})
        k["ok" if o.ok else "failed"] += 1
    errors: dict[str, int] = {}
    for o in ledger.ops:
        if not o.ok:
            errors[o.detail[:60]] = errors.get(o.detail[:60], 0) + 1
    return {
        "dr_rto_seconds": rto,
        "dr_failed_requests": sum(1 for o in ledger.ops if not o.ok),
        "failed_before_kill": sum(1 for o in before if not o.ok),
        # of which begun while `fail-site` ran (it scans /proc, then signals)
        "failed_while_killing": sum(1 for o in before if not o.ok and o.started >= kill_began),
        "failed_after_kill": sum(1 for o in after if not o.ok),
        "last_failure_after_kill_s": round(max((o.ended for o in after if not o.ok),
                                               default=killed_at) - killed_at, 2),
        "primary_up_after_kill_s": (round(primary_at - killed_at, 2)
                                    if primary_at is not None else None),
        "failed_begun_after_primary_up": len(late),
        "failed_begun_after_primary_up_by_kind": {
            k: sum(1 for o in late if o.kind == k) for k in sorted({o.kind for o in late})},
        "failed_after_kill_by_second": dict(sorted(by_second.items())),
        "operations": per_kind,
        "acknowledged_issued": len(ledger.issued),
        "acknowledged_revoked": len(ledger.revoked),
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:8]),
        "load_seconds": round(ended_at - min((o.started for o in ledger.ops), default=0), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--steady", type=float, default=60.0)
    parser.add_argument("--after", type=float, default=60.0)
    parser.add_argument("--throughput-seconds", type=float, default=8.0)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/gt-dr"))
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--patroni-timing", metavar="TTL/LOOP/RETRY",
                        help="Patroni's ttl/loop_wait/retry_timeout for this run (default: "
                             "scripts/cluster's 10/2/4)")
    args = parser.parse_args()
    if args.dir.exists():
        subprocess.run([str(CLUSTER), "down", str(args.dir)], capture_output=True)
        shutil.rmtree(args.dir)
    cluster_mod = load_script("govtrust_cluster", CLUSTER)
    bench = load_script("govtrust_bench_idp", ROOT / "scripts" / "bench" / "idp.py")
    up = subprocess.run([str(CLUSTER), "up", str(args.dir)], capture_output=True, text=True)
    if up.returncode != 0:
        sys.exit(f"scripts/cluster up failed: {up.stderr[-2000:]}")
    status = json.loads(up.stdout)
    cluster = cluster_mod.Cluster(args.dir)
    home = Path(status["home"])
    env = dict(os.environ, GOVTRUST_HOME=str(home), PGPASSFILE=status["pgpassfile"])
    os.environ.update(PGPASSFILE=status["pgpassfile"], GOVTRUST_HOME=str(home))
    try:
        reg = json.loads(subprocess.run(
            [str(GOVTRUST), "--json", "client", "add", "--name", "dr-drill", "--redirect-uri",
             REDIRECT, "--level", "2", "--first-party"], env=env, capture_output=True,
            text=True, check=True).stdout)
        text = (home / "demo-accounts.txt").read_text(encoding="utf-8")
        conf = {"issuer": status["nginx"], "pki": status["pki"], "home": str(home),
                "ca": str(home / "idp" / "tls" / "ca.pem"), "client_id": reg["client_id"],
                "secret": reg["client_secret"],
                "people": re.findall(r"civil servant: (\S+) / (\S+)", text)}
        timing = (patroni_timing(cluster, args.patroni_timing) if args.patroni_timing
                  else {"ttl": cluster_mod.TTL, "loop_wait": cluster_mod.LOOP_WAIT,
                        "retry_timeout": cluster_mod.RETRY_TIMEOUT})
        work = args.dir / "bench"
        work.mkdir(exist_ok=True)
        per_nodes = throughput(cluster, bench, conf, args.throughput_seconds, work)
        print(json.dumps({"throughput_by_nodes": per_nodes}), flush=True)

        ledger = Ledger()
        load = Load(conf, ledger)
        loadavg = {"start": os.getloadavg()}
        threads = [threading.Thread(target=load.logins, args=(i,)) for i in range(2)]
        threads += [threading.Thread(target=load.grants),
                    threading.Thread(target=load.certificates)]
        for t in threads:
            t.start()
        time.sleep(args.steady)
        loadavg["kill"] = os.getloadavg()
        kill_began = time.monotonic()
        killed = subprocess.run([str(CLUSTER), "fail-site", "A", str(args.dir)],
                                capture_output=True, text=True)
        killed_at = time.monotonic()  # every SIGKILL has been sent
        primary_seen = watch_primary(cluster, "B", load.stop)
        print(f"fail-site A: {killed.stdout.strip()}", flush=True)
        time.sleep(args.after)
        load.stop.set()
        for t in threads:
            t.join(timeout=60)
        ended_at = time.monotonic()
        loadavg["end"] = os.getloadavg()
        result = summarize(ledger, kill_began, killed_at, ended_at,
                           primary_seen[0] if primary_seen else None)
        result["fail_site_seconds"] = round(killed_at - kill_began, 2)
        after_status = json.loads(subprocess.run([str(CLUSTER), "status", str(args.dir)],
                                                 capture_output=True, text=True).stdout)
        checks = verify(conf, ledger, env)
        result.update({
            "dr_lost_acknowledged": len(checks["lost"]),
            "lost": checks["lost"][:20],
            "serials_issued_twice": checks["serials_issued_twice"],
            "certificates_in_inventory": checks["certificates_in_inventory"],
            "unacknowledged_in_inventory": checks["unacknowledged_in_inventory"],
            "audit_verify": checks["audit_verify"],
            "primary_after": after_status["primary"],
            "directory_after": after_status["directory"],
            "duties_after": after_status["duties"],
            "patroni_timing": timing,
            "load_average": {k: [round(x, 2) for x in v] for k, v in loadavg.items()},
            "throughput_by_nodes": per_nodes,
            "cores": len(os.sched_getaffinity(0)),
        })
        (args.dir / "dr.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
        for key in ("dr_rto_seconds", "dr_failed_requests", "dr_lost_acknowledged",
                    "serials_issued_twice"):
            print(f"{key}: {result[key]}")
        print(json.dumps(result, indent=2, ensure_ascii=False))
    finally:
        if not args.keep:
            subprocess.run([str(CLUSTER), "down", str(args.dir)], capture_output=True)


if __name__ == "__main__":
    main()
