"""A running two-site rehearsal (``scripts/cluster up``) for the failover tests.

One cluster per test session (it takes about half a minute to start): the tests
that change its state (a switchover, a provider killed) leave it serving, and
run in file order. ``scripts/cluster down`` stops it at the end; the folder
stays only when a test failed, for its logs.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "scripts" / "cluster"
GOVTRUST = ROOT / ".venv" / "bin" / "govtrust"
REDIRECT = "http://127.0.0.1:9/cb"


@dataclass
class Rehearsal:
    dir: Path
    status: dict[str, Any]
    client_id: str
    client_secret: str
    people: list[tuple[str, str]]

    @property
    def issuer(self) -> str:
        return str(self.status["nginx"])

    @property
    def ca(self) -> str:
        return str(self.dir / "home" / "idp" / "tls" / "ca.pem")

    def env(self) -> dict[str, str]:
        return dict(os.environ, GOVTRUST_HOME=str(self.dir / "home"),
                    PGPASSFILE=str(self.status["pgpassfile"]))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CLUSTER), *args, str(self.dir)], capture_output=True,
                              text=True, timeout=300)

    def current(self) -> dict[str, Any]:
        done = self.run("status")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def processes(self) -> dict[str, Any]:
        return dict(json.loads((self.dir / "cluster.json").read_text())["processes"])

    def grant(self) -> requests.Response:
        return requests.post(self.issuer + "/token", data={"grant_type": "client_credentials"},
                             auth=(self.client_id, self.client_secret), verify=self.ca,
                             timeout=10)

    def login(self, uid: str, password: str) -> dict[str, Any]:
        return login_once(requests.Session(), self.issuer, self.ca, self.client_id,
                          self.client_secret, uid, password)


def login_once(s: requests.Session, issuer: str, ca: str, client_id: str, secret: str,
               uid: str, password: str) -> dict[str, Any]:
    """authorize -> login form -> POST credentials -> code -> tokens, through nginx."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                         ).rstrip(b"=").decode()
    q = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
         "scope": "openid profile", "state": "st", "nonce": secrets.token_urlsafe(8),
         "code_challenge": challenge, "code_challenge_method": "S256"}
    r = s.get(f"{issuer}/authorize?{urlencode(q)}", verify=ca, allow_redirects=False,
              timeout=10)
    assert r.status_code == 302, (r.status_code, r.text[:300])
    r = s.get(issuer + r.headers["Location"], verify=ca, allow_redirects=False, timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text)
    back = re.search(r'name="return" value="([^"]+)"', r.text)
    assert csrf and back, (r.status_code, r.text[:300])
    r = s.post(issuer + "/login", data={"csrf": csrf.group(1), "uid": uid, "password": password,
                                        "return": html.unescape(back.group(1))},
               verify=ca, allow_redirects=False, timeout=10)
    assert r.status_code == 302, (r.status_code, r.text[:300])
    r = s.get(issuer + r.headers["Location"], verify=ca, allow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]
    r = s.post(issuer + "/token", data={"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": REDIRECT, "code_verifier": verifier},
               auth=(client_id, secret), verify=ca, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return dict(r.json())


@pytest.fixture(scope="session")
def rehearsal(request: pytest.FixtureRequest) -> Iterator[Rehearsal]:
    for tool in ("patroni", "etcd", "nginx"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run scripts/setup")
    # Short and under /tmp: postgres must reach it and its socket path must be short.
    folder = Path(tempfile.mkdtemp(prefix="gtc-"))
    up = subprocess.run([str(CLUSTER), "up", str(folder)], capture_output=True, text=True,
                        timeout=300)
    assert up.returncode == 0, up.stderr[-3000:]
    try:
        status = json.loads(up.stdout)
        env = dict(os.environ, GOVTRUST_HOME=str(folder / "home"),
                   PGPASSFILE=str(status["pgpassfile"]))
        added = subprocess.run([str(GOVTRUST), "--json", "client", "add", "--name", "rehearsal",
                                "--redirect-uri", REDIRECT, "--level", "2", "--first-party"],
                               env=env, capture_output=True, text=True, timeout=120)
        assert added.returncode == 0, added.stderr
        reg = json.loads(added.stdout)
        text = (folder / "home" / "demo-accounts.txt").read_text(encoding="utf-8")
        people = re.findall(r"civil servant: (\S+) / (\S+)", text)
        yield Rehearsal(folder, status, reg["client_id"], reg["client_secret"], people)
    finally:
        subprocess.run([str(CLUSTER), "down", str(folder)], capture_output=True, timeout=120)
        if request.session.testsfailed == 0:
            shutil.rmtree(folder, ignore_errors=True)
