"""Pooled, failing-over LDAP connections (python-ldap), for the gateway.

Connections are pooled and reused (binding costs a round trip; a TCP connect
more), each with a network and an operation timeout. Servers are tried in the
order of ``settings.uris`` (provider first, then replicas); a server that did
not answer is skipped for a few seconds, and a connection to a replica is
recycled after a while so the pool drifts back to the provider.

Two pools: admin connections bound as GovTrust's bind DN, and bind-only
connections on which people's simple binds run (a bind changes a connection's
identity, so those are used for nothing else). ``bind`` sends the password
policy request control (draft-behera-ldap-password-policy-10 §6) and returns its
response, also from a failed bind, where slapd reports a lockout or an expiry.

A person's bind is an Argon2id verification in slapd (19 MiB, one lane, ~25 ms of
one core), so ``settings.concurrent_binds`` may cap how many one process has in
flight (0: no cap). Past the directory's cores, more binds at once only share the
cores, and their 19 MiB each evict one another from the cache: 16 verifications
at once cost 27% more CPU each than 2 do. A bind waits for a slot at most
``settings.timeout`` seconds; then the directory counts as unavailable.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import ldap
from ldap.controls import DecodeControlTuples
from ldap.controls.ppolicy import PasswordPolicyControl
from ldap.ldapobject import LDAPObject

from directory.errors import DirectoryRefused, DirectoryUnavailable, InvalidValue
from directory.settings import DirectorySettings

T = TypeVar("T")

# Connection-level failures after which another server may do better.
DOWN = (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR, ldap.UNAVAILABLE, ldap.BUSY)
_DOWN_FOR = 5.0  # seconds a server that did not answer is skipped
_REPLICA_MAX_AGE = 60.0  # seconds before a connection to a non-first URI is recycled


@dataclass
class _Conn:
    obj: LDAPObject
    uri_index: int
    created: float


def open_connection(uri: str, timeout: float) -> LDAPObject:
    """An unbound connection to ``uri`` with GovTrust's options (LDAPv3, no referrals)."""
    obj = ldap.initialize(uri, bytes_mode=False)
    obj.set_option(ldap.OPT_NETWORK_TIMEOUT, timeout)
    obj.set_option(ldap.OPT_TIMEOUT, timeout)
    obj.set_option(ldap.OPT_REFERRALS, 0)
    obj.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
    return obj


