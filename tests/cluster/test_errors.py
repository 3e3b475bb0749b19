"""Bad input to the rehearsal's shape, each a clear error that changes nothing:
a wrong password in the PostgreSQL URL, an etcd that does not answer."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster.conftest import CLUSTER, GOVTRUST, Rehearsal

pytestmark = pytest.mark.cluster


def test_a_wrong_password_in_the_database_url_is_a_clear_error(rehearsal: Rehearsal,
                                                               tmp_path: Path) -> None:
    url = str(rehearsal.status["database_url"]).replace(
        "postgresql+psycopg://govtrust@", "postgresql+psycopg://govtrust:not-the-password@")
    env = dict(rehearsal.env(), GOVTRUST_DATABASE_URL=url,
               GOVTRUST_PKCS12_PASSPHRASE="a-p12-passphrase")
    env.pop("PGPASSFILE")
    before = subprocess.run([str(GOVTRUST), "--json", "cert", "list"], env=rehearsal.env(),
                            capture_output=True, text=True, timeout=60)
    assert before.returncode == 0, before.stderr
    done = subprocess.run([str(GOVTRUST), "cert", "issue", "--uid", rehearsal.people[0][0],
                           "--profile", "user-auth", "--pkcs12", str(tmp_path / "p.p12")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "cannot use the database" in done.stderr
    assert "password authentication failed" in done.stderr
    assert "Traceback" not in done.stderr
    assert "not-the-password" not in done.stderr  # the URL (and its secret) is not echoed
    after = subprocess.run([str(GOVTRUST), "--json", "cert", "list"], env=rehearsal.env(),
                           capture_output=True, text=True, timeout=60)
    assert json.loads(after.stdout) == json.loads(before.stdout)  # nothing issued


def test_an_unreachable_etcd_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    folder = tmp_path / "c"
    started = time.monotonic()
    done = subprocess.run([str(CLUSTER), "up", str(folder), "--etcd", f"127.0.0.1:{dead}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"etcd at 127.0.0.1:{dead} does not answer" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30  # not Patroni's endless retry loop
    state = json.loads((folder / "cluster.json").read_text())
    assert state["processes"] == {}  # nothing was left running
    assert not (folder / "site-a").exists()
