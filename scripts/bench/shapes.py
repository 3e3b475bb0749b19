"""The two deployment shapes a benchmark measures, brought up on loopback and down again.

``serve``: one machine as shipped. ``govtrust serve`` in a fresh ``init --demo``
home: TLS terminated in gunicorn, the IdP's and the PKI's gunicorn, the managed
slapd, SQLite.

``production``: the topology of docs/production.md, on one machine. One
PostgreSQL 15 (``initdb`` in the bench folder, as tests/fixtures/postgres.py does),
the home initialised on it (``GOVTRUST_DATABASE_URL`` at ``govtrust init --demo``),
the home's slapd run as a plain external slapd (the nodes reach it by
``[directory] uris``, as tests/e2e/test_nginx_front.py does), ``--nodes`` stateless
``govtrust node --listen`` processes (plain HTTP, each its own gunicorn), and nginx
configured by ``govtrust deploy nginx`` in front (TLS, the optional client
certificate forwarded in ``[certauth] header``; 127.0.0.1, where nginx connects
from, is in ``[idp] trusted_proxies`` as deploy requires). One node by default:
the machine has two cores, shared with the load client; a second node adds
processes, not cores.

Both shapes live under a folder in tmpfs (``/dev/shm``), listen on free loopback
ports, and expose what a load client needs: the issuer URL, the CA file that
verifies its TLS, the PKI's public URL, the database URL (the audit log),
``govtrust(...)`` against that home and database, the demo people, and the
processes to measure (role -> pid). Every process is started in a session of its
own and stopped by process group, its whole tree killed if it does not go by
itself: a failed or interrupted run leaves no server behind.

    with shape("production", Path("/dev/shm/x"), nodes=1) as s:
        requests.get(s.issuer + "/.well-known/openid-configuration", verify=s.ca)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import tomllib
import urllib.parse
from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from types import TracebackType

import requests

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
# This checkout's code, whatever the (possibly shared) .venv's editable install
# points at: the same interpreter, with ROOT first on the path (PYTHONPATH below).
GOVTRUST = [PYTHON, "-c", "from idp.runtime.cli import main; main()"]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SLAPD = "/usr/sbin/slapd"
SHAPES = ("serve", "production")
START_SECONDS = 90.0
MAX_SOCKET_PATH = 100  # as directory/slapd.py: a unix socket path has 108 bytes at most


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, verify: str | bool, what: str,
              procs: list[subprocess.Popen[bytes]] | None = None,
              seconds: float = START_SECONDS) -> None:
    """Until ``url`` answers 2xx; fail early when one of ``procs`` has exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for p in procs or []:
            if p.poll() is not None:
                raise RuntimeError(f"{what} exited with {p.returncode} before answering")
        try:
            requests.get(url, verify=verify, timeout=2).raise_for_status()
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer at {url} within {seconds:.0f} s")


def wait_port(port: int, what: str, proc: subprocess.Popen[bytes],
              seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {seconds:.0f} s")


def exit_on_sigterm() -> None:
    """SIGTERM ends the benchmark like Ctrl-C: through its ``finally`` and ``with``
    blocks, so the shape is torn down (Python's default would just die, leaving
    the servers, each in a session of its own, running)."""
    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


# -- processes -----------------------------------------------------------------------------

def die_with_parent() -> None:
    """In a child, before exec: SIGTERM it when the bench dies (``PR_SET_PDEATHSIG``),
    as ``idp.runtime.serve.die_with_parent`` does for serve's children; a bench
    killed outright, with no ``finally``, then leaves no server behind. (Not
    imported from there: ``scripts/bench/idp.py`` would shadow the ``idp``
    package in a bench's process.)"""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PR_SET_PDEATHSIG


def run_nginx(conf: Path, startup_log: Path) -> subprocess.Popen[bytes]:
    """nginx in the foreground with ``conf`` (``govtrust deploy nginx``'s output), in
    a session of its own that dies with this process."""
    return subprocess.Popen(["nginx", "-e", str(startup_log), "-c", str(conf),
                             "-g", "daemon off;"], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live (not zombie) process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), cmd.strip())
    return table


