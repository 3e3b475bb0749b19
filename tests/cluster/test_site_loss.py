"""Duties done once across the rehearsal's three nodes, and taken over when a site
is lost (issue 10): every duty's PostgreSQL advisory lock is held by exactly one
``govtrust node``, and after ``fail-site A`` the site-B node holds them all.

Who holds what is read from the primary's ``pg_locks`` (``scripts/cluster
status``: each node's sessions carry ``application_name=govtrust-node-NAME``).
This file runs after test_failover.py (file order) because losing site A is
final for the session's cluster.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.cluster.conftest import Rehearsal

pytestmark = pytest.mark.cluster

NODES = {"a1", "a2", "b1"}
# Taking a free lock is one node tick (1 s) after the holder's session ends; a
# killed node's session ends at once (the kernel closes its sockets).
TAKEOVER_SECONDS = 5.0
# When the lost site also held the primary, Patroni first promotes site B (about
# its ttl of 10 s; TOOLS.md), then the lock is one tick away.
FAILOVER_SECONDS = 30.0


def duties(rehearsal: Rehearsal) -> tuple[str | None, dict[str, list[str]]]:
    status = rehearsal.current()
    return status["primary"], dict(status["duties"])


def wait_for(check: Any, seconds: float) -> Any:
    end = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > end:
            return result
        time.sleep(0.3)


def granted(rehearsal: Any) -> bool:
    try:
        return bool(rehearsal.grant().status_code == 200)
    except requests.RequestException:
        return False


def refuses(url: str) -> bool:
    host, _, port = url.rpartition("/")[2].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
    except OSError:
        return True
    return False


def test_each_duty_is_held_by_exactly_one_node(rehearsal: Rehearsal) -> None:
    def settled() -> dict[str, list[str]] | None:
        _primary, held = duties(rehearsal)
        return held if held and all(len(h) == 1 for h in held.values()) else None

    # After the earlier tests' switchover, the nodes re-take the locks within a tick.
    assert wait_for(settled, 15), duties(rehearsal)
    for _ in range(3):  # and it stays so: nobody takes a lock it does not hold
        _primary, held = duties(rehearsal)
        assert set(held) >= {"outbox", "pki-refresh", "logout-retries", "key-rotation"}
        for duty, holders in held.items():
            assert len(holders) == 1, (duty, holders)
            assert holders[0] in NODES, (duty, holders)
        time.sleep(1.0)


# timing of a real Patroni promotion on 2 shared cores (one miss in 4 runs)
@pytest.mark.flaky(reruns=2, reruns_delay=2)
def test_after_losing_site_a_the_site_b_node_takes_the_duties_over(
        rehearsal: Rehearsal) -> None:
    primary, held = duties(rehearsal)
    if not any(h and h[0] in ("a1", "a2") for h in held.values()):
        # b1 holds everything (it re-took the locks first after the switchover):
        # give site A the duties, or losing it would prove nothing. Kill b1, let
        # site A's nodes take over, then start b1 again the way `up` did.
        b1 = rehearsal.processes()["b1"]["pid"]
        kill_node(b1)
        assert wait_for(lambda: refuses(rehearsal.current()["nodes"]["b1"]["url"]), 10)
        assert wait_for(lambda: all(h and h[0] in ("a1", "a2") for h in duties(rehearsal)[1]
                                    .values()), TAKEOVER_SECONDS + 5), duties(rehearsal)
        restart_b1(rehearsal)
        primary, held = duties(rehearsal)
    on_a = sorted(d for d, h in held.items() if h and h[0] in ("a1", "a2"))
    assert on_a, held

    killed = rehearsal.run("fail-site", "A")
    assert killed.returncode == 0, killed.stderr
    lost_at = time.monotonic()
    status = rehearsal.current()
    assert not status["nodes"]["a1"]["up"] and not status["nodes"]["a2"]["up"]
    for name in ("a1", "a2"):  # the gunicorn went with its supervisor
        assert wait_for(lambda n=name: refuses(status["nodes"][n]["url"]), 5), name

    limit = TAKEOVER_SECONDS if primary == "pg-b" else FAILOVER_SECONDS

    def all_on_b1() -> bool:
        held = duties(rehearsal)[1]
        return bool(held) and all(h == ["b1"] for h in held.values())

    taken = wait_for(all_on_b1, limit)
    elapsed = time.monotonic() - lost_at
    assert taken, (duties(rehearsal), elapsed)
    assert elapsed <= limit
    # And the survivor serves through nginx.
    # within the RTO the issue asks for (30 s): a request may hang on a dead
    # connection or get a 503 until the new primary is up (the drill measured 10-11 s)
    assert wait_for(lambda: granted(rehearsal), 30)


def kill_node(pid: int) -> None:
    """SIGKILL a node's supervisor and its gunicorn's process group (its children)."""
    children = [int(c) for c in
                Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for group in [pid, *children]:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def restart_b1(rehearsal: Rehearsal) -> None:
    """Start node b1 again as ``scripts/cluster up`` did (its script, imported)."""
    import importlib.machinery
    import importlib.util
    import sys

    from tests.cluster.conftest import CLUSTER

    loader = importlib.machinery.SourceFileLoader("govtrust_cluster", str(CLUSTER))
    spec = importlib.util.spec_from_loader("govtrust_cluster", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("govtrust_cluster", module)
    loader.exec_module(module)
    cluster = module.Cluster(rehearsal.dir)
    cluster.start_node("b1", "B")
    assert wait_for(lambda: cluster.node_up("b1"), 60)
    assert json.loads((rehearsal.dir / "cluster.json").read_text())["processes"]["b1"]
