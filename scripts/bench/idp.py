#!/usr/bin/env python3
"""Benchmark the IdP in both deployment shapes, on loopback, beside a bare endpoint,
Keycloak's published sizing and the LemonLDAP::NG peer.

Shapes (``--shape``, default ``both``, one after the other; scripts/bench/shapes.py
brings each up and down):

- ``serve``: ``govtrust serve`` as shipped (TLS in gunicorn, the IdP's and PKI's
  gunicorn, managed slapd, SQLite);
- ``production``: the topology of docs/production.md on one machine: nginx from
  ``govtrust deploy nginx`` terminating TLS in front of ``--nodes`` ``govtrust node``
  processes (default 1: the machine has 2 cores, shared with the load client) on
  one PostgreSQL 15, with an external slapd.

Figures, per shape, each at 1 and 16 concurrent clients with p50/p99 latency:
client-credentials grants/s and introspections/s (wrk, HTTP keep-alive),
refresh grants/s and full password logins/s (Python ``requests`` worker
processes; a login is authorize -> login form -> POST credentials -> authorize
-> code -> token, cookies and all, the ID token checked for the nonce), and
refresh grants/s again under wrk (``refresh_wrk``: the same load client as
``bare``; the Python one costs the shared cores more than the server does).

``login_same_hash`` (only when asked for in ``--figures``) is a yardstick for the
logins, bench-only: the same logins at the same concurrencies, each right after
the shipped figure, by twins of the demo people whose passwords the bench stores
as the peer stores its users' ({SSHA}, where ours are Argon2id), in the run's
throwaway directory (``same_hash_people``). Product and configuration stay as
shipped. It prints logins/s, the ratio of the shipped figure to it, the CPU per
login of the IdP's workers and of slapd for both, how both figures' users had
their passwords stored at the end, and with ``--peer`` its ratio to the peer.

    scripts/bench/idp.py [--shape serve|production|both] [--nodes 1] [--duration 10]
                         [--peer] [--home /dev/shm/govtrust-bench] [--keep]
                         [--figures client_credentials,introspection,refresh,refresh_wrk,login
                                    (,login_same_hash)]

The yardstick, measured in each shape's run, the same for both: ``bare_token.py``
(a bare Flask client-credentials endpoint: constant-time secret check, one ES256
JWT, one SQLite insert) under gunicorn with the same worker settings, over plain
HTTP (``bare``) and over gunicorn's TLS with our settings (``bare_tls``), before
and after that shape's figures at each concurrency; every figure is also printed
as a fraction of ``bare`` at the same concurrency (``SHAPE_name_C_vs_bare: 0.NN
ratio``). And of the same bare behind the shape's own front (``_vs_front``): in
serve ``bare_tls``; in production ``bare_front``, the plain bare as the one node of
an nginx of its own that ``govtrust deploy nginx`` configured as the shape's (TLS,
keep-alive upstream, access log), so that the cost of the front itself is not
counted against the node. After the load, the resident memory of the shape's server processes
(RSS and PSS summed per group) is printed beside Keycloak's published 1,250 MB
per pod; for production that includes nginx and PostgreSQL.

``--peer`` also runs ../shared/peers/lemonldap (setup.sh, bench.sh, stop.sh) once,
after the shapes, on ports that do not clash with ours, in a tmpfs work dir, and
prints its ratio to each shape.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import multiprocessing as mp
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from ldap.dn import escape_dn_chars

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # loaded by path from soak.py, flame.py, cli.py, dr.py
    sys.path.insert(0, str(HERE))
import shapes  # noqa: E402  (scripts/bench/shapes.py)

ROOT = shapes.ROOT
GOVTRUST = shapes.GOVTRUST
# ../shared/peers beside the main checkout; a worktree sits one level deeper.
PEER = next((p / "shared" / "peers" / "lemonldap" for p in ROOT.parents
             if (p / "shared" / "peers" / "lemonldap").is_dir()),
            ROOT.parent / "shared" / "peers" / "lemonldap")
KEYCLOAK_PER_VCPU = {"client_credentials": 120.0, "refresh": 120.0, "refresh_wrk": 120.0,
                     "login": 15.0}
KEYCLOAK_POD_MB = 1250  # Keycloak's published sizing: memory per pod
CONFIGURED_THREADS = 4  # idp/runtime/config.py's [idp] threads default
REDIRECT = "http://127.0.0.1:9/cb"
free_port = shapes.free_port


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- the server ------------------------------------------------------------------------

class Server(shapes.Serve):
    """The serve shape with its home at ``home`` itself, started and stopped by hand
    (``start()``, ``stop()``): what scripts/bench/cli.py and flame.py use."""

    def __init__(self, home: Path, threads: int = 0, workers: int = 0) -> None:
        super().__init__(home, workers=workers, threads=threads, keep=True, home=home)


def wait_bare(url: str, auth: tuple[str, str], ca: str | None, what: str) -> None:
    """Until the bare endpoint at ``url`` answers a grant with a JWT (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            r = requests.post(url, data={"grant_type": "client_credentials"}, auth=auth,
                              verify=ca or True, timeout=2)
            r.raise_for_status()
            assert r.json()["access_token"].count(".") == 2
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up")


class Bare:
    """``bare_token.py`` under gunicorn, with the worker settings ``govtrust serve``
    gives ours (``idp/runtime/serve.py``: gthread, keep-alive 15, a listening socket
    per worker with ``--reuse-port``, so that neither side gets the uneven split of
    one shared socket and the ratio compares the endpoints, not the luck of accept)."""

    def __init__(self, folder: Path, workers: int, threads: int,
                 tls: tuple[Path, Path, Path] | None) -> None:
        self.folder = folder
        port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/token"
        self.cmd = [str(ROOT / ".venv" / "bin" / "python"), "-m", "gunicorn",
                    "bare_token:create_app()", "--bind", f"127.0.0.1:{port}",
                    "--workers", str(workers), "--worker-class", "gthread",
                    "--threads", str(threads), "--keep-alive", "15", "--timeout", "60",
                    "--log-level", "warning", "--reuse-port"]  # no access log, as ours
        if tls:
            cert, key, chain = tls
            self.cmd += ["--certfile", str(cert), "--keyfile", str(key), "--ca-certs",
                         str(chain), "--cert-reqs", "1"]
        self.ca = str(tls[2]) if tls else None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, client_id: str, secret: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "client.json").write_text(json.dumps(
            {"client_id": client_id, "client_secret": secret}), encoding="utf-8")
        env = dict(os.environ, BARE_DIR=str(self.folder),
                   PYTHONPATH=str(Path(__file__).resolve().parent))
        # die_with_parent: a run killed outright (SIGKILL, no finally) leaves no
        # gunicorn behind, as govtrust serve leaves none of its children.
        self.proc = subprocess.Popen(self.cmd, env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=shapes.die_with_parent)
        wait_bare(self.url, (client_id, secret), self.ca, "the bare token endpoint")

    def processes(self) -> dict[str, int]:
        """``bare_master`` and ``bare_worker1``... -> pid (for CPU per request)."""
        if self.proc is None:
            return {}
        root = self.proc.pid
        below = sorted(shapes.tree(root, shapes.process_table()) - {root})
        return {"bare_master": root, **{f"bare_worker{i}": pid
                                        for i, pid in enumerate(below, 1)}}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class FrontedBare:
    """The plain :class:`Bare` behind the production shape's own front: an nginx of
    its own, configured by ``govtrust deploy nginx`` as the shape's is (TLS and its
    settings, keep-alive to the upstream, the access log), with the bare endpoint as
    its one node. What a Python endpoint behind that front can do on this machine:
    the production figures' yardstick in kind (``bare_front``), beside ``bare``."""

    def __init__(self, folder: Path, workers: int, threads: int,
                 shape: shapes.Production) -> None:
        self.bare = Bare(folder, workers, threads, None)
        self.shape = shape
        self.folder = folder
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/token"
        self.ca = shape.ca
        self.nginx: subprocess.Popen[bytes] | None = None

    def start(self, client_id: str, secret: str) -> None:
        self.bare.start(client_id, secret)
        node = urlsplit(self.bare.url).netloc
        conf = self.folder / "nginx.conf"
        self.shape.govtrust("deploy", "nginx", "--out", str(conf), "--node", node,
                            "--idp-listen", f"127.0.0.1:{self.port}",
                            "--pki-listen", f"127.0.0.1:{free_port()}",
                            "--run-dir", str(self.folder / "nginx"),
                            *(["--user", "root"] if self.shape.as_root else []))
        self.nginx = shapes.run_nginx(conf, self.folder / "nginx-startup.log")
        wait_bare(self.url, (client_id, secret), self.ca,
                  "nginx in front of the bare token endpoint")

    def processes(self) -> dict[str, int]:
        """The bare's gunicorn (``bare_master``, ``bare_worker1``...) and nginx."""
        found = self.bare.processes()
        if self.nginx is not None:
            root = self.nginx.pid
            found["nginx_master"] = root
            for i, pid in enumerate(sorted(shapes.tree(root, shapes.process_table())
                                           - {root}), 1):
                found[f"nginx_worker{i}"] = pid
        return found

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            shapes.stop_tree(self.nginx, signal.SIGQUIT)
        self.nginx = None
        self.bare.stop()