def tree(root: int, table: dict[int, tuple[int, str]]) -> set[int]:
    """``root`` and every live process below it."""
    ours = {root} if root in table else set()
    grew = True
    while grew:
        below = {p for p, (pp, _) in table.items() if pp in ours} - ours
        grew = bool(below)
        ours |= below
    return ours


def stop_tree(proc: subprocess.Popen[bytes] | None, sig: int, seconds: float = 20.0) -> None:
    """``sig`` to ``proc``'s process group (it was started in a session of its own);
    after ``seconds``, SIGKILL to every process group of its tree still there —
    gunicorn masters and slapd run in sessions of their own below a supervisor."""
    if proc is None:
        return
    table = process_table()
    members = tree(proc.pid, table)
    groups: set[int] = set()
    for pid in members:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    groups.discard(os.getpgrp())  # never ours
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None and not (members & set(process_table())):
            break
        time.sleep(0.1)
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def label(found: list[tuple[str, int]]) -> dict[str, int]:
    """(role, pid) pairs as ``{role1: pid, role2: pid, ...}``, numbered per role."""
    counts: Counter[str] = Counter()
    roles: dict[str, int] = {}
    for role, pid in found:
        counts[role] += 1
        roles[f"{role}{counts[role]}"] = pid
    return roles


# What a role's resident memory is summed under (scripts/bench/idp.py).
GROUPS = {"idp_master": "idp_workers", "idp_worker": "idp_workers",
          "pki_master": "pki_workers", "pki_worker": "pki_workers",
          "serve": "supervisor", "other": "supervisor",
          "node": "node_supervisors", "node_master": "node_workers",
          "node_worker": "node_workers", "nginx_master": "nginx", "nginx_worker": "nginx",
          "slapd": "slapd", "postgres": "postgres", "postgres_backend": "postgres"}


def group_of(role: str) -> str:
    """``idp_worker2`` -> ``idp_workers``."""
    return GROUPS.get(role.rstrip("0123456789"), "other")


# -- the shapes ----------------------------------------------------------------------------

