"""``govtrust serve`` and ``govtrust demo``: everything on one machine.

A small supervisor: it starts the managed slapd, then granian (workers sized to
the cores) for the PKI's public service over plain HTTP, gunicorn for the IdP over
TLS with a server certificate from our own CA (asking for an optional client
certificate), and, for the demo, the sample department app. The PKI's service is
nearly all OCSP, answered in front of Flask (``pki.http.OCSPFastPath``): there the
HTTP server is most of the cost, and granian's (Rust, keep-alive) answered a kept
OCSP answer about 4.5 times as fast as gunicorn's gthread workers
(``scripts/bench/pki.py --ocsp-server gthread --ocsp-server granian``). In its own loop it
delivers lifecycle events from the outbox and keeps CRLs and the OCSP
responder certificate fresh (``Services.duties``: on PostgreSQL only where this
node holds the duty's advisory lock). Ctrl-C (SIGINT) or SIGTERM stops everything.

Metrics: the workers share ``home/run/metrics`` (``PROMETHEUS_MULTIPROC_DIR``,
emptied at start), so ``/metrics`` on any worker adds up all of them.

One rule for every child (slapd, each gunicorn or granian master, the sample app): when it
dies it is restarted after a backoff that doubles with each death, and the
restart is logged; a child that dies more than ``[serve] restart_limit`` times
within ``restart_window`` seconds makes serve stop everything and exit non-zero,
so systemd (``Restart=on-failure``) restarts the whole. Never a half-alive
server: no IdP without its directory, no orphaned workers of a dead master.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import click

from idp.runtime.config import Config, ConfigError
from idp.runtime.services import Services

if TYPE_CHECKING:
    from directory.slapd import ManagedSlapd

TICK_SECONDS = 1.0
# How often children are looked at between two rounds of background duties.
POLL_SECONDS = 0.2
MAX_BACKOFF = 30.0


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host or "127.0.0.1", int(port)


def refuse_taken(listen: str) -> None:
    """Refuse to serve on ``listen`` when a socket is listening there already.

    The IdP's gunicorn runs with ``--reuse-port``, which lets a second server of the
    same user bind the same address beside the first and take a share of its
    connections; without it that bind failed. A plain bind (SO_REUSEADDR, so only
    a listening socket counts, not connections in TIME_WAIT) keeps the refusal."""
    import socket

    host, port = _host_port(listen)
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.create_server((host, port), family=family).close()
    except OSError as exc:
        raise click.ClickException(f"{listen} is in use: {exc.strerror}") from None


class Child(Protocol):
    """A process serve keeps alive."""

    name: str

    def start(self) -> None: ...

    def alive(self) -> bool: ...

    def exit_status(self) -> str: ...

    def stop(self) -> None: ...


def die_with_parent() -> None:
    """In a child, before exec: ask Linux to SIGTERM it when the supervisor dies
    (``PR_SET_PDEATHSIG``), so a supervisor killed with SIGKILL leaves no gunicorn
    serving on its own: never a half-alive server."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


