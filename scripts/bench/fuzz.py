#!/usr/bin/env python3
"""Fuzz every parser that meets the outside (tests/fuzz/targets.py) for N inputs each.

Each target runs in ``--jobs`` processes at once (one per core by default), each
with its own temporary CA/IdP home and database and its share of the inputs: with
atheris (coverage-guided libFuzzer, ``pip install -e .[fuzz]``; each process its
own ``-seed``) when it imports, else with a mutation loop over the target's seed
corpus (byte flips, inserts, cuts, splices, random bytes). A crash is any
exception other than the parser's typed error, or a 5xx from an HTTP surface; it
is counted, the run goes on, and the first few inputs of each process are written
to ``--crash-dir`` so each becomes a named regression test. The counts of the
processes are summed; the rate is all inputs over the longest process's time.

Prints, per target (and a ``# progress`` line a minute while it runs)::

    fuzz_<target>_crashes: N count
    fuzz_<target>_rate: X inputs/s

and, for the HTTP targets, how their requests were answered (``# answered``):
the share that reached the code under test rather than a throttle or a redirect.

    scripts/bench/fuzz.py [--inputs 1000000] [--target NAME] [--jobs N]
                          [--engine atheris|mutate]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
KEEP_CRASHES = 5
PROGRESS_SECONDS = 60


class Counter:
    """Counts inputs and crashes; keeps the first crashing inputs on disk and writes
    its figures to ``result`` now and then, so a long run shows its progress."""

    def __init__(self, name: str, total: int, crash_dir: Path, result: Path,
                 statuses: dict[str, int]) -> None:
        self.name, self.total, self.crash_dir, self.result = name, total, crash_dir, result
        self.statuses = statuses
        self.done = self.crashes = 0
        self.started = self.written = time.monotonic()
        self.kinds: dict[str, int] = {}

    def run(self, target: object, data: bytes) -> None:
        try:
            target(data)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - anything escaping a target is a crash
            self.crashes += 1
            kind = f"{type(exc).__name__}: {str(exc)[:80]}"
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            if self.crashes <= KEEP_CRASHES:
                self.crash_dir.mkdir(parents=True, exist_ok=True)
                stem = self.crash_dir / f"{self.name}-{self.crashes}"
                stem.with_suffix(".bin").write_bytes(data)
                stem.with_suffix(".txt").write_text(traceback.format_exc())
        self.done += 1
        if self.done % 256 == 0 and time.monotonic() - self.written > PROGRESS_SECONDS / 2:
            self.write(finished=False)

    def write(self, finished: bool) -> None:
        now = time.monotonic()
        self.written = now
        partial = self.result.with_suffix(".tmp")
        partial.write_text(json.dumps({
            "inputs": self.done, "crashes": self.crashes, "seconds": now - self.started,
            "kinds": self.kinds, "statuses": dict(self.statuses), "finished": finished}))
        partial.replace(self.result)  # the parent never reads half a file

    def finish(self) -> None:
        self.write(finished=True)


def mutate(rng: random.Random, corpus: list[bytes]) -> bytes:
    if rng.random() < 0.05:
        return rng.randbytes(rng.randrange(0, 256))
    data = bytearray(rng.choice(corpus))
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[at % len(data)] = rng.randrange(256)
        elif op == 1:
            data[at:at] = rng.randbytes(rng.randrange(1, 8))
        elif op == 2:
            del data[at:at + rng.randrange(1, 16)]
        elif op == 3 and data:  # a length or tag byte at its interesting values
            data[at % len(data)] = rng.choice((0x00, 0x7F, 0x80, 0x81, 0x82, 0xFF))
        else:  # splice in a piece of another seed
            other = rng.choice(corpus)
            start = rng.randrange(len(other) + 1)
            data[at:at] = other[start:start + rng.randrange(1, 64)]
    return bytes(data)


def child(name: str, total: int, engine: str, crash_dir: Path, result: Path,
          job: int) -> None:
    """Runs inside one of the target's processes: ``total`` is this process's share."""
    if engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=["pki", "directory", "idp", "policies",
                                                 "tests.fuzz"]):
            from tests.fuzz import targets
    else:
        from tests.fuzz import targets
    target = targets.TARGETS[name]
    corpus = targets.seeds(name)
    for seed in corpus:  # builds the lazy CA/IdP before the clock starts
        target(seed)
    targets.STATUSES.clear()  # the seeds' answers are not the run's
    counter = Counter(f"{name}-{job}", total, crash_dir, result, targets.STATUSES)
    if engine == "atheris":
        def one(data: bytes) -> None:
            counter.run(target, data)
            if counter.done >= total:
                counter.finish()
                os._exit(0)  # libFuzzer never returns; the figures are written

        seed_dir = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
        for i, seed in enumerate(corpus):
            (seed_dir / f"seed{i}").write_bytes(seed)
        atheris.Setup([sys.argv[0], "-max_len=4096", "-rss_limit_mb=4096",
                       f"-seed={job + 1}", str(seed_dir)], one)
        atheris.Fuzz()
    rng = random.Random(int.from_bytes(name.encode(), "big") % (1 << 32) + job)
    while counter.done < total:
        counter.run(target, mutate(rng, corpus))
    counter.finish()


def shares(total: int, jobs: int) -> list[int]:
    """``total`` inputs cut into ``jobs`` shares that differ by at most one."""
    return [total // jobs + (i < total % jobs) for i in range(jobs)]


def read(result: Path) -> dict[str, Any] | None:
    try:
        return json.loads(result.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def summed(figures: list[dict[str, Any]]) -> dict[str, Any]:
    """The processes' figures as one run's: counts added, the longest time."""
    total: dict[str, Any] = {"inputs": 0, "crashes": 0, "seconds": 0.0, "kinds": {},
                             "statuses": {}}
    for f in figures:
        total["inputs"] += f["inputs"]
        total["crashes"] += f["crashes"]
        total["seconds"] = max(total["seconds"], f["seconds"])
        for key in ("kinds", "statuses"):
            for kind, n in f.get(key, {}).items():
                total[key][kind] = total[key].get(kind, 0) + n
    return total


def run_target(name: str, args: argparse.Namespace, engine: str) -> dict[str, Any] | None:
    """Runs ``name`` in ``args.jobs`` processes; their summed figures, or None if a
    process died without writing its figures."""
    quiet = subprocess.DEVNULL if engine == "atheris" else None
    with tempfile.TemporaryDirectory() as tmp:
        results = [Path(tmp) / f"result-{job}.json" for job in range(args.jobs)]
        procs = [subprocess.Popen(
            [sys.executable, __file__, "--child", name, "--job", str(job),
             "--inputs", str(share), "--engine", engine, "--crash-dir", str(args.crash_dir),
             "--result", str(result)],
            cwd=ROOT, stdout=quiet, stderr=quiet)
            for job, (share, result) in enumerate(zip(shares(args.inputs, args.jobs), results,
                                                      strict=True)) if share]
        last = time.monotonic()
        while any(p.poll() is None for p in procs):
            time.sleep(1)
            if time.monotonic() - last >= PROGRESS_SECONDS:
                last = time.monotonic()
                now = summed([f for r in results if (f := read(r)) is not None])
                rate = now["inputs"] / max(now["seconds"], 1e-9)
                print(f"# progress: {name} {now['inputs']}/{args.inputs} inputs, "
                      f"{now['crashes']} crashes, {rate:.0f} inputs/s", flush=True)
        figures = [read(r) for r in results[:len(procs)]]
        for proc, f in zip(procs, figures, strict=True):
            if f is None or not f.get("finished"):
                print(f"# {name}: a fuzzing process exited {proc.returncode} "
                      "without its figures", flush=True)
                return None
        return summed([f for f in figures if f is not None])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--target", action="append", help="one target (repeatable); all "
                        "by default")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes per target, each with its share of the inputs "
                        "(default: one per core)")
    parser.add_argument("--engine", choices=("atheris", "mutate"), default=None)
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--job", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jobs < 1 or args.inputs < 1:
        parser.error("--jobs and --inputs must be at least 1")
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "mutate"
    if args.child:
        child(args.child, args.inputs, engine, args.crash_dir, args.result, args.job)
        return 0

    from tests.fuzz.targets import TARGETS

    names = args.target or sorted(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; known: {sorted(TARGETS)}")
    print(f"# engine: {engine}, {args.inputs} inputs per target, {args.jobs} processes "
          "each", flush=True)
    failed = 0
    for name in names:
        figures = run_target(name, args, engine)
        if figures is None:
            failed += 1
            continue
        rate = figures["inputs"] / max(figures["seconds"], 1e-9)
        print(f"# {name}: {figures['inputs']} inputs in {figures['seconds']:.0f} s")
        print(f"fuzz_{name}_crashes: {figures['crashes']} count")
        print(f"fuzz_{name}_rate: {rate:.0f} inputs/s", flush=True)
        for kind, n in sorted(figures["kinds"].items(), key=lambda kv: -kv[1])[:5]:
            print(f"#   {n} x {kind}")
        if figures["statuses"]:
            print("# answered: " + ", ".join(
                f"{what} {n}" for what, n in sorted(figures["statuses"].items())), flush=True)
        failed += figures["crashes"] > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
