"""The directory gateway: every LDAP operation GovTrust performs, over python-ldap.

Connections are pooled and reused (binding costs a round trip; a TCP connect
more), each with a network and an operation timeout. Servers are tried in the
order of ``settings.uris`` (provider first, then replicas); a server that did
not answer is skipped for a few seconds, and a connection to a replica is
recycled after a while so the pool drifts back to the provider. Filters are
built only with ``ldap.filter.filter_format`` and DNs only with ``ldap.dn``
helpers: user input never becomes LDAP syntax.

``authenticate`` binds as the person with the password policy request control
(draft-behera-ldap-password-policy-10 §6) and reads the response control, also
from a failed bind, where slapd reports a lockout or an expired password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import ldap
import ldap.dn
import ldap.filter
import ldap.modlist
from ldap.controls import DecodeControlTuples, RequestControl
from ldap.controls.ppolicy import PasswordPolicyControl
from ldap.extop import ExtendedRequest
from ldap.ldapobject import LDAPObject
from pyasn1.codec.ber import encoder as ber
from pyasn1.type import namedtype, univ

from directory import entries
from directory.entries import Attrs, Change
from directory.errors import (
    AlreadyExists,
    DirectoryRefused,
    DirectoryUnavailable,
    InvalidValue,
    NotFound,
)
from directory.model import AuthOutcome, AuthResult, Person, PersonStatus
from directory.settings import DirectorySettings

T = TypeVar("T")

UID_RE = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
SCOPES = {"base": ldap.SCOPE_BASE, "one": ldap.SCOPE_ONELEVEL, "sub": ldap.SCOPE_SUBTREE}
_OPS = {"add": ldap.MOD_ADD, "delete": ldap.MOD_DELETE, "replace": ldap.MOD_REPLACE}
# ppolicy response errors (draft-behera §6.2): passwordExpired, accountLocked, changeAfterReset.
_PP_EXPIRED, _PP_LOCKED, _PP_CHANGE_AFTER_RESET = 0, 1, 2
_PP_ERRORS = {0: "passwordExpired", 1: "accountLocked", 2: "changeAfterReset",
              3: "passwordModNotAllowed", 4: "mustSupplyOldPassword",
              5: "insufficientPasswordQuality", 6: "passwordTooShort",
              7: "passwordTooYoung", 8: "passwordInHistory"}
# Connection-level failures after which another server may do better.
_DOWN = (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR, ldap.UNAVAILABLE, ldap.BUSY)
_DOWN_FOR = 5.0  # seconds a server that did not answer is skipped
_REPLICA_MAX_AGE = 60.0  # seconds before a connection to a non-first URI is recycled
_ASYNC_WINDOW = 256  # outstanding asynchronous operations per connection
_TXN_BATCH = 500  # operations per LDAP transaction in bulk writes
# RFC 5805: start/end transaction extended operations and the transaction control.
_TXN_START, _TXN_END, _TXN_SPEC = "1.3.6.1.1.21.1", "1.3.6.1.1.21.3", "1.3.6.1.1.21.2"


def _encode(attrs: Mapping[str, Sequence[str]]) -> dict[str, list[bytes]]:
    return {k: [v.encode("utf-8") for v in vs] for k, vs in attrs.items() if vs}


def _decode(attrs: Mapping[str, Sequence[bytes]]) -> Attrs:
    return {k: [v.decode("utf-8", "replace") for v in vs] for k, vs in attrs.items()}


def check_ssha(password: str, stored: str) -> bool:
    """Check ``password`` against an ``{SSHA}`` value (RFC 2307 style), in constant time."""
    if not stored.upper().startswith("{SSHA}"):
        return False
    try:
        raw = base64.b64decode(stored[6:], validate=True)
    except ValueError:
        return False
    digest, salt = raw[:20], raw[20:]
    return hmac.compare_digest(hashlib.sha1(password.encode("utf-8") + salt).digest(), digest)


@dataclass
class _Conn:
    obj: LDAPObject
    uri_index: int
    created: float


class LdapGateway:
    """Pooled, failing-over access to the directory as GovTrust's bind DN."""

    def __init__(self, settings: DirectorySettings, *, pool_size: int = 4) -> None:
        if not settings.uris:
            raise InvalidValue("uris", "at least one directory URI is needed")
        self.settings = settings
        self._pool: queue.LifoQueue[_Conn] = queue.LifoQueue()
        self._binds: queue.LifoQueue[_Conn] = queue.LifoQueue()
        self._pool_size = pool_size
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._transactions = True  # until a server says it has none
        self._containers: dict[str, str] = {}
        self._pid = os.getpid()

    # -- names ---------------------------------------------------------------
    def child_dn(self, parent: str, attr: str, value: str) -> str:
        """``attr=value,parent`` with ``value`` escaped as one RDN value (RFC 4514)."""
        return ldap.dn.dn2str([[(attr, value, ldap.AVA_STRING)]] + ldap.dn.str2dn(parent))

    def container(self, name: str) -> str:
        # Cached: every lookup needs one, and building a DN costs more than the search.
        dn = self._containers.get(name)
        if dn is None:
            dn = self._containers[name] = self.child_dn(self.settings.base_dn, "ou", name)
        return dn

    def person_dn(self, uid: str) -> str:
        return self.child_dn(self.container("people"), "uid", uid)

    def department_dn(self, path: Sequence[str]) -> str:
        dn = self.container("departments")
        for name in path:
            dn = self.child_dn(dn, "ou", name)
        return dn

    def group_dn(self, name: str) -> str:
        return self.child_dn(self.container("groups"), "cn", name)

    def service_dn(self, name: str) -> str:
        return self.child_dn(self.container("services"), "uid", name)

    @staticmethod
    def rdn_value(dn: str) -> str:
        return str(ldap.dn.str2dn(dn)[0][0][1])

    @staticmethod
    def dn_path(dn: str, stop: str) -> tuple[str, ...]:
        """RDN values from just under ``stop`` down to ``dn`` (a department's path)."""
        parts = ldap.dn.str2dn(dn)
        depth = len(parts) - len(ldap.dn.str2dn(stop))
        return tuple(str(rdn[0][1]) for rdn in reversed(parts[:depth]))

    @staticmethod
    def is_under(dn: str, parent: str) -> bool:
        a, b = ldap.dn.str2dn(dn.lower()), ldap.dn.str2dn(parent.lower())
        return len(a) > len(b) and a[len(a) - len(b):] == b

    # -- connections -----------------------------------------------------------
    def _connect(self, who: str | None, password: str | None) -> _Conn:
        """A new connection to the first server that answers, bound when ``who`` is set."""
        last = ""
        now = time.monotonic()
        order = [i for i, u in enumerate(self.settings.uris) if self._down_until.get(u, 0) <= now]
        # If every server was recently down, try them all again rather than fail blind.
        for i in order or range(len(self.settings.uris)):
            uri = self.settings.uris[i]
            obj = ldap.initialize(uri, bytes_mode=False)
            obj.set_option(ldap.OPT_NETWORK_TIMEOUT, self.settings.timeout)
            obj.set_option(ldap.OPT_TIMEOUT, self.settings.timeout)
            obj.set_option(ldap.OPT_REFERRALS, 0)
            obj.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
            try:
                if who is not None:
                    obj.simple_bind_s(who, password or "")
                else:
                    obj.whoami_s()
            except _DOWN as exc:
                last = f"{uri}: {type(exc).__name__}"
                with self._lock:
                    self._down_until[uri] = time.monotonic() + _DOWN_FOR
                continue
            except ldap.INVALID_CREDENTIALS:
                raise DirectoryRefused("bind", who or "", "invalidCredentials",
                                       "GovTrust's bind DN or password is wrong") from None
            return _Conn(obj, i, time.monotonic())
        raise DirectoryUnavailable(self.settings.uris, last)

    def _take(self, pool: queue.LifoQueue[_Conn], bound: bool) -> _Conn:
        if self._pid != os.getpid():
            # Forked (e.g. a pre-loading WSGI server): the parent's sockets are shared,
            # so this process starts with pools of its own and leaves those alone.
            self._pid = os.getpid()
            self._pool, self._binds = queue.LifoQueue(), queue.LifoQueue()
            pool = self._binds if not bound else self._pool
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

    def _give(self, pool: queue.LifoQueue[_Conn], conn: _Conn) -> None:
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

    def _run(self, op: Callable[[LDAPObject], T]) -> T:
        """Run ``op`` on a pooled admin connection; on a dead server, retry elsewhere."""
        for attempt in range(len(self.settings.uris) + 1):
            conn = self._take(self._pool, bound=True)
            try:
                result = op(conn.obj)
            except _DOWN as exc:
                self._mark_down(conn)
                if attempt == len(self.settings.uris):
                    raise DirectoryUnavailable(self.settings.uris, type(exc).__name__) from None
                continue
            except BaseException:
                self._give(self._pool, conn)
                raise
            self._give(self._pool, conn)
            return result
        raise DirectoryUnavailable(self.settings.uris)

    @contextmanager
    def connection(self) -> Iterator[LDAPObject]:
        """A pooled admin connection for a batch of operations (no automatic retry)."""
        conn = self._take(self._pool, bound=True)
        try:
            yield conn.obj
        except _DOWN as exc:
            self._mark_down(conn)
            raise DirectoryUnavailable(self.settings.uris, type(exc).__name__) from None
        except BaseException:
            self._give(self._pool, conn)
            raise
        self._give(self._pool, conn)

    def close(self) -> None:
        for pool in (self._pool, self._binds):
            while True:
                try:
                    _close(pool.get_nowait())
                except queue.Empty:
                    break

    def ping(self) -> None:
        """Raise DirectoryUnavailable unless some configured server answers."""
        self._run(lambda c: c.whoami_s())

    # -- operations --------------------------------------------------------------
    def search(self, base: str, template: str, args: Sequence[str] = (), *,
               scope: str = "sub", attrs: Sequence[str] | None = None,
               ) -> list[tuple[str, Attrs]]:
        """Entries under ``base`` matching ``filter_format(template, args)``."""
        filterstr = ldap.filter.filter_format(template, list(args))

        def op(c: LDAPObject) -> list[tuple[str, Attrs]]:
            try:
                found = c.search_ext_s(base, SCOPES[scope], filterstr,
                                       list(attrs) if attrs is not None else None,
                                       timeout=self.settings.timeout * 6)
            except ldap.NO_SUCH_OBJECT:
                return []
            return [(dn, _decode(a)) for dn, a in found if dn is not None]

        return self._run(op)

    def read(self, dn: str, attrs: Sequence[str] | None = None) -> Attrs | None:
        found = self.search(dn, "(objectClass=*)", scope="base", attrs=attrs)
        return found[0][1] if found else None

    def add(self, dn: str, attrs: Mapping[str, Sequence[str]]) -> None:
        def op(c: LDAPObject) -> None:
            c.add_s(dn, ldap.modlist.addModlist(_encode(attrs)))

        self._guard("add", dn, lambda: self._run(op))

    def modify(self, dn: str, changes: Sequence[Change]) -> None:
        mods = _modlist(changes)

        def op(c: LDAPObject) -> None:
            c.modify_s(dn, mods)

        if mods:
            self._guard("modify", dn, lambda: self._run(op))

    def delete(self, dn: str) -> None:
        def op(c: LDAPObject) -> None:
            c.delete_s(dn)

        self._guard("delete", dn, lambda: self._run(op))

    def set_password(self, dn: str, password: str) -> None:
        """Set a password as the administrator (RFC 3062); slapd hashes it."""
        def op(c: LDAPObject) -> None:
            c.passwd_s(dn, None, password)

        self._guard("password", dn, lambda: self._run(op))

    def change_own_password(self, dn: str, old: str, new: str) -> None:
        """The person changes their own password (RFC 3062) as themselves, so slapd's
        ppolicy applies in full (quality, history, minimum age); its refusal comes
        back as ``DirectoryRefused`` with the ppolicy error name as ``code``."""
        uri_error: Exception | None = None
        for uri in self.settings.uris:
            c = ldap.initialize(uri, bytes_mode=False)
            c.set_option(ldap.OPT_NETWORK_TIMEOUT, self.settings.timeout)
            c.set_option(ldap.OPT_TIMEOUT, self.settings.timeout)
            try:
                c.simple_bind_s(dn, old)
                msgid = c.passwd(dn, old, new, serverctrls=[PasswordPolicyControl()])
                c.result3(msgid, timeout=self.settings.timeout)
                return
            except _DOWN as exc:
                uri_error = exc
                continue
            except ldap.INVALID_CREDENTIALS:
                raise DirectoryRefused("bind", dn, "invalidCredentials") from None
            except ldap.LDAPError as exc:
                pp = next((x for x in _exc_controls(exc)
                           if x.controlType == PasswordPolicyControl.controlType), None)
                error = getattr(pp, "error", None)
                code = _PP_ERRORS.get(error) if isinstance(error, int) else None
                raise DirectoryRefused("password", dn, code or type(exc).__name__) from None
            finally:
                c.unbind_s()
        raise DirectoryUnavailable(self.settings.uris, type(uri_error).__name__)

    def _guard(self, what: str, dn: str, call: Callable[[], None]) -> None:
        try:
            call()
        except ldap.ALREADY_EXISTS:
            raise AlreadyExists("entry", dn) from None
        except ldap.NO_SUCH_OBJECT:
            raise NotFound("entry", dn) from None
        except ldap.LDAPError as exc:
            raise _refused(what, dn, exc) from None

    # -- binary attribute values (certificates, CRLs; RFC 4523 ;binary) -----------------
    def add_binary(self, dn: str, attr: str, value: bytes) -> None:
        """Add one value; a value already there is fine (idempotent)."""
        def op(c: LDAPObject) -> None:
            try:
                c.modify_s(dn, [(ldap.MOD_ADD, attr, [value])])
            except ldap.TYPE_OR_VALUE_EXISTS:
                pass

        self._guard("modify", dn, lambda: self._run(op))

    def delete_binary(self, dn: str, attr: str, value: bytes) -> None:
        """Remove one value; a value or entry already gone is fine."""
        def op(c: LDAPObject) -> None:
            try:
                c.modify_s(dn, [(ldap.MOD_DELETE, attr, [value])])
            except (ldap.NO_SUCH_ATTRIBUTE, ldap.NO_SUCH_OBJECT):
                pass

        self._guard("modify", dn, lambda: self._run(op))

    def put_binary_entry(self, dn: str, object_class: str, rdn: tuple[str, str], attr: str,
                         value: bytes) -> None:
        """Replace ``attr`` on ``dn``, creating the entry when it does not exist."""
        def op(c: LDAPObject) -> None:
            try:
                c.modify_s(dn, [(ldap.MOD_REPLACE, attr, [value])])
            except ldap.NO_SUCH_OBJECT:
                c.add_s(dn, [("objectClass", [object_class.encode()]),
                             (rdn[0], [rdn[1].encode()]), (attr, [value])])

        self._guard("modify", dn, lambda: self._run(op))

    def read_binary(self, dn: str, attr: str) -> list[bytes]:
        """Every value of ``attr`` (with or without ``;binary``) on ``dn``."""
        def op(c: LDAPObject) -> list[tuple[str, dict[str, list[bytes]]]]:
            try:
                return c.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", [attr])
            except ldap.NO_SUCH_OBJECT:
                return []

        base = attr.split(";")[0].lower()
        for _dn, attrs in self._run(op):
            for name, values in attrs.items():
                if name.split(";")[0].lower() == base:
                    return [bytes(v) for v in values]
        return []

    def apply_many(self, ops: Sequence[tuple[str, str, Any]]) -> list[DirectoryRefused | None]:
        """Run many adds/modifies on one connection; a result per op, in order.

        ``ops`` are ``("add", dn, attrs)`` or ``("modify", dn, changes)``; each result
        is None (done) or the refusal. Ops go in LDAP transactions (RFC 5805) of
        ``_TXN_BATCH``: slapd's mdb then commits, and fsyncs, once per batch instead
        of once per entry, which is most of an import's time. A batch the server
        refuses as a whole (or a server without transactions) is replayed without
        one, asynchronously, so each bad op is named on its own.
        """
        results: list[DirectoryRefused | None] = [None] * len(ops)
        with self.connection() as c:
            for start in range(0, len(ops), _TXN_BATCH):
                chunk = range(start, min(len(ops), start + _TXN_BATCH))
                if self._transactions and self._apply_in_transaction(c, ops, chunk):
                    continue
                self._apply_async(c, ops, chunk, results)
        return results

    def _send(self, c: LDAPObject, op: tuple[str, str, Any],
              controls: list[RequestControl] | None = None) -> int:
        kind, dn, payload = op
        if kind == "add":
            return int(c.add_ext(dn, ldap.modlist.addModlist(_encode(payload)),
                                 serverctrls=controls))
        if kind == "modify":
            return int(c.modify_ext(dn, _modlist(payload), serverctrls=controls))
        raise InvalidValue("operation", f"unknown kind {kind!r}")

    def _apply_in_transaction(self, c: LDAPObject, ops: Sequence[tuple[str, str, Any]],
                              chunk: range) -> bool:
        """True when the whole chunk committed in one transaction."""
        wait = self.settings.timeout * 6
        try:
            _oid, txn_id = c.extop_s(ExtendedRequest(_TXN_START, None))
        except _DOWN:
            raise
        except ldap.LDAPError:
            self._transactions = False  # not offered by this server: do without
            return False
        spec = RequestControl(_TXN_SPEC, True, txn_id)
        msgids = [self._send(c, ops[i], [spec]) for i in chunk]
        ok = True
        for msgid in msgids:
            try:
                c.result3(msgid, all=1, timeout=wait)
            except _DOWN:
                raise
            except ldap.LDAPError:
                ok = False
        try:
            c.extop_s(ExtendedRequest(_TXN_END, _txn_end(txn_id, commit=ok)))
        except _DOWN:
            raise
        except ldap.LDAPError:
            return False  # aborted as a whole: nothing of it was applied
        return ok

    def _apply_async(self, c: LDAPObject, ops: Sequence[tuple[str, str, Any]], chunk: range,
                     results: list[DirectoryRefused | None]) -> None:
        inflight: dict[int, int] = {}

        def collect_one() -> None:
            msgid = next(iter(inflight))
            index = inflight.pop(msgid)
            try:
                c.result3(msgid, all=1, timeout=self.settings.timeout * 6)
            except _DOWN:
                raise
            except ldap.LDAPError as exc:
                results[index] = _refused(ops[index][0], ops[index][1], exc)

        for index in chunk:
            inflight[self._send(c, ops[index])] = index
            if len(inflight) >= _ASYNC_WINDOW:
                collect_one()
        while inflight:
            collect_one()

    # -- people ------------------------------------------------------------------
    def to_person(self, dn: str, attrs: Attrs) -> Person:
        groups_base = self.container("groups")
        groups = tuple(sorted(self.rdn_value(g) for g in attrs.get("memberOf", [])
                              if self.is_under(g, groups_base)))
        return entries.person_from_attributes(dn, attrs, groups)

    def find_person_entry(self, uid: str, extra: Sequence[str] = ()) -> tuple[str, Attrs] | None:
        found = self.search(self.container("people"),
                            "(&(objectClass=inetOrgPerson)(uid=%s))", [uid],
                            scope="one", attrs=[*entries.READ, *extra])
        return found[0] if found else None

    def find_person(self, uid: str) -> Person | None:
        found = self.find_person_entry(uid)
        return self.to_person(*found) if found else None

    # -- authentication -----------------------------------------------------------
    def authenticate(self, uid: str, password: str) -> AuthOutcome:
        """Bind as the person and say what happened (never whether ``uid`` exists)."""
        if not password or not isinstance(uid, str) or not UID_RE.match(uid):
            # An empty password would be an unauthenticated bind (RFC 4513 §5.1.2),
            # which "succeeds" without checking anything: refuse it before any bind.
            return AuthOutcome(AuthResult.BAD_CREDENTIALS)
        try:
            found = self.find_person_entry(uid)
        except DirectoryUnavailable:
            return AuthOutcome(AuthResult.UNAVAILABLE)
        if found is None:
            # Bind anyway (slapd refuses a DN with no entry): an unknown uid then takes
            # as long as a wrong password, so timing does not tell who exists.
            try:
                self._bind(self.person_dn(uid), password)
            except DirectoryUnavailable:
                return AuthOutcome(AuthResult.UNAVAILABLE)
            return AuthOutcome(AuthResult.BAD_CREDENTIALS)
        dn, attrs = found
        person = self.to_person(dn, attrs)
        try:
            ok, pp = self._bind(dn, password)
        except DirectoryUnavailable:
            return AuthOutcome(AuthResult.UNAVAILABLE)
        error = getattr(pp, "error", None) if pp is not None else None
        grace = getattr(pp, "graceAuthNsRemaining", None) if pp is not None else None
        expires = getattr(pp, "timeBeforeExpiration", None) if pp is not None else None
        if not ok:
            if error == _PP_LOCKED:
                return self._locked(person, attrs, password)
            if error == _PP_EXPIRED:
                return AuthOutcome(AuthResult.PASSWORD_EXPIRED)
            return AuthOutcome(AuthResult.BAD_CREDENTIALS)
        # Only now, with the password proven, may the caller learn the standing.
        if person.status is PersonStatus.SUSPENDED:
            return AuthOutcome(AuthResult.SUSPENDED, person)
        if person.status is PersonStatus.LEFT:
            return AuthOutcome(AuthResult.LEFT, person)
        if error in (_PP_EXPIRED, _PP_CHANGE_AFTER_RESET):
            return AuthOutcome(AuthResult.PASSWORD_EXPIRED, None, grace, expires)
        return AuthOutcome(AuthResult.OK, person, grace, expires)

    def _locked(self, person: Person, attrs: Attrs, password: str) -> AuthOutcome:
        """A locked bind: a suspension/leave lock is reported as such only to a
        caller who knows the password (checked against the stored hash)."""
        locked_at = (attrs.get("pwdAccountLockedTime") or [""])[0]
        if locked_at == entries.ADMIN_LOCK and person.status is not PersonStatus.ACTIVE:
            stored = self.read(person.dn, ["userPassword"]) or {}
            if any(check_ssha(password, v) for v in stored.get("userPassword", [])):
                result = (AuthResult.SUSPENDED if person.status is PersonStatus.SUSPENDED
                          else AuthResult.LEFT)
                return AuthOutcome(result, person)
            return AuthOutcome(AuthResult.BAD_CREDENTIALS)
        return AuthOutcome(AuthResult.LOCKED)

    def _bind(self, dn: str, password: str) -> tuple[bool, Any]:
        """Simple bind with the ppolicy control on a bind-only pooled connection.

        Binds never share the admin connections: a bind changes a connection's
        identity, so these connections are used for nothing else.
        """
        for attempt in range(len(self.settings.uris) + 1):
            conn = self._take(self._binds, bound=False)
            try:
                msgid = conn.obj.simple_bind(dn, password, serverctrls=[PasswordPolicyControl()])
                _t, _d, _m, ctrls = conn.obj.result3(msgid, timeout=self.settings.timeout,
                                                     resp_ctrl_classes=_RESPONSE_CONTROLS)
                ok, raw = True, ctrls
            except _DOWN:
                self._mark_down(conn)
                if attempt == len(self.settings.uris):
                    raise DirectoryUnavailable(self.settings.uris, "bind") from None
                continue
            except ldap.INVALID_CREDENTIALS as exc:
                ok, raw = False, _exc_controls(exc)
            except ldap.LDAPError as exc:
                self._give(self._binds, conn)
                raise _refused("bind", dn, exc) from None
            self._give(self._binds, conn)
            for ctrl in raw or []:
                if ctrl.controlType == PasswordPolicyControl.controlType:
                    return ok, ctrl
            return ok, None
        raise DirectoryUnavailable(self.settings.uris, "bind")


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