class ConnectionPool:
    """Admin and bind-only connections to the first of ``settings.uris`` that answers."""

    def __init__(self, settings: DirectorySettings, *, pool_size: int = 4) -> None:
        if not settings.uris:
            raise InvalidValue("uris", "at least one directory URI is needed")
        self.settings = settings
        self._pool: queue.LifoQueue[_Conn] = queue.LifoQueue()
        self._binds: queue.LifoQueue[_Conn] = queue.LifoQueue()
        self._pool_size = pool_size
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._bind_slots = _slots(settings.concurrent_binds)

    def _connect(self, who: str | None, password: str | None) -> _Conn:
        """A new connection to the first server that answers, bound when ``who`` is set."""
        last = ""
        now = time.monotonic()
        order = [i for i, u in enumerate(self.settings.uris) if self._down_until.get(u, 0) <= now]
        # If every server was recently down, try them all again rather than fail blind.
        for i in order or range(len(self.settings.uris)):
            uri = self.settings.uris[i]
            obj = open_connection(uri, self.settings.timeout)
            try:
                if who is not None:
                    obj.simple_bind_s(who, password or "")
                else:
                    obj.whoami_s()
            except DOWN as exc:
                last = f"{uri}: {type(exc).__name__}"
                with self._lock:
                    self._down_until[uri] = time.monotonic() + _DOWN_FOR
                continue
            except ldap.INVALID_CREDENTIALS:
                raise DirectoryRefused("bind", who or "", "invalidCredentials",
                                       "GovTrust's bind DN or password is wrong") from None
            return _Conn(obj, i, time.monotonic())
        raise DirectoryUnavailable(self.settings.uris, last)

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # Forked (e.g. a pre-loading WSGI server): the parent's sockets are shared,
            # so this process starts with pools of its own and leaves those alone,
            # and with bind slots of its own (the cap is per process).
            self._pid = os.getpid()
            self._pool, self._binds = queue.LifoQueue(), queue.LifoQueue()
            self._bind_slots = _slots(self.settings.concurrent_binds)

    def _take(self, bound: bool) -> _Conn:
        self._check_fork()
        pool = self._pool if bound else self._binds
        while True:
            try:
                conn = pool.get_nowait()
            except queue.Empty:
                if bound:
                    return self._connect(self.settings.bind_dn, self.settings.bind_password)
                return self._connect(None, None)
            if conn.uri_index and time.monotonic() - conn.created > _REPLICA_MAX_AGE:
                _close(conn)
                continue
            return conn

    def _give(self, bound: bool, conn: _Conn) -> None:
        pool = self._pool if bound else self._binds
        if pool.qsize() < self._pool_size:
            pool.put(conn)
        else:
            _close(conn)

    def _mark_down(self, conn: _Conn) -> None:
        with self._lock:
            self._down_until[self.settings.uris[conn.uri_index]] = time.monotonic() + _DOWN_FOR
        _close(conn)
        # Pooled siblings on the same server are most likely dead too.
        for pool in (self._pool, self._binds):
            keep = []
            while True:
                try:
                    c = pool.get_nowait()
                except queue.Empty:
                    break
                if c.uri_index == conn.uri_index:
                    _close(c)
                else:
                    keep.append(c)
            for c in keep:
                pool.put(c)

    def _give_up(self, exc: Exception) -> bool:
        """After a timeout, try again only if another server is not known down: a
        server that did not answer within the timeout would only make the caller
        wait twice as long (a dead one refuses at once, so that one is retried,
        on a fresh connection, which is how the pool reconnects after a restart)."""
        if not isinstance(exc, ldap.TIMEOUT):
            return False
        now = time.monotonic()
        return all(self._down_until.get(u, 0) > now for u in self.settings.uris)

    def run(self, op: Callable[[LDAPObject], T]) -> T:
        """Run ``op`` on a pooled admin connection; on a dead server, retry elsewhere."""
        for attempt in range(len(self.settings.uris) + 1):
            conn = self._take(bound=True)
            try:
                result = op(conn.obj)
            except DOWN as exc:
                self._mark_down(conn)
                if attempt == len(self.settings.uris) or self._give_up(exc):
                    raise DirectoryUnavailable(self.settings.uris, type(exc).__name__) from None
                continue
            except BaseException:
                self._give(True, conn)
                raise
            self._give(True, conn)
            return result
        raise DirectoryUnavailable(self.settings.uris)

    def _answering(self) -> _Conn:
        """A pooled admin connection that answered a WhoAmI just now. A batch cannot
        be replayed on another connection halfway through, so it starts only on one
        known to be alive: a server restarted since the connection was pooled is
        found here, and the batch runs on a fresh connection instead."""
        for attempt in range(len(self.settings.uris) + 1):
            conn = self._take(bound=True)
            try:
                conn.obj.whoami_s()
            except DOWN as exc:
                self._mark_down(conn)
                if attempt == len(self.settings.uris) or self._give_up(exc):
                    raise DirectoryUnavailable(self.settings.uris, type(exc).__name__) from None
                continue
            return conn
        raise DirectoryUnavailable(self.settings.uris)

    @contextmanager
    def connection(self) -> Iterator[LDAPObject]:
        """A pooled admin connection for a batch of operations (no automatic retry
        once the batch has started; see :meth:`_answering`)."""
        conn = self._answering()
        try:
            yield conn.obj
        except DOWN as exc:
            self._mark_down(conn)
            raise DirectoryUnavailable(self.settings.uris, type(exc).__name__) from None
        except BaseException:
            self._give(True, conn)
            raise
        self._give(True, conn)

    def bind(self, dn: str, password: str) -> tuple[bool, Any]:
        """Simple bind with the ppolicy control on a bind-only pooled connection:
        (whether it succeeded, the ppolicy response control or None). Waits for one
        of ``settings.concurrent_binds`` slots first (see the module's docstring)."""
        self._check_fork()
        slots = self._bind_slots
        if slots is None:
            return self._bind(dn, password)
        if not slots.acquire(timeout=self.settings.timeout):
            raise DirectoryUnavailable(self.settings.uris, "busy: every bind slot taken")
        try:
            return self._bind(dn, password)
        finally:
            slots.release()

    def _bind(self, dn: str, password: str) -> tuple[bool, Any]:
        for attempt in range(len(self.settings.uris) + 1):
            conn = self._take(bound=False)
            try:
                msgid = conn.obj.simple_bind(dn, password, serverctrls=[PasswordPolicyControl()])
                _t, _d, _m, ctrls = conn.obj.result3(msgid, timeout=self.settings.timeout,
                                                     resp_ctrl_classes=RESPONSE_CONTROLS)
                ok, raw = True, ctrls
            except DOWN as exc:
                self._mark_down(conn)
                if attempt == len(self.settings.uris) or self._give_up(exc):
                    raise DirectoryUnavailable(self.settings.uris, "bind") from None
                continue
            except ldap.INVALID_CREDENTIALS as exc:
                ok, raw = False, exc_controls(exc)
            except ldap.LDAPError as exc:
                self._give(False, conn)
                raise refused("bind", dn, exc) from None
            self._give(False, conn)
            for ctrl in raw or []:
                if ctrl.controlType == PasswordPolicyControl.controlType:
                    return ok, ctrl
            return ok, None
        raise DirectoryUnavailable(self.settings.uris, "bind")

    def close(self) -> None:
        for pool in (self._pool, self._binds):
            while True:
                try:
                    _close(pool.get_nowait())
                except queue.Empty:
                    break


def _slots(size: int) -> threading.BoundedSemaphore | None:
    return threading.BoundedSemaphore(size) if size > 0 else None


class _PolicyResponse(PasswordPolicyControl):
    """The ppolicy response control, with a fast path for the usual empty value.

    slapd answers almost every bind with an empty ``SEQUENCE {}`` (no warning, no
    error); decoding that through pyasn1 cost more than the bind itself, halving
    the authentications per second. Anything else is decoded in full.
    """

    def decodeControlValue(self, encodedControlValue: bytes) -> None:
        if encodedControlValue in (b"", b"0\x00"):
            self.timeBeforeExpiration = None
            self.graceAuthNsRemaining = None
            self.error = None
            return
        super().decodeControlValue(encodedControlValue)


RESPONSE_CONTROLS = {PasswordPolicyControl.controlType: _PolicyResponse}


def exc_controls(exc: ldap.LDAPError) -> list[Any]:
    """Response controls carried by a failed operation's exception."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    raw = info.get("ctrls") or []
    if raw and isinstance(raw[0], tuple):
        try:
            return list(DecodeControlTuples(raw, RESPONSE_CONTROLS))
        except Exception:  # a malformed control must not turn a failed bind into an error
            return []
    return list(raw)


def refused(what: str, dn: str, exc: ldap.LDAPError) -> DirectoryRefused:
    """The typed error for an operation the server refused."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    detail = str(info.get("info", "") or info.get("desc", ""))
    return DirectoryRefused(what, dn, type(exc).__name__, detail)


def _close(conn: _Conn) -> None:
    try:
        conn.obj.unbind_s()
    except ldap.LDAPError:
        pass