# -- resident memory ------------------------------------------------------------------------

def shape_memory(shape: shapes.Shape) -> dict[str, dict[str, float]]:
    """RSS and PSS (MB) summed over the server processes of ``shape``, grouped
    (``shapes.group_of``): for serve the IdP's gunicorn (master and workers), the
    PKI's, slapd, the supervisor; for production the nodes' gunicorn, their
    supervisors, nginx, slapd, PostgreSQL (postmaster and backends).
    PSS counts a page shared by n processes as 1/n in each, so its sum is what the
    processes really hold together; the RSS sum counts shared pages (forked code)
    once per process."""
    groups: dict[str, dict[str, float]] = {}
    for role, pid in shape.processes().items():
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        kb = {k: float(v.split()[0]) for k, _, v in
              (line.partition(":") for line in rollup.splitlines()[1:]) if k in ("Rss", "Pss")}
        g = groups.setdefault(shapes.group_of(role), {"processes": 0, "rss": 0.0, "pss": 0.0})
        g["processes"] += 1
        g["rss"] += kb.get("Rss", 0.0) / 1024
        g["pss"] += kb.get("Pss", 0.0) / 1024
    return groups


# -- CPU per request ----------------------------------------------------------------------

WORKER_GROUPS = ("idp_workers", "node_workers")  # the processes that answer our requests


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """user + system CPU seconds so far of each role's process (/proc/PID/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for role, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        out[role] = (int(fields[11]) + int(fields[12])) / tick
    return out


def with_cpu(shape: shapes.Shape | Bare | FrontedBare, run: Callable[[], dict[str, float]]
             ) -> dict[str, float]:
    """``run()``'s figure, plus the CPU the shape's server processes spent per
    request meanwhile (``cpu_us``: all of them, slapd and PostgreSQL included;
    ``worker_cpu_us``: the IdP's worker processes; ``slapd_cpu_us``: slapd, where a
    login's password is checked) and the busiest worker's share
    of the workers' CPU (``busiest_worker``: 0.50 is an even split between two;
    1.00 means one process answered everything, as when every kept-alive
    connection of the load client was accepted by the same worker). On a shared
    machine the rates move with the others' load; CPU per request much less.
    For the yardstick (a ``Bare``), its gunicorn's master and workers."""
    procs = shape.processes()
    before = cpu_seconds(procs)
    figure = run()
    spent = {role: cpu - before[role] for role, cpu in cpu_seconds(procs).items()
             if role in before}
    workers = [v for role, v in spent.items() if shapes.group_of(role) in WORKER_GROUPS
               or role.startswith("bare_worker")]
    n = max(figure.get("requests", 0.0), 1.0)
    figure["cpu_us"] = sum(spent.values()) / n * 1e6
    figure["worker_cpu_us"] = sum(workers) / n * 1e6
    figure["slapd_cpu_us"] = sum(v for role, v in spent.items()
                                 if shapes.group_of(role) == "slapd") / n * 1e6
    figure["busiest_worker"] = max(workers) / sum(workers) if sum(workers) > 0 else float("nan")
    return figure


