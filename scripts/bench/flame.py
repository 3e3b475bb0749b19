#!/usr/bin/env python3
"""Flame graphs of the IdP's hot paths under load (py-spy, SVG).

Starts ``govtrust serve`` as ``idp.py`` does (fresh demo home, TLS, workers as
configured), drives one path at a time with the same load clients, and records
every IdP worker with ``py-spy record --subprocesses`` while it runs. One SVG per
path: ``OUT/<path>-<label>.svg``. Prints ``name: value unit`` lines (the rate
reached while profiled, which is lower than unprofiled: py-spy samples from
outside the process, but it shares the cores).

    scripts/bench/flame.py --label before [--out docs/perf] [--duration 10]
                           [--paths client_credentials,introspection,refresh,login]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
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

PATHS = ("client_credentials", "introspection", "refresh", "login")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def idp_master(server: Any) -> int:
    """The IdP gunicorn master: the ``idp_app`` process whose parent is ``govtrust serve``."""
    assert server.proc is not None
    out = subprocess.run(["pgrep", "-f", "idp_app"], capture_output=True, text=True)
    for pid in (int(p) for p in out.stdout.split()):
        try:
            if _parent(pid) == server.proc.pid:
                return pid
        except OSError:
            continue
    raise RuntimeError("no IdP gunicorn found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="before, after, ... (file suffix)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "perf")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--home", type=Path, default=Path("/dev/shm/govtrust-flame"))
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args()
    pyspy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
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
        master = idp_master(server)
        for path in args.paths.split(","):
            svg = args.out / f"{path}-{args.label}.svg"
            # Refresh workers log in first: record from when the load is steady.
            delay = 2.0 + 0.2 * args.concurrency if path == "refresh" else 0.3
            cmd = [pyspy, "record", "--pid", str(master), "--subprocesses", "--rate",
                   str(args.rate), "--duration", str(int(args.duration) - 1), "--format",
                   "flamegraph", "--output", str(svg), "--nonblocking"]
            spies: list[subprocess.Popen[str]] = []

            def record(cmd: list[str] = cmd, spies: list[subprocess.Popen[str]] = spies) -> None:
                spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.PIPE, text=True))

            timer = threading.Timer(delay, record)
            timer.start()
            if path == "client_credentials":
                f = bench.wrk_load(server.issuer + "/token", "grant_type=client_credentials",
                                   auth, args.concurrency, args.duration, work)
            elif path == "introspection":
                f = bench.wrk_load(server.issuer + "/introspect", f"token={token}", auth,
                                   args.concurrency, args.duration, work)
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