class Shape(ABC):
    """What both shapes share: a bench folder, a home in it, the ``govtrust`` command."""

    name = ""

    def __init__(self, base: Path, *, workers: int = 0, threads: int = 0,
                 keep: bool = False, home: Path | None = None) -> None:
        self.base = base
        self.home = home or base / "home"  # ``home=base``: the folder is the home
        self.work = base / "work"  # the load clients' scratch files
        self.logs = base / "logs"
        self.keep = keep
        self.workers = workers  # 0: as configured (one per core)
        self.threads = threads  # 0: as configured ([idp] threads)
        self.issuer = ""
        self.ca = str(self.home / "idp" / "tls" / "ca.pem")
        self.pki_url = ""
        self.database_url = ""
        self.env = dict(os.environ, GOVTRUST_HOME=str(self.home), PYTHONPATH=str(ROOT))

    def govtrust(self, *args: str, timeout: float = 300) -> str:
        """``govtrust ARGS`` on this shape's home and database; its stdout."""
        done = subprocess.run([*GOVTRUST, *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"govtrust {' '.join(args[:3])} failed: {done.stderr[-1500:]}")
        return done.stdout

    def people(self) -> list[tuple[str, str]]:
        """The demo civil servants: (uid, password)."""
        text = (self.home / "demo-accounts.txt").read_text(encoding="utf-8")
        return re.findall(r"civil servant: (\S+) / (\S+)", text)

    def admin(self) -> tuple[str, str]:
        """The demo security administrator: (uid, password)."""
        text = (self.home / "demo-accounts.txt").read_text(encoding="utf-8")
        m = re.search(r"administrator \(security-admins\): (\S+) / (\S+)", text)
        if not m:
            raise RuntimeError("no administrator in demo-accounts.txt")
        return m.group(1), m.group(2)

    # -- the directory, reached as an operator reaches it (ldap-utils)
    @property
    def ldapi(self) -> str | None:
        """slapd's ldapi:// URI, where cn=config's manager (the user who ran init,
        by SASL EXTERNAL) changes its configuration; None when the path is too long
        for a socket (then slapd does not listen there)."""
        path = str(self.home / "slapd" / "run" / "ldapi")
        if len(path) > MAX_SOCKET_PATH:
            return None
        return "ldapi://" + urllib.parse.quote(path, safe="")

    def directory(self) -> tuple[str, str]:
        """(base DN, rootdn) of the home's directory, from its govtrust.toml."""
        with open(self.home / "govtrust.toml", "rb") as f:
            conf = tomllib.load(f)["directory"]
        return str(conf["base_dn"]), str(conf["bind_dn"])

    def ldap(self, tool: str, *args: str, ldif: str = "", config: bool = False) -> str:
        """``tool`` (ldapsearch, ldapmodify) against this shape's slapd; its stdout.
        ``config``: over ldapi as cn=config's manager; else over LDAP as the rootdn,
        its password read from the home's secret (never on a command line)."""
        if config:
            if self.ldapi is None:
                raise RuntimeError(f"no ldapi socket under {self.home}: path too long")
            who = ["-Q", "-Y", "EXTERNAL", "-H", self.ldapi]
        else:
            secret = (self.home / "secrets" / "ldap-admin-password").read_text().strip()
            pw = self.work / "ldap-admin-password"  # -y sends the file as is: no newline
            fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(secret)
            who = ["-x", "-H", self.env["GOVTRUST_DIRECTORY_URIS"],
                   "-D", self.directory()[1], "-y", str(pw)]
        done = subprocess.run([tool, *who, *args], input=ldif, capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args[:2])} failed: {done.stderr[-1500:]}")
        return done.stdout

    def _fresh(self) -> None:
        if self.base.exists():
            shutil.rmtree(self.base)
        for folder in (self.base, self.work, self.logs):
            folder.mkdir(parents=True)

    @abstractmethod
    def start(self) -> None:
        """Each shape brings itself up and down (Serve, Production)."""

    @abstractmethod
    def stop(self) -> None:
        """Each shape brings itself up and down (Serve, Production)."""

    @abstractmethod
    def processes(self) -> dict[str, int]:
        """Role -> pid of every server process of this shape (``idp_worker1``...)."""

    @abstractmethod
    def describe(self) -> str:
        """One line naming what runs in this shape."""

    def __enter__(self) -> Shape:
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop()
        finally:
            if not self.keep:
                shutil.rmtree(self.base, ignore_errors=True)


class Serve(Shape):
    """``govtrust serve`` as shipped: TLS in gunicorn, managed slapd, SQLite."""

    name = "serve"

    def __init__(self, base: Path, *, workers: int = 0, threads: int = 0,
                 keep: bool = False, home: Path | None = None) -> None:
        super().__init__(base, workers=workers, threads=threads, keep=keep, home=home)
        port, pki = free_port(), free_port()
        self.issuer = f"https://127.0.0.1:{port}"
        self.pki_url = f"http://127.0.0.1:{pki}"
        self.database_url = f"sqlite:///{self.home / 'govtrust.db'}"
        self.env.update(GOVTRUST_IDP_LISTEN=f"127.0.0.1:{port}", GOVTRUST_IDP_ISSUER=self.issuer,
                        GOVTRUST_PKI_LISTEN=f"127.0.0.1:{pki}",
                        GOVTRUST_PKI_PUBLIC_URL=self.pki_url,
                        GOVTRUST_DIRECTORY_URIS=f"ldap://127.0.0.1:{free_port()}")
        if threads:  # else [idp] threads as configured (gthread workers, HTTP keep-alive)
            self.env["GOVTRUST_IDP_THREADS"] = str(threads)
        if workers:  # else [idp] workers as configured (one per core)
            self.env["GOVTRUST_IDP_WORKERS"] = str(workers)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._fresh()
        self.govtrust("init", "--demo")
        with open(self.logs / "serve.log", "wb") as log:
            self.proc = subprocess.Popen([*GOVTRUST, "serve"], env=self.env,
                                         start_new_session=True, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=die_with_parent)
        wait_http(self.issuer + "/.well-known/openid-configuration", self.ca,
                  "govtrust serve", [self.proc])

    def stop(self) -> None:
        stop_tree(self.proc, signal.SIGINT)  # Ctrl-C: serve stops its children itself
        self.proc = None

    def processes(self) -> dict[str, int]:
        if self.proc is None:
            return {}
        table = process_table()
        root = self.proc.pid
        found = []
        for pid in sorted(tree(root, table)):
            parent, cmd = table[pid]
            app = "idp" if "idp_app" in cmd else "pki" if "pki_app" in cmd else None
            if pid == root:
                role = "serve"
            elif app:
                role = f"{app}_master" if parent == root else f"{app}_worker"
            elif "slapd" in cmd:
                role = "slapd"
            else:
                role = "other"
            found.append((role, pid))
        return label(found)

    def describe(self) -> str:
        return "govtrust serve (TLS in gunicorn, IdP and PKI gunicorn, managed slapd, SQLite)"


