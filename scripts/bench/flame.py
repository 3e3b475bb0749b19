#!/usr/bin/env python3
"""Flame graphs of the IdP's hot paths under load (py-spy, SVG).

Starts ``govtrust serve`` as ``idp.py`` does (fresh demo home, TLS, workers as
configured), drives one path at a time with the same load clients, and records
every IdP worker with ``py-spy record --subprocesses`` while it runs. One SVG per
path: ``OUT/<path>-<label>.svg``. Prints ``name: value unit`` lines (the rate
reached while profiled, which is lower than unprofiled: py-spy samples from
outside the process, but it shares the cores).

    scripts/bench/flame.py --label before [--out docs/perf] [--duration 10]
        [--paths client_credentials,introspection,refresh,refresh_wrk,login,ocsp,issuance]
        [--idle]

``ocsp`` records the PKI's workers while ``wrk`` POSTs one OCSP request (no
nonce: the kept answer) for a certificate ``govtrust cert issue`` made;
``issuance`` records a child process issuing ``--issue`` certificates from CSRs
in a loop on its own SQLite CA (``scripts/bench/pki.py``'s ``make_ca``), the
durable path of ``pki.py``'s issuance figure. Both run against whatever checkout
the script sits in, so an older commit's tree gives the "before" graph.

``refresh_wrk`` drives refresh grants with wrk, as ``idp.py``'s figure of that name
does. ``--idle`` also records threads that wait (on a lock, in SQLite's busy
handler, on a socket): py-spy leaves them out by default, so without it a path
that queues shows only its CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
_spec = importlib.util.spec_from_file_location("bench_idp", HERE / "idp.py")
assert _spec and _spec.loader
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_idp"] = bench
_spec.loader.exec_module(bench)

PATHS = ("client_credentials", "introspection", "refresh", "refresh_wrk", "login", "ocsp",
         "issuance")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def master_of(server: Any, app: str) -> int:
    """The server process (gunicorn master or granian) of ``app`` (``idp_app`` or
    ``pki_app``): the one whose parent is ``govtrust serve``."""
    assert server.proc is not None
    out = subprocess.run(["pgrep", "-f", app], capture_output=True, text=True)
    for pid in (int(p) for p in out.stdout.split()):
        try:
            if _parent(pid) == server.proc.pid:
                return pid
        except OSError:
            continue
    raise RuntimeError(f"no {app} server found")


def pki_url(server: Any) -> str:
    """The PKI's base URL (an older bench's Server has only its environment)."""
    return getattr(server, "pki_url", None) or "http://" + server.env["GOVTRUST_PKI_LISTEN"]


def _pki_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_pki", HERE / "pki.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_pki"] = module
    spec.loader.exec_module(module)
    return module


def ocsp_body(server: Any, work: Path) -> bytes:
    """An OCSP request (SHA-1 CertID, no nonce) for a certificate issued here."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import ocsp

    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, hashes.SHA256())
    (work / "flame.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    uid = server.people()[0][0]
    server.govtrust("cert", "issue", "--uid", uid, "--profile", "user-auth", "--csr",
                    str(work / "flame.csr"), "--out", str(work / "flame.pem"))
    cert = x509.load_pem_x509_certificate((work / "flame.pem").read_bytes())
    issuer = x509.load_pem_x509_certificate(requests.get(
        pki_url(server) + "/ca/issuing.pem", timeout=10).content)
    return ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build() \
        .public_bytes(serialization.Encoding.DER)


def wrk_ocsp(url: str, body: bytes, concurrency: int, duration: float,
             work: Path) -> dict[str, float]:
    script = _pki_bench().lua_post(work / "ocsp.lua", body)
    out = subprocess.run(["wrk", "-t2", f"-c{concurrency}", f"-d{int(duration)}s", "-s",
                          str(script), url], capture_output=True, text=True).stdout
    rate = next((float(line.split()[1]) for line in out.splitlines()
                 if line.startswith("Requests/sec:")), 0.0)
    return {"rate": rate}


def issuance_child(n: int) -> None:
    """Issue ``n`` certificates from CSRs on a fresh SQLite CA, as pki.py does."""
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pki = _pki_bench()
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(20)]
    csrs = [x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
            .sign(keys[i % 20], hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
            for i in range(n)]
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        ca, _ = pki.make_ca(Path(tmp))
        p = pki.person(0)
        started = time.perf_counter()
        for csr in csrs:
            ca.issue_from_csr(p, "user-auth", csr, actor="bench")
        print(f"{n / (time.perf_counter() - started):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="before, after, ... (file suffix)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "perf")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--home", type=Path, default=Path("/dev/shm/govtrust-flame"))
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--idle", action="store_true",
                        help="also sample waiting threads (py-spy --idle)")
    parser.add_argument("--issue", type=int, default=3000,
                        help="certificates the issuance path issues")
    parser.add_argument("--child-issuance", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_issuance:
        issuance_child(args.child_issuance)
        return
    pyspy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not Path(pyspy).exists():
        sys.exit("flame.py needs py-spy: .venv/bin/pip install -e '.[bench]'")
    args.out.mkdir(parents=True, exist_ok=True)
    server = bench.Server(args.home)
    try:
        server.start()
        reg = json.loads(server.govtrust("--json", "client", "add", "--name", "flame",
                                         "--redirect-uri", bench.REDIRECT, "--level", "2",
                                         "--first-party"))
        auth = (reg["client_id"], reg["client_secret"])
        conf = {"issuer": server.issuer, "ca": server.ca, "client_id": auth[0],
                "secret": auth[1], "people": server.people()}
        token = requests.post(server.issuer + "/token",
                              data={"grant_type": "client_credentials"}, auth=auth,
                              verify=server.ca).json()["access_token"]
        work = args.home / "flame"
        work.mkdir(exist_ok=True)
        masters = {"idp": master_of(server, "idp_app"), "pki": master_of(server, "pki_app")}
        for path in args.paths.split(","):
            svg = args.out / f"{path}-{args.label}.svg"
            if path == "issuance":
                spy_run = subprocess.run(
                    [pyspy, "record", "--rate", str(args.rate), "--format", "flamegraph",
                     "--output", str(svg), "--nonblocking", "--",
                     str(ROOT / ".venv" / "bin" / "python"), __file__, "--label", args.label,
                     "--child-issuance", str(args.issue)],
                    capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
                # py-spy writes its own lines to the same stdout: the child's is a number.
                rate = next((line for line in reversed(spy_run.stdout.splitlines())
                             if line.replace(".", "", 1).isdigit()), "?")
                print(f"flame_issuance_{args.label}: {rate} per s while profiled ({svg.name})")
                continue
            master = masters["pki" if path == "ocsp" else "idp"]
            # Refresh workers log in first: record from when the load is steady.
            delay = (2.0 + 0.2 * args.concurrency if path in ("refresh", "refresh_wrk")
                     else 0.3)
            cmd = [pyspy, "record", "--pid", str(master), "--subprocesses", "--rate",
                   str(args.rate), "--duration", str(int(args.duration) - 1), "--format",
                   "flamegraph", "--output", str(svg), "--nonblocking",
                   *(["--idle"] if args.idle else [])]
            spies: list[subprocess.Popen[str]] = []

            def record(cmd: list[str] = cmd, spies: list[subprocess.Popen[str]] = spies) -> None:
                spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.PIPE, text=True))

            timer = threading.Timer(delay, record)
            timer.start()
            if path == "ocsp":
                f = wrk_ocsp(pki_url(server) + "/ocsp", ocsp_body(server, work),
                             args.concurrency, args.duration, work)
            elif path == "client_credentials":
                f = bench.wrk_load(server.issuer + "/token", "grant_type=client_credentials",
                                   auth, args.concurrency, args.duration, work)
            elif path == "introspection":
                f = bench.wrk_load(server.issuer + "/introspect", f"token={token}", auth,
                                   args.concurrency, args.duration, work)
            elif path == "refresh_wrk":
                f = bench.wrk_refresh(conf, args.concurrency, args.duration, work)
            else:
                f = bench.python_load(path, conf, args.concurrency, args.duration)
            timer.join()
            spy = spies[0]
            _, err = spy.communicate(timeout=args.duration + 120)
            if spy.returncode != 0:
                print(f"py-spy failed for {path}: {err.strip()[-400:]}", file=sys.stderr)
            print(f"flame_{path}_{args.label}: {f['rate']:.1f} per s while profiled "
                  f"({args.concurrency} clients; {svg.name})")
    finally:
        server.stop()
        shutil.rmtree(args.home, ignore_errors=True)


if __name__ == "__main__":
    main()