# -- one login, one refresh ----------------------------------------------------------------

def login_once(s: requests.Session, issuer: str, ca: str, client_id: str, secret: str,
               uid: str, password: str) -> dict[str, Any]:
    s.cookies.clear()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                         ).rstrip(b"=").decode()
    nonce = secrets.token_urlsafe(12)
    q = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
         "scope": "openid profile department", "state": "st", "nonce": nonce,
         "code_challenge": challenge, "code_challenge_method": "S256"}
    r = s.get(f"{issuer}/authorize?{urlencode(q)}", verify=ca, allow_redirects=False)
    r = s.get(issuer + r.headers["Location"], verify=ca, allow_redirects=False)
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text)
    back = re.search(r'name="return" value="([^"]+)"', r.text)
    assert csrf and back, r.text[:300]
    import html

    r = s.post(issuer + "/login", data={"csrf": csrf.group(1), "uid": uid, "password": password,
                                        "return": html.unescape(back.group(1))},
               verify=ca, allow_redirects=False)
    assert r.status_code == 302, r.text[:300]
    r = s.get(issuer + r.headers["Location"], verify=ca, allow_redirects=False)
    code = parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]
    r = s.post(issuer + "/token", data={"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": REDIRECT, "code_verifier": verifier},
               auth=(client_id, secret), verify=ca)
    r.raise_for_status()
    body = r.json()
    payload = body["id_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["nonce"] == nonce
    return body


def _worker(kind: str, conf: dict[str, Any], index: int, start: float, until: float,
            out: Any) -> None:
    s = requests.Session()
    lat: list[float] = []
    errors = 0
    people = conf["people"]
    refresh = None
    if kind == "refresh":
        uid, pw = people[index % len(people)]
        refresh = login_once(s, conf["issuer"], conf["ca"], conf["client_id"], conf["secret"],
                             uid, pw)["refresh_token"]
    n = index
    while time.monotonic() < start:
        time.sleep(0.01)
    while time.monotonic() < until:
        t0 = time.perf_counter()
        try:
            if kind == "login":
                uid, pw = people[n % len(people)]
                n += 1
                login_once(s, conf["issuer"], conf["ca"], conf["client_id"], conf["secret"],
                           uid, pw)
            else:
                r = s.post(conf["issuer"] + "/token", data={
                    "grant_type": "refresh_token", "refresh_token": refresh},
                    auth=(conf["client_id"], conf["secret"]), verify=conf["ca"])
                r.raise_for_status()
                refresh = r.json()["refresh_token"]
            lat.append((time.perf_counter() - t0) * 1000)
        except Exception:
            errors += 1
    out.put((lat, errors))


def python_load(kind: str, conf: dict[str, Any], concurrency: int,
                duration: float) -> dict[str, float]:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    # every worker begins together, after its set-up (the refresh workers log in first)
    start = time.monotonic() + (2.0 + 0.2 * concurrency if kind == "refresh" else 0.5)
    until = start + duration
    procs = [ctx.Process(target=_worker, args=(kind, conf, i, start, until, q))
             for i in range(concurrency)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    lat = [v for r in results for v in r[0]]
    errors = sum(r[1] for r in results)
    return {"rate": len(lat) / duration, "requests": float(len(lat)),
            "p50": pct(lat, 0.50), "p99": pct(lat, 0.99), "errors": float(errors)}


def wrk_load(url: str, body: str, auth: tuple[str, str], concurrency: int,
             duration: float, work: Path, script: Path | None = None) -> dict[str, float]:
    """wrk POSTing ``body`` with HTTP Basic ``auth`` (or running ``script``)."""
    if script is None:
        basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        script = work / f"post-{secrets.token_hex(4)}.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f'wrk.body = "{body}"\n'
            'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
            f'wrk.headers["Authorization"] = "Basic {basic}"\n', encoding="utf-8")
    threads = 1 if concurrency == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{int(duration)}s",
                          "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rate": rate, "p50": ms("50%"), "p99": ms("99%"),
            "requests": float(done.group(1)) if done else rate * duration,
            "errors": float(non2xx.group(1)) if non2xx else 0.0}


