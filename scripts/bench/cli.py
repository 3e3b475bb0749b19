#!/usr/bin/env python3
"""Benchmark the ``govtrust`` command's start-up: what an operator scripting a
thousand issuances pays per call.

    scripts/bench/cli.py [--runs 10] [--issue] [--home /dev/shm/govtrust-bench-cli]

Times ``govtrust --help``, ``govtrust cert --help`` and ``govtrust cert issue
--help`` (and, with ``--issue``, a real ``govtrust cert issue --csr`` against a
demo home while ``govtrust serve`` runs, so the command finds slapd up), each
beside the interpreter's own start-up (``python -c pass``) in the same run. For
each: the median wall time and the median CPU time (user + system of the child,
less sensitive to other load on the machine than wall time) over ``--runs``.
Prints ``name: value unit`` lines.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

# scripts/bench/idp.py under another name (``idp`` is the product's package).
_spec = importlib.util.spec_from_file_location("bench_idp", Path(__file__).with_name("idp.py"))
assert _spec is not None and _spec.loader is not None
bench_idp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_idp)
GOVTRUST, ROOT, Server = bench_idp.GOVTRUST, bench_idp.ROOT, bench_idp.Server

PYTHON = str(ROOT / ".venv" / "bin" / "python")


def timed(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``cmd`` over ``runs`` runs (one warm-up first,
    so every run reads the files from the page cache)."""
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def report(name: str, wall: float, cpu: float, base: tuple[float, float]) -> None:
    print(f"{name}_wall: {wall:.3f} s")
    print(f"{name}_cpu: {cpu:.3f} s")
    print(f"{name}_vs_python_startup: {cpu / base[1]:.1f} ratio (cpu)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--issue", action="store_true",
                        help="also time a real cert issue (inits a demo home, runs serve)")
    parser.add_argument("--home", type=Path, default=Path("/dev/shm/govtrust-bench-cli"))
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT), GOVTRUST_HOME=str(args.home))

    base = timed([PYTHON, "-c", "pass"], env, args.runs)
    print(f"runs: {args.runs} each (median)")
    report("python_startup", *base, base)
    for name, argv in (("govtrust_help", ["--help"]), ("cert_help", ["cert", "--help"]),
                       ("cert_issue_help", ["cert", "issue", "--help"])):
        report(name, *timed([*GOVTRUST, *argv], env, args.runs), base)
    if not args.issue:
        return
    server = Server(args.home)
    work = Path(tempfile.mkdtemp(prefix="govtrust-bench-cli-"))
    try:
        server.start()
        uid = server.people()[0][0]
        key, csr = work / "k.pem", work / "r.csr"
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
                        "-subj", "/CN=ignored", "-out", str(csr)],
                       check=True, capture_output=True)
        wall, cpu = timed([*GOVTRUST, "cert", "issue", "--uid", uid, "--profile",
                           "user-auth", "--csr", str(csr)], server.env, args.runs)
        report("cert_issue", wall, cpu, base)
        listed = server.govtrust("cert", "list", "--uid", uid)
        print(f"cert_issue_recorded: {len(re.findall(r'(?m)^[0-9a-f]{16,}', listed))} "
              "certificates listed for the uid")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(args.home, ignore_errors=True)


if __name__ == "__main__":
    main()