_RESPONSE_CONTROLS = {PasswordPolicyControl.controlType: _PolicyResponse}


def _exc_controls(exc: ldap.LDAPError) -> list[Any]:
    """Response controls carried by a failed operation's exception."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    raw = info.get("ctrls") or []
    if raw and isinstance(raw[0], tuple):
        try:
            return list(DecodeControlTuples(raw, _RESPONSE_CONTROLS))
        except Exception:  # a malformed control must not turn a failed bind into an error
            return []
    return list(raw)


class _TxnEndRequest(univ.Sequence):
    """RFC 5805 §2.3: txnEndReq ::= SEQUENCE { commit BOOLEAN DEFAULT TRUE,
    identifier OCTET STRING }."""

    componentType = namedtype.NamedTypes(
        namedtype.DefaultedNamedType("commit", univ.Boolean(True)),
        namedtype.NamedType("identifier", univ.OctetString()))


def _txn_end(txn_id: bytes, *, commit: bool) -> bytes:
    req = _TxnEndRequest()
    if not commit:
        req["commit"] = False
    req["identifier"] = txn_id
    return bytes(ber.encode(req))


def _modlist(changes: Sequence[Change]) -> list[tuple[int, str, list[bytes] | None]]:
    return [(_OPS[op], attr, [v.encode("utf-8") for v in values] if values else None)
            for op, attr, values in changes]


def _refused(what: str, dn: str, exc: ldap.LDAPError) -> DirectoryRefused:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    detail = str(info.get("info", "") or info.get("desc", ""))
    return DirectoryRefused(what, dn, type(exc).__name__, detail)


def _close(conn: _Conn) -> None:
    try:
        conn.obj.unbind_s()
    except ldap.LDAPError:
        pass

