"""``govtrust serve`` keeps its children alive by one rule: a dead child is
restarted with backoff (logged), and one that keeps dying makes serve exit
non-zero. Real processes, killed with SIGKILL.

The three serve tests share one ``govtrust serve`` (starting one costs seconds)
with ``[serve] restart_limit = 1``: each child may die once; they run in file
order, and the last one makes serve give up.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from idp.runtime.config import Config, ConfigError
from idp.runtime.serve import Children, GaveUp, ProcessChild, RestartPolicy, refuse_taken
from tests.fixtures.served import DemoHome, Served

pytestmark = pytest.mark.slapd


@pytest.fixture(scope="module")
def served(demo_home: DemoHome) -> Iterator[Served]:
    with demo_home.serve(GOVTRUST_SERVE_RESTART_LIMIT="1", GOVTRUST_SERVE_RESTART_WINDOW="60",
                         GOVTRUST_SERVE_RESTART_BACKOFF="0.2") as running:
        yield running


def _wait(what: str, cond: object, deadline: float = 20.0) -> float:
    """Poll ``cond`` until true; the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        if cond():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {deadline} s")


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command may hold spaces and parentheses: ppid follows the last ")".
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _child(served: Served, marker: str) -> int:
    found = [p for p in _children_of(served.proc.pid) if marker in _cmdline(p)]
    assert len(found) == 1, (marker, [(_cmdline(p)) for p in _children_of(served.proc.pid)])
    return found[0]


def _slapd_pid(served: Served) -> int:
    return int((served.home / "slapd" / "run" / "slapd.pid").read_text().strip())


def _login_works(served: Served, uid: str, password: str) -> bool:
    try:
        return served.login(uid, password, timeout=5).status_code == 302
    except Exception:
        return False


def _listening_pids(port: int) -> list[int]:
    """The process of each listening TCP socket on ``port`` (one entry per socket)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                         text=True, check=True).stdout
    return [int(pid) for pid in re.findall(r"pid=(\d+)", out)]


def test_each_idp_worker_listens_on_a_socket_of_its_own(served: Served) -> None:
    """``--reuse-port``: the kernel spreads new connections over the workers' own
    sockets; on one shared socket the first worker awake took a whole burst of
    kept-alive connections (scripts/bench/idp.py saw all 16 on one worker)."""
    master = _child(served, "wsgi:idp_app")
    workers = _children_of(master)
    assert len(workers) >= 1
    pids = _listening_pids(int(urlsplit(served.issuer).port or 443))
    assert sorted(pids) == sorted(workers), (pids, workers, master)
    assert served.client_credentials().status_code == 200


def test_killed_managed_slapd_is_restarted_and_logins_work_again(
        demo_home: DemoHome, served: Served) -> None:
    uid, password = demo_home.account()
    assert served.login(uid, password).status_code == 302
    old = _slapd_pid(served)
    os.kill(old, signal.SIGKILL)
    took = _wait("a login after slapd was killed", lambda: _login_works(served, uid, password))
    assert _slapd_pid(served) != old
    assert served.proc.poll() is None
    # A login can work before the supervisor has printed its line (slapd answers,
    # then serve's readiness check returns and it says so): wait for the line.
    _wait("serve saying slapd restarted", lambda: "slapd restarted" in served.output(),
          deadline=10)
    assert "slapd is not running; restarting in" in served.output()
    assert took < 10


def test_killed_idp_gunicorn_master_is_restarted_with_its_workers(
        demo_home: DemoHome, served: Served) -> None:
    uid, password = demo_home.account()
    master = _child(served, "wsgi:idp_app")
    workers = _children_of(master)
    assert workers
    os.kill(master, signal.SIGKILL)
    _wait("the IdP answering again", lambda: _login_works(served, uid, password))
    assert _child(served, "wsgi:idp_app") != master
    # The dead master's workers went with it: no half of an old server left.
    _wait("the old workers gone", lambda: all(not _running(w) for w in workers), 5)
    assert "idp killed by SIGKILL; restarting in" in served.output()


def test_a_child_that_keeps_dying_makes_serve_exit_non_zero(served: Served) -> None:
    first = _child(served, "wsgi:pki_app")
    os.kill(first, signal.SIGKILL)
    _wait("the PKI master restarted", lambda: any(
        p != first and "wsgi:pki_app" in _cmdline(p) for p in _children_of(served.proc.pid)))
    os.kill(_child(served, "wsgi:pki_app"), signal.SIGKILL)
    _wait("serve exiting", lambda: served.proc.poll() is not None)
    assert served.proc.returncode != 0
    out = served.output()
    assert "pki died 2 times within 60 s" in out, out
    # Nothing of it is left running: not the IdP, not the directory.
    assert not _children_of(served.proc.pid)
    pid = _slapd_pid_or_none(served)
    assert pid is None or not _running(pid)


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _slapd_pid_or_none(served: Served) -> int | None:
    try:
        return _slapd_pid(served)
    except FileNotFoundError:
        return None


# -- the rule on its own, with real short-lived processes -------------------------------

def _dying(tmp_path: Path, code: int) -> ProcessChild:
    return ProcessChild("dier", [sys.executable, "-c", f"raise SystemExit({code})"],
                        dict(os.environ))


def test_restarts_back_off_then_give_up(tmp_path: Path) -> None:
    said: list[str] = []
    children = Children(RestartPolicy(limit=3, window=60, backoff=0.05), said.append)
    children.add(_dying(tmp_path, 7))
    with pytest.raises(GaveUp) as gave_up:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children.check()
            time.sleep(0.02)
    assert gave_up.value.name == "dier"
    delays = [line for line in said if "restarting in" in line]
    assert [d.split("restarting in ")[1].split(" s")[0] for d in delays] == ["0.05", "0.1", "0.2"]
    assert said[-1] == "dier exited with status 7"
    children.stop()


def test_deaths_outside_the_window_are_forgotten(tmp_path: Path) -> None:
    now = [0.0]
    said: list[str] = []
    children = Children(RestartPolicy(limit=1, window=10, backoff=0.0), said.append,
                        clock=lambda: now[0])
    child = _dying(tmp_path, 1)
    children.add(child)
    for step in range(4):  # one death every 20 s: never two within 10 s
        assert child.proc is not None
        child.proc.wait(5)
        now[0] = step * 20.0
        children.check()  # notices the death
        children.check()  # restarts (no backoff)
    assert sum("restarting in" in line for line in said) == 4
    children.stop()


@pytest.mark.parametrize(("key", "value", "words"), [
    ("restart_limit", -1, "0 (never restart) or more"),
    ("restart_window", 0, "more than 0 seconds"),
    ("restart_backoff", -0.5, "0 or more seconds"),
    ("restart_backoff", 600, "at most 30 seconds"),
], ids=["negative-limit", "empty-window", "negative-backoff", "huge-backoff"])
def test_bad_restart_settings_are_refused(tmp_path: Path, key: str, value: float,
                                          words: str) -> None:
    (tmp_path / "govtrust.toml").write_text(f"[serve]\n{key} = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        RestartPolicy.from_config(Config.load(tmp_path, environ={}))
    assert refused.value.key == f"[serve] {key}" and words in refused.value.reason


def test_a_listened_address_is_refused_even_beside_reuse_port() -> None:
    """A gunicorn worker's socket (SO_REUSEPORT) would let a second IdP bind beside
    it; serve refuses the address instead, as the shared socket's bind failed."""
    import socket

    import click

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(click.ClickException, match="in use"):
            refuse_taken(listen)
    refuse_taken(listen)  # closed: free again
