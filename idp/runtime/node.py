"""``govtrust node``: one stateless web node of a deployment with several.

A node runs only the web apps — the IdP and the PKI's public service, one
granian (WSGI, as ``govtrust serve`` runs the PKI's service) on one plain-HTTP port
(``idp.runtime.wsgi:node_app``) — behind nginx,
which terminates TLS and forwards the client certificate (``govtrust deploy
nginx``). It runs no managed slapd (it uses ``[directory] uris``) and no TLS.

Nodes share one PostgreSQL database, so a node refuses to start on SQLite (a
file on one machine is not shared) or on a database it cannot reach or cannot
write to (a read-only standby), and says why. Every request's state lives in
the database: SSO sessions, codes, tokens, throttle counters, OTP secrets and
the audit chain. What a worker keeps in memory is a cache of shared state —
clients, IdP signing keys, the OCSP responder certificate, pre-signed OCSP
responses (each checked on every request against the status generation, which
every revocation moves in its transaction, so a revocation is seen at once) — and
a change made through one node reaches the others through PostgreSQL LISTEN/NOTIFY
(``idp.runtime.changes``) within a second.

Background duties (CRL and OCSP refresh, outbox, logout retries, key rotation)
are offered by every node's supervisor loop; each is run by exactly one node at a
time, the holder of its PostgreSQL advisory lock (``idp.runtime.duties``), and
another node takes it over within one period when the holder dies.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import click
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError

from idp.runtime.config import Config
from idp.runtime.serve import Supervisor
from idp.runtime.services import Services

DEFAULT_LISTEN = "127.0.0.1:8000"
CONNECT_TIMEOUT_SECONDS = 5


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class NodeRefused(Exception):
    """The node cannot serve with this configuration; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def safe_url(url: str) -> str:
    """The database URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def check_database(url: str) -> None:
    """Raise :class:`NodeRefused` unless ``url`` is a PostgreSQL database this node
    can reach and write to."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise NodeRefused(f"[database] url is not a database URL: {safe_url(url)}") from None
    if parsed.get_backend_name() != "postgresql":
        raise NodeRefused(
            f"[database] url is {parsed.get_backend_name()} ({safe_url(url)}): nodes share one "
            "PostgreSQL database; a SQLite file serves one machine only (use `govtrust serve`)")
    engine = create_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})
    try:
        with engine.connect() as conn:
            read_only = conn.execute(text("SHOW transaction_read_only")).scalar()
    except DBAPIError as exc:
        # The driver's first line names the cause (refused, timeout, bad password)
        # without the password itself.
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise NodeRefused(f"cannot reach the database {safe_url(url)}: {first}") from None
    finally:
        engine.dispose()
    if read_only == "on":
        raise NodeRefused(f"the database {safe_url(url)} is read-only (a standby?): a node "
                          "needs the primary (libpq target_session_attrs=read-write)")


class Node(Supervisor):
    """One granian with the node app; supervised like ``govtrust serve``'s children."""

    def __init__(self, services: Services, listen: str, workers: int, threads: int, *,
                 echo: Callable[[str], None] = click.echo) -> None:
        super().__init__(services, echo=echo)
        self.listen = listen
        self.workers = workers
        self.threads = threads

    def start(self) -> dict[str, str]:
        self._granian("node", "idp.runtime.wsgi:node_app", self.listen, self.workers,
                      self.threads)
        self._wait_for_port(self.listen)
        return {"node": f"http://{self.listen}"}

    def tick(self) -> None:
        """The duties this node holds (the same runner ``govtrust serve`` ticks)."""
        self.services.duties.tick()


@click.command()
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True,
              help="HOST:PORT of this node's plain-HTTP port (loopback or a private address).")
@click.option("--workers", type=click.IntRange(0), default=0,
              help="Worker processes (0 = one per core).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Threads per worker (default [idp] threads).")
@click.pass_obj
def node(services: Services, listen: str, workers: int, threads: int | None) -> None:
    """Run one stateless web node (IdP + PKI, plain HTTP) behind nginx, on PostgreSQL."""
    config = services.config
    if not config.initialized:
        raise click.ClickException(
            f"{config.home} is not a GovTrust home: run `govtrust init` first")
    try:
        check_database(config.database_url)
    except NodeRefused as exc:
        raise click.ClickException(f"node refused to start: {exc.reason}") from None
    # The workers read the home's configuration; a node never runs the managed slapd
    # (each node's workers would start their own), it uses [directory] uris.
    os.environ["GOVTRUST_DIRECTORY_MANAGED"] = "false"
    services = Services(Config.load(config.home), json_output=services.json)
    supervisor = Node(services, listen, workers or _cores(),
                      threads or int(config.get("idp", "threads")))
    try:
        for name, url in supervisor.start().items():
            click.echo(f"{name:>12}: {url}")
        click.echo("GovTrust node is running. Ctrl-C or SIGTERM stops it.")
        supervisor.run_forever()
    finally:
        supervisor.stop()