# Refresh grants driven by wrk, as bare and the client-credentials grants are: each
# connection has one request in flight, so a thread's pool of refresh tokens (one per
# connection) never runs dry; a response's successor goes back into the pool, a failed
# request's token is lost (and counted among the errors). wrk builds one request on
# its first thread before the run (to count what a request pipelines): that thread's
# pool ends with a placeholder for it, taken first.
REFRESH_LUA = """
local pools = {}
local next_thread = 0
function setup(thread)
  thread:set("pool", pools[next_thread + 1])
  next_thread = next_thread + 1
end
function init(args)
  tokens = {}
  for t in string.gmatch(pool, "[^ ]+") do tokens[#tokens + 1] = t end
end
function request()
  local t = table.remove(tokens) or "none"
  return wrk.format("POST", nil, {["Content-Type"] = "application/x-www-form-urlencoded",
                                  ["Authorization"] = "Basic BASIC"},
                    "grant_type=refresh_token&refresh_token=" .. t)
end
function response(status, headers, body)
  local t = string.match(body, '"refresh_token": *"([^"]+)"')
  if t then tokens[#tokens + 1] = t end
end
"""


def wrk_refresh(conf: dict[str, Any], concurrency: int, duration: float,
                work: Path) -> dict[str, float]:
    """Refresh grants/s under wrk (HTTP keep-alive), one person's grant per connection,
    each logged in first (as the Python load client does)."""
    threads = 1 if concurrency == 1 else 2
    people = conf["people"]
    s = requests.Session()
    tokens = [login_once(s, conf["issuer"], conf["ca"], conf["client_id"], conf["secret"],
                         *people[i % len(people)])["refresh_token"]
              for i in range(concurrency)]
    per = concurrency // threads
    pools = ", ".join('"' + " ".join(tokens[t * per:(t + 1) * per]
                                     + (["placeholder"] if t == 0 else [])) + '"'
                      for t in range(threads))
    basic = base64.b64encode(f"{conf['client_id']}:{conf['secret']}".encode()).decode()
    script = work / f"refresh-{secrets.token_hex(4)}.lua"
    script.write_text(REFRESH_LUA.replace("BASIC", basic).replace(
        "local pools = {}", "local pools = {" + pools + "}"), encoding="utf-8")
    return wrk_load(conf["issuer"] + "/token", "", ("", ""), concurrency, duration, work,
                    script=script)


# -- logins with the peer's hash: a yardstick, in the bench's own directory only ------------

SAME_HASH = "{SSHA}"  # what ../shared/peers/lemonldap/setup.sh stores for its 1000 users
SAME_HASH_NOTE = "same hash as the peer: {SSHA}; shipped: Argon2id"
TWIN = ".ssha"  # wangwei's twin for login_same_hash: wangwei.ssha


