"""The directory failing under a running ``govtrust serve``: slapd SIGKILLed with
and without a replica, and a directory that answers slowly (a delaying TCP proxy
in front of a real slapd). Real processes; the IdP and PKI are served by serve's
own gunicorn; the directory here is external (``[directory] managed = false``)
so the test, not serve's supervisor, decides when it comes back.

Two ``govtrust serve`` runs (each start costs seconds): one with a single
directory URI, one with a provider and a replica; tests of one run share it and
run in file order.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from directory.slapd import ManagedSlapd
from idp.runtime.config import Config
from idp.web import catalog
from tests.fixtures.postgres import free_port
from tests.fixtures.served import DemoHome, Served

pytestmark = pytest.mark.slapd

UNAVAILABLE_ZH = catalog.text("zh-CN", "sso.msg.directory_unavailable")


def _slapd(home: DemoHome, folder: Path | None = None, port: int | None = None) -> ManagedSlapd:
    """The home's directory run by the test (or a copy of it on another port)."""
    settings = Config.load(home.home, environ=home.env).directory_settings()
    if folder is not None:
        settings = dataclasses.replace(settings, uris=(f"ldap://127.0.0.1:{port}",),
                                       data_dir=folder)
    return ManagedSlapd(settings)


def _sigkill(server: ManagedSlapd) -> None:
    pid = int(server.pid_file.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while server.is_running() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not server.is_running()


def _external(uris: str, **extra: str) -> dict[str, str]:
    return {"GOVTRUST_DIRECTORY_MANAGED": "false", "GOVTRUST_DIRECTORY_URIS": uris, **extra}


# -- one directory server, no replica ---------------------------------------------------

class Run:
    """One ``govtrust serve`` and the directory servers under it; closed by the next
    run's fixture (module-scoped fixtures would otherwise all live to the end of
    the module, two serves on the same ports)."""

    def __init__(self, demo_home: DemoHome, *servers: ManagedSlapd) -> None:
        self.demo_home = demo_home
        self.servers = servers
        self._serving: Any = None
        self.served: Served | None = None

    def start(self, **env: str) -> Served:
        self._serving = self.demo_home.serve(**env)
        self.served = self._serving.__enter__()
        return self.served

    def close(self) -> None:
        if self._serving is not None:
            self._serving.__exit__(None, None, None)
            self._serving = None
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def single_run(demo_home: DemoHome) -> Iterator[Run]:
    server = _slapd(demo_home)
    run = Run(demo_home, server)
    try:
        server.start()
        run.start(**_external(server.uri))
        yield run
    finally:
        run.close()


@pytest.fixture
def single(single_run: Run) -> tuple[Served, ManagedSlapd]:
    assert single_run.served is not None
    return single_run.served, single_run.servers[0]


def test_without_a_replica_a_killed_slapd_makes_login_503_with_retry_after(
        single: tuple[Served, ManagedSlapd]) -> None:
    served, server = single
    uid, password = served_account(served)
    assert served.login(uid, password).status_code == 302  # pooled connections exist
    submit = served.login_form()  # mid-login: the form is on the screen
    _sigkill(server)
    started = time.monotonic()
    page = submit(uid, password)
    assert time.monotonic() - started < 3  # a dead server refuses at once
    assert page.status_code == 503
    assert page.headers["Retry-After"] == "5"
    assert UNAVAILABLE_ZH in page.text


def test_without_the_directory_the_other_endpoints_keep_answering(
        single: tuple[Served, ManagedSlapd]) -> None:
    served, server = single
    assert not server.is_running()
    s = served.session()
    assert s.get(served.issuer + "/.well-known/openid-configuration", timeout=5).ok
    assert s.get(served.issuer + "/jwks", timeout=5).json()["keys"]
    token = served.client_credentials()
    assert token.status_code == 200 and token.json()["access_token"]
    ocsp = served.ocsp()
    assert ocsp.status_code == 200
    assert ocsp.headers["Content-Type"] == "application/ocsp-response"
    # The IdP says why it is not ready; the PKI's public service needs no directory.
    ready = s.get(served.issuer + "/readyz", timeout=5)
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["directory"].startswith("unreachable: DirectoryUnavailable"), checks
    assert {k: v for k, v in checks.items() if k != "directory"} == {
        "database": "ok", "ca.issuing": "ok", "ca.ocsp": "ok", "ca.root-crl": "ok",
        "idp.token": "ok"}
    pki = requests.get(served.pki_url + "/readyz", timeout=5)
    assert pki.status_code == 200 and "directory" not in pki.json()["checks"]


def test_logins_work_again_when_slapd_is_back_without_restarting_serve(
        single: tuple[Served, ManagedSlapd]) -> None:
    served, server = single
    uid, password = served_account(served)
    server.start()
    deadline = time.monotonic() + 10
    while served.login(uid, password).status_code != 302:
        assert time.monotonic() < deadline, "logins did not come back"
        time.sleep(0.2)
    assert served.proc.poll() is None  # the same serve, never restarted
    assert "restart" not in served.output()
    _wait_ready(served)


def _wait_ready(served: Served) -> None:
    deadline = time.monotonic() + 5  # readiness is cached for about a second
    while served.session().get(served.issuer + "/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def served_account(served: Served) -> tuple[str, str]:
    from tests.fixtures.served import PERSON_PASSWORD, PERSON_UID

    return PERSON_UID, PERSON_PASSWORD


# -- a provider and a replica (the replica behind a proxy that can be slowed) -------------

class SlowProxy:
    """A TCP proxy on 127.0.0.1 that holds every reply from the server for
    ``delay`` seconds before passing it on (threads, one pair per connection)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.delay = 0.0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._open += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, reply: bool) -> None:
        try:
            while data := src.recv(65536):
                if reply and self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stopped = True
        self.listener.close()
        for sock in self._open:
            sock.close()


@pytest.fixture(scope="module")
def replicated(demo_home: DemoHome, tmp_path_factory: pytest.TempPathFactory,
               single_run: Run
               ) -> Iterator[tuple[Served, ManagedSlapd, ManagedSlapd, SlowProxy]]:
    single_run.close()
    provider = _slapd(demo_home)
    provider.start()
    # The replica holds the same entries, entryUUIDs included (what a syncrepl
    # consumer converges to): slapcat from the provider, slapadd into a fresh
    # server of its own (its own cn=config, folder and port).
    dump = subprocess.run(["/usr/sbin/slapcat", "-F", str(provider.config_dir),
                           "-b", provider.settings.base_dn], capture_output=True, check=True,
                          timeout=30).stdout
    replica = _slapd(demo_home, tmp_path_factory.mktemp("replica") / "slapd", free_port())
    replica.configure()
    subprocess.run(["/usr/sbin/slapadd", "-F", str(replica.config_dir), "-b",
                    replica.settings.base_dn, "-q"], input=dump, capture_output=True,
                   check=True, timeout=30)
    run = Run(demo_home, replica, provider)
    proxy = SlowProxy(("127.0.0.1", replica.port))
    try:
        replica.start()
        uris = f"{provider.uri},ldap://127.0.0.1:{proxy.port}"
        served = run.start(**_external(uris, GOVTRUST_DIRECTORY_TIMEOUT="2"))
        yield served, provider, replica, proxy
    finally:
        proxy.close()
        run.close()


def test_with_a_replica_a_killed_provider_fails_logins_for_at_most_a_second(
        replicated: tuple[Served, ManagedSlapd, ManagedSlapd, SlowProxy]) -> None:
    served, provider, _replica, _proxy = replicated
    uid, password = served_account(served)
    assert served.login(uid, password).status_code == 302
    failures: list[float] = []
    ok_after_kill = 0
    killed_at = 0.0
    end = time.monotonic() + 3.5
    while time.monotonic() < end:
        if not killed_at and time.monotonic() > end - 3:
            _sigkill(provider)  # mid-run: logins are going on around it
            killed_at = time.monotonic()
        status = served.login(uid, password).status_code
        if status != 302:
            failures.append(time.monotonic())
        elif killed_at:
            ok_after_kill += 1
    assert killed_at and ok_after_kill >= 3
    assert not failures or failures[-1] - killed_at <= 1.0, failures


def test_a_slow_directory_fails_a_login_at_the_timeout_and_starves_no_one(
        replicated: tuple[Served, ManagedSlapd, ManagedSlapd, SlowProxy]) -> None:
    served, provider, _replica, proxy = replicated
    assert not provider.is_running()  # the previous test killed it: only the slow one is left
    uid, password = served_account(served)
    proxy.delay = 6.0  # longer than [directory] timeout = 2
    s = served.session()
    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        hanging = [pool.submit(served.login, uid, password) for _ in range(2)]
        time.sleep(0.5)  # both logins are now waiting on the directory
        for _ in range(3):  # one gunicorn worker with 4 threads: 2 are held
            t = time.monotonic()
            assert s.get(served.issuer + "/.well-known/openid-configuration", timeout=5).ok
            assert served.client_credentials(timeout=5).status_code == 200
            assert time.monotonic() - t < 1.5
        pages = [f.result(timeout=15) for f in hanging]
        took = time.monotonic() - started
    for page in pages:
        assert page.status_code == 503
        assert UNAVAILABLE_ZH in page.text
        assert page.headers["Retry-After"] == "5"
    # At the configured timeout (2 s), not twice it, and not the proxy's 6 s.
    assert 1.8 <= took < 5.0, took
    proxy.delay = 0.0
