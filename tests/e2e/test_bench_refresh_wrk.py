"""scripts/bench/idp.py's ``refresh_wrk`` figure: wrk's Lua script keeps one live
refresh token per connection, so every request of the run is a successful
rotation (a lost or replayed token would show as 400s, and a replay would also
revoke its family). On the serve shape, with real servers."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from tests.fixtures.bench import load_bench

pytestmark = [pytest.mark.slapd]


def _load() -> ModuleType:
    return load_bench("idp.py", "bench_idp")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_every_wrk_refresh_rotates_a_live_token() -> None:
    bench = _load()
    base = Path("/dev/shm") / f"govtrust-test-refresh-wrk-{os.getpid()}"
    with bench.shapes.shape("serve", base) as shape:  # one shape for both runs
        reg = json.loads(shape.govtrust("--json", "client", "add", "--name", "wrk",
                                        "--redirect-uri", bench.REDIRECT, "--level", "2",
                                        "--first-party"))
        conf = {"issuer": shape.issuer, "ca": shape.ca, "client_id": reg["client_id"],
                "secret": reg["client_secret"], "people": shape.people()}
        for concurrency in (1, 4):
            result = bench.wrk_refresh(conf, concurrency, 1, shape.work)
            assert result["errors"] == 0, concurrency
            assert result["rate"] > 0, concurrency
