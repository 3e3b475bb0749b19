"""``govtrust serve`` and ``govtrust demo``: everything on one machine.

A small supervisor: it starts the managed slapd, then gunicorn (workers sized
to the cores) for the PKI's public service over plain HTTP and for the IdP over
TLS with a server certificate from our own CA (asking for an optional client
certificate), and, for the demo, the sample department app. In its own loop it
delivers lifecycle events from the outbox and keeps CRLs and the OCSP
responder certificate fresh. Ctrl-C (SIGINT) or SIGTERM stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from idp.runtime.config import Config
from idp.runtime.services import Services

TICK_SECONDS = 1.0


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host or "127.0.0.1", int(port)


def tls_arguments(cert: Path, key: Path, chain: Path) -> list[str]:
    """gunicorn's options for the IdP's HTTPS front: its files, an optional client
    certificate, and the TLS policy hook (idp/runtime/gunicorn_tls.py)."""
    # CERT_OPTIONAL (1): ask for a client certificate, accept none; the
    # IdP validates what it gets itself (path, validity, revocation).
    return ["--certfile", str(cert), "--keyfile", str(key), "--ca-certs", str(chain),
            "--cert-reqs", "1", "-c", "python:idp.runtime.gunicorn_tls"]


class Supervisor:
    def __init__(self, services: Services, *, echo: Callable[[str], None] = click.echo,
                 sample_app: bool = False) -> None:
        self.services = services
        self.config: Config = services.config
        self.echo = echo
        self.sample_app = sample_app
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._stopping = False
        self._started_slapd = False

    # -- children -----------------------------------------------------------
    def _gunicorn(self, name: str, factory: str, listen: str, workers: int, threads: int,
                  tls: tuple[Path, Path, Path] | None) -> None:
        # gthread workers keep connections alive: with sync workers every request
        # paid a new TCP (and TLS) handshake, six times slower in scripts/bench/idp.py.
        cmd = [sys.executable, "-m", "gunicorn", factory, "--bind", listen,
               "--workers", str(workers), "--worker-class", "gthread",
               "--threads", str(max(1, threads)), "--keep-alive", "15", "--timeout", "60",
               "--graceful-timeout", "5", "--log-level", "warning", "--access-logfile", "-"
               if os.environ.get("GOVTRUST_ACCESS_LOG") else "/dev/null"]
        if tls is not None:
            cmd += tls_arguments(*tls)
        env = dict(os.environ, GOVTRUST_HOME=str(self.config.home))
        self.children.append((name, subprocess.Popen(cmd, env=env)))

    def _wait_for_port(self, listen: str, deadline: float = 20.0) -> None:
        import socket

        host, port = _host_port(listen)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for name, child in self.children:
                if child.poll() is not None:
                    raise click.ClickException(f"{name} exited with status {child.returncode}")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise click.ClickException(f"nothing answered on {listen} within {deadline:.0f} s")

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> dict[str, str]:
        services = self.services
        urls: dict[str, str] = {}
        settings = self.config.directory_settings()
        if settings.managed:
            slapd = services.slapd
            if not slapd.is_running():
                slapd.start()
                self._started_slapd = True
        urls["directory"] = settings.uris[0]

        pki_listen = str(self.config.get("pki", "listen"))
        self._gunicorn("pki", "idp.runtime.wsgi:pki_app()", pki_listen, _cores(), 4, None)
        urls["pki"] = str(self.config.get("pki", "public_url"))

        tls = services.tls_server_files()
        idp_listen = str(self.config.get("idp", "listen"))
        workers = int(self.config.get("idp", "workers")) or _cores()
        threads = int(self.config.get("idp", "threads"))
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
        self.children.append(("sample app", subprocess.Popen(cmd, env=env)))

    def tick(self) -> None:
        """Background duties of the supervisor, one round."""
        self.services.background_tick()

    def run_forever(self) -> None:
        def stop(_signum: int, _frame: Any) -> None:
            self._stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not self._stopping:
            for name, child in self.children:
                if child.poll() is not None:
                    self.echo(f"{name} exited with status {child.returncode}; stopping")
                    self._stopping = True
            try:
                self.tick()
            except Exception as exc:  # keep serving; the next tick retries
                self.echo(f"background duty failed: {type(exc).__name__}: {exc}")
            time.sleep(TICK_SECONDS)

    def stop(self) -> None:
        for _name, child in self.children:
            if child.poll() is None:
                child.terminate()
        for _name, child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if self._started_slapd:
            self.services.slapd.stop()


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