class ProcessChild:
    """A command in its own process group (a gunicorn master and its workers).

    Its own group, so that Ctrl-C reaches serve alone (which stops children in
    order) and so that the workers of a master that was killed can be killed
    with it: orphaned workers would keep the port and serve half a server.
    """

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, env=self.env, start_new_session=True,
                                     preexec_fn=die_with_parent)

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is None:
            return self.proc is not None
        self._kill_group()  # the master is gone: its workers go too
        return False

    def exit_status(self) -> str:
        code = self.proc.returncode if self.proc is not None else None
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def _kill_group(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def terminate(self) -> None:
        """SIGTERM to the master (a graceful stop of its workers), not waiting."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._kill_group()


class SlapdChild:
    """The managed slapd (``directory.slapd.ManagedSlapd`` starts and waits for it)."""

    name = "slapd"

    def __init__(self, slapd: ManagedSlapd) -> None:
        self.slapd = slapd

    def start(self) -> None:
        self.slapd.start()

    def alive(self) -> bool:
        return self.slapd.is_running()

    def exit_status(self) -> str:
        return "is not running"

    def stop(self) -> None:
        self.slapd.stop()


@dataclass(frozen=True)
class RestartPolicy:
    """``[serve] restart_limit / restart_window / restart_backoff``."""

    limit: int = 5
    window: float = 60.0
    backoff: float = 0.5

    @classmethod
    def from_config(cls, config: Config) -> RestartPolicy:
        policy = cls(limit=int(config.get("serve", "restart_limit")),
                     window=float(config.get("serve", "restart_window")),
                     backoff=float(config.get("serve", "restart_backoff")))
        if policy.limit < 0:
            raise ConfigError("[serve] restart_limit", "must be 0 (never restart) or more")
        if policy.backoff < 0:
            raise ConfigError("[serve] restart_backoff", "must be 0 or more seconds")
        if policy.window <= 0:
            raise ConfigError("[serve] restart_window", "must be more than 0 seconds")
        if policy.backoff > MAX_BACKOFF:
            raise ConfigError("[serve] restart_backoff", f"at most {MAX_BACKOFF:g} seconds")
        return policy


@dataclass
class _Watch:
    child: Child
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None


class GaveUp(Exception):
    """A child kept dying: serve stops everything and exits non-zero."""

    def __init__(self, name: str, deaths: int, window: float) -> None:
        self.name = name
        super().__init__(f"{name} died {deaths} times within {window:g} s; stopping "
                         "everything so the service manager can restart GovTrust")


class Children:
    """The restart rule, apart from what the children are (tested on its own)."""

    def __init__(self, policy: RestartPolicy, echo: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.echo = echo
        self.clock = clock
        self.watches: list[_Watch] = []

    def add(self, child: Child) -> None:
        """Start ``child`` and watch it from now on."""
        child.start()
        self.watches.append(_Watch(child))

    def check(self) -> None:
        """Notice deaths, restart what is due; raises :class:`GaveUp`."""
        now = self.clock()
        for watch in self.watches:
            child = watch.child
            if watch.restart_at is None:
                if child.alive():
                    continue
                while watch.deaths and now - watch.deaths[0] > self.policy.window:
                    watch.deaths.popleft()
                watch.deaths.append(now)
                if len(watch.deaths) > self.policy.limit:
                    self.echo(f"{child.name} {child.exit_status()}")
                    raise GaveUp(child.name, len(watch.deaths), self.policy.window)
                delay = min(self.policy.backoff * 2 ** (len(watch.deaths) - 1), MAX_BACKOFF)
                watch.restart_at = now + delay
                self.echo(f"{child.name} {child.exit_status()}; restarting in {delay:g} s "
                          f"(death {len(watch.deaths)} of at most {self.policy.limit} "
                          f"in {self.policy.window:g} s)")
            elif now >= watch.restart_at:
                watch.restart_at = None
                try:
                    child.start()
                except Exception as exc:  # counted as another death at the next check
                    self.echo(f"{child.name} failed to start: {type(exc).__name__}: {exc}")
                else:
                    self.echo(f"{child.name} restarted")

    def stop(self) -> None:
        """Stop in reverse order of start: the web servers before their directory.
        Every process child is told first and waited for after, so their graceful
        shutdowns overlap instead of adding up."""
        for watch in reversed(self.watches):
            if isinstance(watch.child, ProcessChild):
                watch.child.terminate()
        for watch in reversed(self.watches):
            try:
                watch.child.stop()
            except Exception as exc:  # stop the others regardless
                self.echo(f"stopping {watch.child.name} failed: {exc}")


def tls_arguments(cert: Path, key: Path, chain: Path) -> list[str]:
    """gunicorn's options for the IdP's HTTPS front: its files, an optional client
    certificate, and the TLS policy hook (idp/runtime/gunicorn_tls.py)."""
    # CERT_OPTIONAL (1): ask for a client certificate, accept none; the
    # IdP validates what it gets itself (path, validity, revocation).
    return ["--certfile", str(cert), "--keyfile", str(key), "--ca-certs", str(chain),
            "--cert-reqs", "1", "-c", "python:idp.runtime.gunicorn_tls"]


def granian_command(factory: str, listen: str, workers: int, threads: int) -> list[str]:
    """granian serving the WSGI app ``factory`` (``module:function``) on ``listen``.

    Blocking threads play gunicorn's threads (each may hold a database connection:
    more would outrun the pool); no websockets.
    """
    host, port = _host_port(listen)
    cmd = [sys.executable, "-m", "granian", "--interface", "wsgi", "--factory",
           "--host", host.strip("[]"), "--port", str(port), "--workers", str(workers),
           "--blocking-threads", str(max(1, threads)), "--no-ws",
           "--workers-kill-timeout", "5", "--log-level", "warning"]
    if os.environ.get("GOVTRUST_ACCESS_LOG"):
        cmd.append("--access-log")
    return [*cmd, factory]


class Supervisor:
    def __init__(self, services: Services, *, echo: Callable[[str], None] = click.echo,
                 sample_app: bool = False) -> None:
        self.services = services
        self.config: Config = services.config
        self.echo = echo
        self.sample_app = sample_app
        self.children = Children(RestartPolicy.from_config(self.config), echo)
        self._stopping = False

    # -- children -----------------------------------------------------------
    def _gunicorn(self, name: str, factory: str, listen: str, workers: int, threads: int,
                  tls: tuple[Path, Path, Path] | None) -> None:
        # gthread workers keep connections alive: with sync workers every request
        # paid a new TCP (and TLS) handshake, six times slower in scripts/bench/idp.py.
        # No --access-logfile: gunicorn would format a line for every request, even
        # into /dev/null; the apps write their own ([serve] access_log, idp.runtime.edge).
        # --reuse-port: each worker listens on a socket of its own (SO_REUSEPORT) and
        # the kernel spreads new connections over them. On the one shared socket,
        # whichever worker woke first accepted a whole burst of connections, and kept
        # them alive: in scripts/bench/idp.py all 16 of the load client's went to one
        # worker (one process, one core), and introspection fell to 0.10x bare.
        cmd = [sys.executable, "-m", "gunicorn", factory, "--bind", listen,
               "--workers", str(workers), "--worker-class", "gthread",
               "--threads", str(max(1, threads)), "--keep-alive", "15", "--timeout", "60",
               "--graceful-timeout", "5", "--log-level", "warning", "--reuse-port"]
        if tls is not None:
            cmd += tls_arguments(*tls)
        env = dict(os.environ, GOVTRUST_HOME=str(self.config.home))
        self.children.add(ProcessChild(name, cmd, env))

    def _granian(self, name: str, factory: str, listen: str, workers: int,
                 threads: int) -> None:
        env = dict(os.environ, GOVTRUST_HOME=str(self.config.home))
        self.children.add(ProcessChild(name, granian_command(factory, listen, workers,
                                                             threads), env))

    def _wait_for_port(self, listen: str, deadline: float = 20.0) -> None:
        import socket

        host, port = _host_port(listen)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for watch in self.children.watches:
                if not watch.child.alive():
                    raise click.ClickException(f"{watch.child.name} "
                                               f"{watch.child.exit_status()}")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise click.ClickException(f"nothing answered on {listen} within {deadline:.0f} s")

    # -- lifecycle ------------------------------------------------------------
    def _metrics_dir(self) -> None:
        # Set before prometheus-client is imported here or in a worker: it picks
        # its storage at import. Old files would add a dead run's counts.
        import shutil

        folder = self.config.home / "run" / "metrics"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, mode=0o700)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)

    def start(self) -> dict[str, str]:
        services = self.services
        self._metrics_dir()
        from idp.runtime import logs, metrics

        logs.configure(str(self.config.get("serve", "log_format")))
        # The duties run here: what they audit (revocations on departure) counts too.
        metrics.watch_audit(services.engine)
        urls: dict[str, str] = {}
        # The children write to the same stdout and stderr: what this process has
        # printed (the demo's accounts) goes out first, not when its buffer fills.
        sys.stdout.flush()
        sys.stderr.flush()
        settings = self.config.directory_settings()
        if settings.managed:
            slapd = services.slapd
            # A slapd this serve did not start (left running by a CLI command or
            # an earlier serve) is used, not supervised: it is not ours to restart.
            if not slapd.is_running():
                self.children.add(SlapdChild(slapd))
        urls["directory"] = settings.uris[0]

        pki_listen = str(self.config.get("pki", "listen"))
        self._granian("pki", "idp.runtime.wsgi:pki_app", pki_listen, _cores(), 4)
        urls["pki"] = str(self.config.get("pki", "public_url"))

        tls = services.tls_server_files()
        idp_listen = str(self.config.get("idp", "listen"))
        workers = int(self.config.get("idp", "workers")) or _cores()
        threads = int(self.config.get("idp", "threads"))
        refuse_taken(idp_listen)
        self._gunicorn("idp", "idp.runtime.wsgi:idp_app()", idp_listen, workers, threads, tls)
        urls["idp"] = str(self.config.get("idp", "issuer"))
        urls["console"] = urls["idp"].rstrip("/") + "/console/"

        if self.sample_app:
            self._start_sample_app(tls[2])
            urls["sample app"] = self._sample_url() + "/"

        self._wait_for_port(pki_listen)
        self._wait_for_port(idp_listen)
        if self.sample_app:
            self._wait_for_port(urlsplit(self._sample_url()).netloc)
        return urls

    def _sample_url(self) -> str:
        return str(self.config.get("demo", "sample_app_url")).rstrip("/")

    def _start_sample_app(self, chain: Path) -> None:
        client_file = self.config.home / "sample-app-client.json"
        script = Path(__file__).resolve().parents[2] / "scripts" / "sample_app.py"
        env = dict(os.environ, GOVTRUST_HOME=str(self.config.home))
        cmd = [sys.executable, str(script), "--issuer", str(self.config.get("idp", "issuer")),
               "--client-file", str(client_file), "--ca-bundle", str(chain),
               "--listen", urlsplit(self._sample_url()).netloc]
        self.children.add(ProcessChild("sample app", cmd, env))

    def tick(self) -> None:
        """Background duties of the supervisor, one round (those this node holds)."""
        self.services.duties.tick()

    def run_forever(self) -> None:
        """Serve until a signal (returns) or a child that keeps dying (:class:`GaveUp`)."""
        def stop(_signum: int, _frame: Any) -> None:
            self._stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        next_tick = 0.0
        while not self._stopping:
            self.children.check()
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK_SECONDS
                try:
                    self.tick()
                except Exception as exc:  # keep serving; the next tick retries
                    self.echo(f"background duty failed: {type(exc).__name__}: {exc}")
            time.sleep(POLL_SECONDS)

    def stop(self) -> None:
        if "duties" in self.services.__dict__:
            self.services.duties.stop()  # give the locks back at once
        self.children.stop()


def run(services: Services, *, sample_app: bool) -> None:
    if not services.config.initialized:
        raise click.ClickException(
            f"{services.config.home} is not a GovTrust home: run `govtrust init` first")
    supervisor = Supervisor(services, sample_app=sample_app)
    try:
        urls = supervisor.start()
        for name, url in urls.items():
            click.echo(f"{name:>12}: {url}")
        click.echo("GovTrust is running. Ctrl-C stops everything.")
        supervisor.run_forever()
    except GaveUp as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        supervisor.stop()


@click.command()
@click.pass_obj
def serve(services: Services) -> None:
    """Run everything on this machine; print the URLs; Ctrl-C stops all."""
    run(services, sample_app=False)


@click.command()
@click.pass_obj
def demo(services: Services) -> None:
    """`init --demo` if needed, then serve with the sample department app."""
    from idp.runtime.home import initialize

    if not services.config.initialized:
        initialize(services, demo=True, echo=click.echo)
        services = Services(Config.load(services.config.home), json_output=services.json)
    accounts = services.config.home / "demo-accounts.txt"
    if accounts.exists():
        click.echo(accounts.read_text(encoding="utf-8"))
    run(services, sample_app=True)
