"""Failover under a running node: a Patroni switchover and a lost slapd provider,
each survived through nginx with no node restarted (the rehearsal of issue 10).

The tests run in file order on one cluster; each leaves it serving.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.cluster.conftest import Rehearsal

pytestmark = pytest.mark.cluster


def wait_until(check: object, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_rehearsal_starts_with_site_a_primary_and_everything_up(rehearsal: Rehearsal) -> None:
    status = rehearsal.current()
    assert status["primary"] == "pg-a"
    assert status["database"]["pg-b"]["role"] == "sync_standby"
    assert set(status["directory"].values()) == {"up"}
    assert all(node["up"] for node in status["nodes"].values())
    uid, password = rehearsal.people[0]
    assert "id_token" in rehearsal.login(uid, password)


def test_switchover_under_a_running_node_needs_no_restart(rehearsal: Rehearsal) -> None:
    nodes_before = {name: p["pid"] for name, p in rehearsal.processes().items()
                    if name[:2] in ("a1", "a2", "b1")}
    conf = rehearsal.dir / "site-a" / "pg" / "patroni.yml"
    switch = subprocess.Popen(["patronictl", "-c", str(conf), "switchover", "govtrust",
                               "--leader", "pg-a", "--candidate", "pg-b", "--force"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Grants through nginx while the primary moves: each is served or answered 503
    # (a cut transaction), never a 500 or a hang.
    statuses: list[int] = []
    end = time.monotonic() + 40
    while time.monotonic() < end:
        statuses.append(rehearsal.grant().status_code)
        if switch.poll() is not None and rehearsal.current()["primary"] == "pg-b" \
                and statuses[-1] == 200:
            break
        time.sleep(0.1)
    out = switch.communicate(timeout=30)[0]
    assert switch.returncode == 0, out
    assert rehearsal.current()["primary"] == "pg-b"
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[-1] == 200
    # Grants and logins work on the new primary, from the same node processes.
    assert wait_until(lambda: rehearsal.grant().status_code == 200, 10)
    uid, password = rehearsal.people[1]
    assert "id_token" in rehearsal.login(uid, password)
    nodes_after = {name: p["pid"] for name, p in rehearsal.processes().items()
                   if name[:2] in ("a1", "a2", "b1")}
    assert nodes_after == nodes_before
    for pid in nodes_after.values():
        os.kill(pid, 0)  # still the same, still alive


def test_losing_one_slapd_provider_keeps_logins_working(rehearsal: Rehearsal) -> None:
    slapd_a = rehearsal.processes()["slapd-a"]["pid"]
    os.kill(slapd_a, signal.SIGKILL)
    assert wait_until(lambda: list(rehearsal.current()["directory"].values()) == ["down", "up"],
                      10)
    # The gateway fails over to provider B's URI; every person can still log in.
    for uid, password in rehearsal.people[:3]:
        assert "id_token" in rehearsal.login(uid, password)