def ssha(password: str) -> str:
    """``{SSHA}`` exactly as the peer's setup.sh writes it: base64(SHA-1(password +
    salt) + salt) with an 8-byte random salt, the scheme slapd checks natively."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return SAME_HASH + base64.b64encode(digest + salt).decode("ascii")


def same_hash_people(shape: shapes.Shape) -> list[tuple[str, str]]:
    """The load users of ``login_same_hash``, (uid, password) each: a twin of every
    demo civil servant (``uid.ssha``, same department, title and clearance: the
    rows of ``govtrust directory export``, put back with ``govtrust directory
    import``), whose password is stored as the peer stores its users' — {SSHA} —
    while the demo people keep the Argon2id the product wrote for them.

    Each twin holds two {SSHA} values of its password (two salts). One would not
    last: after a good bind GovTrust replaces a single value in any other scheme by
    Argon2id (``directory.authentication.upgrade_hash``, which also costs an Argon2id
    hash in the IdP's worker), so each twin would be back on Argon2id after its first
    login; a person with more than one value is left as is. slapd's ppolicy allows
    one value, also to the rootdn, so the overlay is switched off in cn=config
    (``olcDisabled``, over ldapi as cn=config's manager, as an operator would) for
    this one write as the rootdn, and on again before anything is measured:
    slapd's configuration during the logins is the shipped one, only the twins'
    stored values differ. ``pwdChangedTime`` is written as ppolicy would have
    written it. Nothing of the product changes; the directory is the benchmark's
    throwaway one (``olcPasswordHash``, what slapd hashes new passwords with, is
    left at {ARGON2}: it plays no part in a bind, which checks the value stored).
    """
    people = dict(shape.people())
    base_dn, _rootdn = shape.directory()
    exported = shape.work / "people.csv"
    shape.govtrust("directory", "export", "--format", "csv", "--out", str(exported))
    with open(exported, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["uid"] in people]
    twins = shape.work / "twins.csv"
    with open(twins, "w", newline="", encoding="utf-8") as f:
        out = csv.DictWriter(f, fieldnames=list(rows[0]))
        out.writeheader()
        for r in rows:
            local, _, domain = r["email"].partition("@")
            out.writerow({**r, "uid": r["uid"] + TWIN, "email": f"{local}{TWIN}@{domain}",
                          "groups": ""})  # no group: the demo groups stay as they were
    shape.govtrust("directory", "import", str(twins))
    found = shape.ldap("ldapsearch", "-LLL", "-b", "cn=config",
                       "(objectClass=olcPPolicyConfig)", "dn", config=True)
    ppolicy = re.search(r"^dn: (.+)$", found, re.M)
    if not ppolicy:
        raise RuntimeError("no ppolicy overlay in cn=config")
    overlay = ppolicy.group(1)
    now = time.strftime("%Y%m%d%H%M%SZ", time.gmtime())
    ldif = "".join(
        f"dn: uid={escape_dn_chars(uid + TWIN)},ou=people,{base_dn}\nchangetype: modify\n"
        f"replace: userPassword\nuserPassword: {ssha(pw)}\nuserPassword: {ssha(pw)}\n-\n"
        f"replace: pwdChangedTime\npwdChangedTime: {now}\n-\n\n"
        for uid, pw in people.items())
    shape.ldap("ldapmodify", config=True, ldif=(
        f"dn: {overlay}\nchangetype: modify\nreplace: olcDisabled\nolcDisabled: TRUE\n"))
    try:
        # -e relax: pwdChangedTime is ppolicy's, not a client's to write otherwise.
        shape.ldap("ldapmodify", "-e", "relax", ldif=ldif)
    finally:
        shape.ldap("ldapmodify", config=True, ldif=(
            f"dn: {overlay}\nchangetype: modify\ndelete: olcDisabled\n"))
    return [(uid + TWIN, pw) for uid, pw in people.items()]


def stored_schemes(shape: shapes.Shape, uids: list[str]) -> Counter[str]:
    """How ``uids`` have their passwords stored now, read back as the rootdn:
    ``{"{SSHA} x2": 50}``, ``{"{ARGON2}$argon2id x1": 50}``."""
    base_dn, _rootdn = shape.directory()
    found = shape.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", f"ou=people,{base_dn}",
                       "(objectClass=inetOrgPerson)", "uid", "userPassword")
    by_uid: dict[str, list[str]] = {}
    for entry in found.split("\n\n"):
        uid, values = "", []
        for line in entry.splitlines():
            key, _, value = line.partition(":")
            if value.startswith(":"):  # ":: " base64, as ldapsearch writes userPassword
                value = base64.b64decode(value[1:].strip()).decode("utf-8", "replace")
            value = value.strip()
            if key == "uid":
                uid = value
            elif key == "userPassword":
                values.append("{ARGON2}$argon2id" if value.startswith("{ARGON2}$argon2id$")
                              else value[:value.find("}") + 1])
        if uid:
            by_uid[uid] = values
    return Counter(f"{'/'.join(sorted(set(by_uid.get(u, []))))} x{len(by_uid.get(u, []))}"
                   for u in uids)


# -- the peer ------------------------------------------------------------------------------

def run_peer(duration: float) -> dict[str, float]:
    # A folder of its own, so two runs at once do not share one; readable by the
    # peer's own users (www-data reads its configuration there), as mkdir -p makes it.
    work = Path(tempfile.mkdtemp(prefix="llng-peer-", dir="/dev/shm"))
    work.chmod(0o755)
    env = dict(os.environ, LLNG_PORT=str(free_port()), LDAP_PORT=str(free_port()),
               DURATION=str(int(duration)))
    figures: dict[str, float] = {}
    try:
        subprocess.run(["bash", str(PEER / "setup.sh"), str(work)], env=env, check=True,
                       capture_output=True, timeout=900)
        out = subprocess.run(["bash", str(PEER / "bench.sh"), str(work)], env=env, check=True,
                             capture_output=True, text=True, timeout=900).stdout
        for line in out.splitlines():
            m = re.match(r"^(\S+):\s+([\d.]+)", line)
            if m:
                figures[m.group(1)] = float(m.group(2))
    finally:
        subprocess.run(["bash", str(PEER / "stop.sh"), str(work)], env=env,
                       capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)
    return figures


# -- one shape ----------------------------------------------------------------------------

Figures = dict[str, dict[int, dict[str, float]]]


Stored = dict[str, Counter[str]]  # figure -> how its load users' passwords are stored


def measure(shape: shapes.Shape, args: argparse.Namespace, levels: list[int],
            figures: set[str], workers: int, threads: int
            ) -> tuple[Figures, dict[str, dict[str, float]], dict[str, dict[str, float]], Stored]:
    """Bring ``shape`` up, measure the yardstick and our figures at each concurrency,
    the memory before and after the load; bring it down. (figures, memory, before,
    and with ``login_same_hash`` how both figures' users had their passwords stored
    at the end)."""
    ours: Figures = {}
    memory: dict[str, dict[str, float]] = {}
    at_start: dict[str, dict[str, float]] = {}
    stored: Stored = {}
    with shape:
        reg = json.loads(shape.govtrust("--json", "client", "add", "--name", "bench",
                                        "--redirect-uri", REDIRECT, "--level", "2",
                                        "--first-party"))
        conf = {"issuer": shape.issuer, "ca": shape.ca, "client_id": reg["client_id"],
                "secret": reg["client_secret"], "people": shape.people()}
        # login_same_hash: the same logins by the demo people's twins, {SSHA} as the
        # peer's users (bench-only, see same_hash_people); the demo people keep Argon2id.
        same = ({**conf, "people": same_hash_people(shape)} if "login_same_hash" in figures
                else None)
        auth = (reg["client_id"], reg["client_secret"])
        token = requests.post(shape.issuer + "/token", data={"grant_type": "client_credentials"},
                              auth=auth, verify=shape.ca).json()["access_token"]
        work = shape.work
        tls_dir = shape.home / "idp" / "tls"
        bare = Bare(shape.base / "bare", workers, threads, None)
        bare_tls = Bare(shape.base / "bare-tls", workers, threads,
                        (tls_dir / "server.pem", tls_dir / "server.key", tls_dir / "ca.pem"))
        bares: list[Bare | FrontedBare] = [bare, bare_tls]
        # The front in kind: for serve gunicorn's TLS (bare_tls), for production nginx.
        front: Bare | FrontedBare = bare_tls
        if isinstance(shape, shapes.Production):
            front = FrontedBare(shape.base / "bare-front", workers, threads, shape)
            bares.append(front)
        try:
            for b in bares:
                b.start(*auth)
            at_start = shape_memory(shape)
            for c in levels:
                # The yardstick just before ours, at the same concurrency, same load client.
                ours.setdefault("bare", {})[c] = with_cpu(bare, partial(
                    wrk_load, bare.url, "grant_type=client_credentials", auth, c,
                    args.duration, work))
                ours.setdefault("bare_tls", {})[c] = with_cpu(bare_tls, partial(
                    wrk_load, bare_tls.url, "grant_type=client_credentials", auth, c,
                    args.duration, work))
                if front is not bare_tls:
                    ours.setdefault("bare_front", {})[c] = with_cpu(front, partial(
                        wrk_load, front.url, "grant_type=client_credentials", auth, c,
                        args.duration, work))
                if "client_credentials" in figures:
                    ours.setdefault("client_credentials", {})[c] = with_cpu(shape, partial(
                        wrk_load, shape.issuer + "/token", "grant_type=client_credentials",
                        auth, c, args.duration, work))
                if "introspection" in figures:
                    ours.setdefault("introspection", {})[c] = with_cpu(shape, partial(
                        wrk_load, shape.issuer + "/introspect", f"token={token}", auth, c,
                        args.duration, work))
                if "refresh" in figures:
                    ours.setdefault("refresh", {})[c] = with_cpu(shape, partial(
                        python_load, "refresh", conf, c, args.duration))
                if "refresh_wrk" in figures:
                    ours.setdefault("refresh_wrk", {})[c] = with_cpu(shape, partial(
                        wrk_refresh, conf, c, args.duration, work))
                if "login" in figures:
                    ours.setdefault("login", {})[c] = with_cpu(shape, partial(
                        python_load, "login", conf, c, args.duration))
                if same is not None:  # right after the shipped figure, same concurrency
                    ours.setdefault("login_same_hash", {})[c] = with_cpu(shape, partial(
                        python_load, "login", same, c, args.duration))
                # And again after ours: on a shared machine the load of others drifts
                # within a run; the yardstick is the mean of before and after, and
                # their spread says how far to trust a ratio.
                after = wrk_load(bare.url, "grant_type=client_credentials", auth, c,
                                 args.duration, work)
                before = ours["bare"][c]
                ours.setdefault("bare_after", {})[c] = after
                ours["bare"][c] = {**before, "rate": (before["rate"] + after["rate"]) / 2,
                                   "spread": abs(before["rate"] - after["rate"])
                                   / max(before["rate"], after["rate"], 1e-9)}
            if "login" in figures and 4 not in levels:
                ours["login"][4] = with_cpu(shape, partial(
                    python_load, "login", conf, 4, args.duration))
            if same is not None and 4 not in levels:
                ours["login_same_hash"][4] = with_cpu(shape, partial(
                    python_load, "login", same, 4, args.duration))
            if same is not None:  # read back: were the twins still {SSHA} at the end?
                stored = {"login": stored_schemes(shape, [u for u, _ in conf["people"]]),
                          "login_same_hash": stored_schemes(
                              shape, [u for u, _ in same["people"]])}
        finally:
            for b in bares:
                b.stop()
        time.sleep(2)  # steady state: the load has ended, the workers are idle
        memory = shape_memory(shape)
    return ours, memory, at_start, stored


def report_same_hash(n: str, ours: Figures, stored: Stored) -> None:
    """``login_same_hash`` beside the shipped ``login``: how much of a login is the
    Argon2id check, and what our stack costs per login without it."""
    same = ours.get("login_same_hash", {})
    if not same:
        return
    print(f"\nLogins with the peer's hash ({SAME_HASH_NOTE}). Bench-only: the demo "
          "people's twins in this run's throwaway directory, their passwords stored as "
          "{SSHA} by the bench; product and configuration as shipped. Same run, each "
          "right after the shipped figure at the same concurrency:")
    for c, f in sorted(same.items()):
        print(f"{n}_login_same_hash_{c}: {f['rate']:.1f} logins/s, p50 {f['p50']:.1f} ms, "
              f"p99 {f['p99']:.1f} ms, errors {int(f['errors'])} ({SAME_HASH_NOTE})")
        shipped = ours.get("login", {}).get(c)
        if shipped and f["rate"]:
            print(f"{n}_login_{c}_vs_same_hash: {shipped['rate'] / f['rate']:.2f} ratio "
                  "(shipped Argon2id logins/s over same-hash logins/s)")
        for name, g in (("login", shipped), ("login_same_hash", f)):
            if g and "cpu_us" in g:
                rest = g["cpu_us"] - g["worker_cpu_us"] - g["slapd_cpu_us"]
                print(f"{n}_{name}_{c}_cpu_per_login: {g['cpu_us'] / 1000:.1f} ms (IdP workers "
                      f"{g['worker_cpu_us'] / 1000:.1f}, slapd {g['slapd_cpu_us'] / 1000:.1f}, "
                      f"the other server processes {rest / 1000:.1f})")
        if shipped and "slapd_cpu_us" in shipped and "slapd_cpu_us" in f:
            print(f"{n}_login_{c}_hash_cost: "
                  f"{(shipped['slapd_cpu_us'] - f['slapd_cpu_us']) / 1000:.1f} ms of CPU per "
                  "login (slapd's, shipped minus same hash: what Argon2id costs over {SSHA})")
    for name, counts in stored.items():
        told = ", ".join(f"{k} ({v} users)" for k, v in sorted(counts.items()))
        print(f"{n}_{name}_stored: {told} (the load users' userPassword values by scheme "
              "and count, read back as the rootdn after the run)")


def report(shape: shapes.Shape, args: argparse.Namespace, ours: Figures,
           memory: dict[str, dict[str, float]], at_start: dict[str, dict[str, float]],
           workers: int, threads: int, stored: Stored | None = None) -> None:
    cores = os.cpu_count() or 1
    n = shape.name
    mode = (f"{args.workers or 'configured'} x {args.threads or 'configured'} threads"
            if args.threads or args.workers else "as configured")
    print(f"\n== shape {n}: {shape.describe()}")
    print(f"GovTrust IdP ({n}, workers {mode}, {cores} cores; load client on the same cores)")
    print(f"{'shape':10} {'figure':22} {'conc':>4} {'per s':>9} {'per core':>9} {'p50 ms':>8}"
          f" {'p99 ms':>8} {'errors':>6}  Keycloak/vCPU")
    for name, by_c in ours.items():
        for c, f in sorted(by_c.items()):
            kc = KEYCLOAK_PER_VCPU.get(name)
            print(f"{n:10} {name:22} {c:>4} {f['rate']:>9.1f} {f['rate'] / cores:>9.1f} "
                  f"{f['p50']:>8.2f} {f['p99']:>8.2f} {int(f['errors']):>6}  "
                  f"{'' if kc is None else f'{kc:.0f}'}")
    print(f"\nThe yardstick (bare_token.py, gunicorn {workers} x {threads} threads gthread, "
          "plain HTTP; bare_tls: the same behind gunicorn TLS with our settings), "
          f"measured in the {n} run:")
    for c, f in sorted(ours.get("bare", {}).items()):
        print(f"{n}_bare_{c}_spread: {f['spread']:.2f} ratio (|before - after| / max; "
              "bare above is their mean)")
    for name, by_c in ours.items():
        for c, f in sorted(by_c.items()):
            base = ours["bare"].get(c, {}).get("rate")
            if base and name not in ("bare", "bare_after"):
                print(f"{n}_{name}_{c}_vs_bare: {f['rate'] / base:.2f} ratio")
    front = "bare_front" if "bare_front" in ours else "bare_tls"
    print(f"\nThe same as a fraction of the bare endpoint behind the {n} shape's own front "
          f"({front}: " + ("nginx as `govtrust deploy nginx` configures it, the bare as its "
                           "node" if front == "bare_front" else "gunicorn's TLS with our "
                           "settings") + "), measured just before each figure:")
    for name, by_c in ours.items():
        if name.startswith("bare"):
            continue
        for c, f in sorted(by_c.items()):
            base = ours[front].get(c, {}).get("rate")
            if base:
                print(f"{n}_{name}_{c}_vs_front: {f['rate'] / base:.2f} ratio")
    print(f"\nCPU of the {n} shape's server processes per request (/proc/PID/stat before "
          "and after each figure; for bare and bare_tls their own gunicorn's), and the "
          "busiest worker's share of the workers' CPU:")
    for name, by_c in ours.items():
        for c, f in sorted(by_c.items()):
            if "cpu_us" in f:
                who = "its workers" if name.startswith("bare") else "IdP workers"
                print(f"{n}_{name}_{c}_cpu: {f['cpu_us']:.0f} us per request "
                      f"({who} {f['worker_cpu_us']:.0f}; slapd "
                      f"{f['slapd_cpu_us']:.0f}; busiest worker "
                      f"{f['busiest_worker']:.2f} of theirs)")
    report_same_hash(n, ours, stored or {})
    print(f"\nResident memory of the {n} shape's server processes after the load (idle), "
          f"beside Keycloak's {KEYCLOAK_POD_MB} MB per pod:")
    for group, g in sorted(memory.items()):
        start = at_start.get(group, {})
        print(f"{n}_memory_{group}: {g['rss']:.0f} MB rss, {g['pss']:.0f} MB pss, "
              f"{int(g['processes'])} processes (before the load: "
              f"{start.get('rss', 0):.0f} MB rss, {start.get('pss', 0):.0f} MB pss)")
    total_rss = sum(g["rss"] for g in memory.values())
    total_pss = sum(g["pss"] for g in memory.values())
    print(f"{n}_memory_total: {total_rss:.0f} MB rss, {total_pss:.0f} MB pss "
          f"({total_pss / KEYCLOAK_POD_MB:.2f} of a Keycloak pod by pss)")


def report_peer(peer: dict[str, float], runs: dict[str, Figures]) -> None:
    print("\nLemonLDAP::NG 2.16 peer, same machine, same run (bench.sh), "
          "once, beside each shape:")
    pairs = [("client_credentials", 16, "token_client_credentials"),
             ("login", 1, "authcode_login_1w"), ("login", 4, "authcode_login_4w"),
             ("login_same_hash", 1, "authcode_login_1w"),
             ("login_same_hash", 4, "authcode_login_4w")]
    for n, ours in runs.items():
        for name, c, key in pairs:
            theirs = peer.get(key)
            mine = ours.get(name, {}).get(c, {}).get("rate")
            if theirs and mine:
                note = (f" ({SAME_HASH_NOTE})" if name == "login_same_hash"
                        else " (shipped: Argon2id; the peer: {SSHA})" if name == "login" else "")
                print(f"{n:10} {name:22} {c:>4}  ours {mine:9.1f}/s  theirs {theirs:9.1f}/s  "
                      f"ratio {mine / theirs:5.2f}x")
                print(f"{n}_{name}_{c}_vs_peer: {mine / theirs:.2f} ratio{note}")
        base = ours.get("bare", {}).get(16, {}).get("rate")
        if base and peer.get("token_client_credentials"):
            # The peer runs as its scripts run it (nginx, plain HTTP), as bare does.
            print(f"{n}_peer_client_credentials_16_vs_bare: "
                  f"{peer['token_client_credentials'] / base:.2f} ratio")
    print(json.dumps(peer, indent=None))


# -- main ----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=[*shapes.SHAPES, "both"], default="both",
                        help="serve (govtrust serve), production (nginx -> govtrust node on "
                             "PostgreSQL) or both, one after the other (default)")
    parser.add_argument("--nodes", type=int, default=1,
                        help="production: govtrust node processes behind nginx (default 1: "
                             "2 cores, shared with the load client)")
    parser.add_argument("--home", type=Path, default=Path("/dev/shm/govtrust-bench"),
                        help="bench folder (each shape in SHAPE/ under it)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--peer", action="store_true", help="also run the LemonLDAP::NG peer")
    parser.add_argument("--keep", action="store_true", help="keep the bench folder afterwards")
    parser.add_argument("--threads", type=int, default=0,
                        help="gunicorn threads per worker (default: as configured)")
    parser.add_argument("--workers", type=int, default=0,
                        help="gunicorn worker processes (default: as configured)")
    parser.add_argument("--figures",
                        default="client_credentials,introspection,refresh,refresh_wrk,login",
                        help="which of our figures to measure (comma-separated); also "
                             "login_same_hash: the logins again, by load users stored as "
                             "{SSHA} like the peer's (bench-only; shipped: Argon2id), "
                             "each right after login at the same concurrency")
    args = parser.parse_args()
    if args.nodes < 1:
        parser.error("--nodes: at least 1")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress in a log
    shapes.exit_on_sigterm()
    levels = [int(c) for c in args.concurrency.split(",")]
    figures = set(args.figures.split(","))
    # What govtrust serve and govtrust node run: workers 0 = one per core they may use.
    workers = args.workers or len(os.sched_getaffinity(0))
    threads = args.threads or CONFIGURED_THREADS
    names = list(shapes.SHAPES) if args.shape == "both" else [args.shape]
    runs: dict[str, Figures] = {}
    try:
        for name in names:
            shape = shapes.shape(name, args.home / name, nodes=args.nodes,
                                 workers=args.workers, threads=args.threads, keep=args.keep)
            ours, memory, at_start, stored = measure(shape, args, levels, figures, workers,
                                                     threads)
            runs[name] = ours
            report(shape, args, ours, memory, at_start, workers, threads, stored)
    finally:
        if not args.keep:
            shutil.rmtree(args.home, ignore_errors=True)
    if args.peer:
        report_peer(run_peer(args.duration), runs)


if __name__ == "__main__":
    main()
