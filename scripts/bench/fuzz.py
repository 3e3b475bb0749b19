#!/usr/bin/env python3
"""Fuzz every parser that meets the outside (tests/fuzz/targets.py) for N inputs each.

Each target runs in its own process: with atheris (coverage-guided libFuzzer,
``pip install -e .[fuzz]``) when it imports, else with a mutation loop over the
target's seed corpus (byte flips, inserts, cuts, splices, random bytes). A crash
is any exception other than the parser's typed error, or a 5xx from an HTTP
surface; it is counted, the run goes on, and the first few inputs are written to
``--crash-dir`` so each becomes a named regression test.

Prints, per target::

    fuzz_<target>_crashes: N count
    fuzz_<target>_rate: X inputs/s

    scripts/bench/fuzz.py [--inputs 1000000] [--target NAME] [--engine atheris|mutate]
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
KEEP_CRASHES = 5


class Counter:
    """Counts inputs and crashes; keeps the first crashing inputs on disk."""

    def __init__(self, name: str, total: int, crash_dir: Path, result: Path) -> None:
        self.name, self.total, self.crash_dir, self.result = name, total, crash_dir, result
        self.done = self.crashes = 0
        self.started = time.monotonic()
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

    def finish(self) -> None:
        elapsed = time.monotonic() - self.started
        self.result.write_text(json.dumps({
            "inputs": self.done, "crashes": self.crashes, "seconds": elapsed,
            "kinds": self.kinds}))


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


def child(name: str, total: int, engine: str, crash_dir: Path, result: Path) -> None:
    """Runs inside the target's process."""
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
    counter = Counter(name, total, crash_dir, result)
    if engine == "atheris":
        def one(data: bytes) -> None:
            counter.run(target, data)
            if counter.done >= total:
                counter.finish()
                os._exit(0)  # libFuzzer never returns; the figures are written

        seed_dir = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
        for i, seed in enumerate(corpus):
            (seed_dir / f"seed{i}").write_bytes(seed)
        atheris.Setup([sys.argv[0], "-max_len=4096", "-rss_limit_mb=4096", str(seed_dir)],
                      one)
        atheris.Fuzz()
    rng = random.Random(int.from_bytes(name.encode(), "big") % (1 << 32))
    while counter.done < total:
        counter.run(target, mutate(rng, corpus))
    counter.finish()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--target", action="append", help="one target (repeatable); all "
                        "by default")
    parser.add_argument("--engine", choices=("atheris", "mutate"), default=None)
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "mutate"
    if args.child:
        child(args.child, args.inputs, engine, args.crash_dir, args.result)
        return 0

    from tests.fuzz.targets import TARGETS

    names = args.target or sorted(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; known: {sorted(TARGETS)}")
    print(f"# engine: {engine}, {args.inputs} inputs per target", flush=True)
    failed = 0
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            result = Path(tmp) / "result.json"
            proc = subprocess.run(
                [sys.executable, __file__, "--child", name, "--inputs", str(args.inputs),
                 "--engine", engine, "--crash-dir", str(args.crash_dir),
                 "--result", str(result)],
                cwd=ROOT, stdout=subprocess.DEVNULL if engine == "atheris" else None,
                stderr=subprocess.DEVNULL if engine == "atheris" else None, check=False)
            if not result.exists():
                print(f"# {name}: the fuzzing process exited {proc.returncode} "
                      "without its figures", flush=True)
                failed += 1
                continue
            figures = json.loads(result.read_text())
        rate = figures["inputs"] / max(figures["seconds"], 1e-9)
        print(f"fuzz_{name}_crashes: {figures['crashes']} count")
        print(f"fuzz_{name}_rate: {rate:.0f} inputs/s", flush=True)
        for kind, n in sorted(figures["kinds"].items(), key=lambda kv: -kv[1])[:5]:
            print(f"#   {n} x {kind}")
        failed += figures["crashes"] > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