class Production(Shape):
    """nginx (TLS) -> ``govtrust node`` x N (plain HTTP) -> PostgreSQL; a plain slapd."""

    name = "production"

    def __init__(self, base: Path, *, nodes: int = 1, workers: int = 0, threads: int = 0,
                 keep: bool = False) -> None:
        super().__init__(base, workers=workers, threads=threads, keep=keep)
        if nodes < 1:
            raise ValueError("--nodes: at least one node")
        self.pg_dir = base / "pg"
        self.pg_port = free_port()
        self.ldap_port = free_port()
        tls, pki = free_port(), free_port()
        self.node_listen = [f"127.0.0.1:{free_port()}" for _ in range(nodes)]
        self.issuer = f"https://127.0.0.1:{tls}"
        self.pki_url = f"http://127.0.0.1:{pki}"
        self.database_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/govtrust"
        self.env.update(GOVTRUST_DATABASE_URL=self.database_url,
                        GOVTRUST_DIRECTORY_URIS=f"ldap://127.0.0.1:{self.ldap_port}",
                        GOVTRUST_IDP_LISTEN=f"127.0.0.1:{tls}", GOVTRUST_IDP_ISSUER=self.issuer,
                        GOVTRUST_PKI_LISTEN=f"127.0.0.1:{pki}",
                        GOVTRUST_PKI_PUBLIC_URL=self.pki_url,
                        GOVTRUST_IDP_TRUSTED_PROXIES="127.0.0.1")
        self.as_root = os.geteuid() == 0
        self.pg_started = False
        self.slapd: subprocess.Popen[bytes] | None = None
        self.nodes: list[subprocess.Popen[bytes]] = []
        self.nginx: subprocess.Popen[bytes] | None = None

    # -- PostgreSQL
    def _pg(self, *args: str) -> None:
        cmd = list(args)
        if self.as_root:  # initdb refuses root: the cluster belongs to postgres
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr[-1500:]}")

    def _postgres_start(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError("PostgreSQL 15 is not installed: run scripts/setup")
        self.pg_dir.mkdir()
        if self.as_root:
            shutil.chown(self.pg_dir, "postgres", "postgres")
        self._pg(str(PG_BIN / "initdb"), "-D", str(self.pg_dir / "data"), "-A", "trust",
                 "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8")
        # fsync stays on (its default; the folder is tmpfs all the same, like SQLite's).
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.pg_dir / "data"), "-l",
                 str(self.pg_dir / "log"), "-o", f"-p {self.pg_port} -k {self.pg_dir} "
                 "-c listen_addresses=127.0.0.1 -c max_connections=200", "-w", "start")
        self.pg_started = True
        done = subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p",
                               str(self.pg_port), "-U", "postgres", "govtrust"],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"createdb failed: {done.stderr}")

    def _postmaster(self) -> int | None:
        try:
            return int((self.pg_dir / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _postgres_stop(self) -> None:
        if not self.pg_started:
            return
        pid = self._postmaster()
        try:
            self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.pg_dir / "data"), "-m", "fast",
                     "-w", "-t", "30", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            if pid is not None:  # the postmaster and its backends: one process tree
                for p in tree(pid, process_table()):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.pg_started = False

    # -- the rest
    def _popen(self, cmd: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.logs / log, "wb") as out:
            return subprocess.Popen(cmd, env=self.env, start_new_session=True,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    def start(self) -> None:
        self._fresh()
        self._postgres_start()
        self.govtrust("init", "--demo")
        # The directory: the home's slapd (configured and seeded by init), run here as
        # the external one the nodes reach by URI; a node never starts its own. Also on
        # ldapi, where its operator changes cn=config, as the managed slapd listens.
        urls = f"ldap://127.0.0.1:{self.ldap_port}/" + (f" {self.ldapi}" if self.ldapi else "")
        self.slapd = self._popen([SLAPD, "-d", "0", "-F", str(self.home / "slapd" / "slapd.d"),
                                  "-h", urls], "slapd.log")
        wait_port(self.ldap_port, "slapd", self.slapd)
        extra = []
        if self.workers:
            extra += ["--workers", str(self.workers)]
        if self.threads:
            extra += ["--threads", str(self.threads)]
        for i, listen in enumerate(self.node_listen):
            self.nodes.append(self._popen([*GOVTRUST, "node", "--listen", listen, *extra],
                                          f"node-{i + 1}.log"))
        conf = self.base / "nginx.conf"
        nodes = [a for listen in self.node_listen for a in ("--node", listen)]
        self.govtrust("deploy", "nginx", "--out", str(conf), *nodes, "--run-dir",
                      str(self.base / "nginx"), *(["--user", "root"] if self.as_root else []))
        for listen in self.node_listen:
            wait_http(f"http://{listen}/jwks", False, f"govtrust node {listen}", self.nodes)
        self.nginx = run_nginx(conf, self.logs / "nginx-startup.log")
        wait_http(self.issuer + "/.well-known/openid-configuration", self.ca, "nginx",
                  [self.nginx, *self.nodes])

    def stop(self) -> None:
        try:
            stop_tree(self.nginx, signal.SIGQUIT)  # graceful: finish what is in flight
            for proc in self.nodes:
                stop_tree(proc, signal.SIGTERM)
            stop_tree(self.slapd, signal.SIGTERM)
        finally:
            self.nginx, self.nodes, self.slapd = None, [], None
            self._postgres_stop()

    def processes(self) -> dict[str, int]:
        table = process_table()
        found: list[tuple[str, int]] = []
        for root in self.nodes:
            for pid in sorted(tree(root.pid, table)):
                parent, cmd = table[pid]
                if pid == root.pid:
                    role = "node"
                elif "node_app" in cmd:
                    role = "node_master" if parent == root.pid else "node_worker"
                else:
                    role = "other"
                found.append((role, pid))
        if self.nginx is not None:
            found += [("nginx_master" if pid == self.nginx.pid else "nginx_worker", pid)
                      for pid in sorted(tree(self.nginx.pid, table))]
        if self.slapd is not None and self.slapd.pid in table:
            found.append(("slapd", self.slapd.pid))
        master = self._postmaster()
        if master is not None:
            found += [("postgres" if pid == master else "postgres_backend", pid)
                      for pid in sorted(tree(master, table))]
        return label(found)

    def describe(self) -> str:
        n = len(self.node_listen)
        return (f"nginx (TLS, client certificate forwarded) -> {n} govtrust node"
                f"{'s' if n > 1 else ''} (plain HTTP) -> PostgreSQL 15; external slapd")


def shape(name: str, base: Path, *, nodes: int = 1, workers: int = 0, threads: int = 0,
          keep: bool = False) -> Shape:
    """The shape called ``name`` (``serve`` or ``production``), not yet started."""
    if name == "serve":
        return Serve(base, workers=workers, threads=threads, keep=keep)
    if name == "production":
        return Production(base, nodes=nodes, workers=workers, threads=threads, keep=keep)
    raise ValueError(f"--shape: expected one of {', '.join(SHAPES)}, got {name!r}")
