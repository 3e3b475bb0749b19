"""Many adds and modifies on one connection, in LDAP transactions (RFC 5805).

slapd's mdb commits, and fsyncs, once per transaction instead of once per entry,
which is most of an import's time. A batch the server refuses as a whole (or a
server without transactions) is replayed without one, asynchronously, so each
bad operation is named on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ldap
import ldap.modlist
from ldap.controls import RequestControl
from ldap.extop import ExtendedRequest
from ldap.ldapobject import LDAPObject
from pyasn1.codec.ber import encoder as ber
from pyasn1.type import namedtype, univ

from directory.connections import DOWN, refused
from directory.entries import Change
from directory.errors import DirectoryRefused, InvalidValue

Op = tuple[str, str, Any]  # ("add", dn, attrs) or ("modify", dn, changes)

_OPS = {"add": ldap.MOD_ADD, "delete": ldap.MOD_DELETE, "replace": ldap.MOD_REPLACE}
_ASYNC_WINDOW = 256  # outstanding asynchronous operations per connection
TXN_BATCH = 500  # operations per LDAP transaction
# RFC 5805: start/end transaction extended operations and the transaction control.
_TXN_START, _TXN_END, _TXN_SPEC = "1.3.6.1.1.21.1", "1.3.6.1.1.21.3", "1.3.6.1.1.21.2"


def encode(attrs: Mapping[str, Sequence[str]]) -> dict[str, list[bytes]]:
    return {k: [v.encode("utf-8") for v in vs] for k, vs in attrs.items() if vs}


def modlist(changes: Sequence[Change]) -> list[tuple[int, str, list[bytes] | None]]:
    return [(_OPS[op], attr, [v.encode("utf-8") for v in values] if values else None)
            for op, attr, values in changes]


class BulkWriter:
    """Applies a list of operations on one connection; remembers whether the
    server offers transactions (asked once, by trying)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transactions = True  # until a server says it has none

    def apply(self, c: LDAPObject, ops: Sequence[Op]) -> list[DirectoryRefused | None]:
        """A result per op, in order: None (done) or the refusal."""
        results: list[DirectoryRefused | None] = [None] * len(ops)
        for start in range(0, len(ops), TXN_BATCH):
            chunk = range(start, min(len(ops), start + TXN_BATCH))
            if self.transactions and self._in_transaction(c, ops, chunk):
                continue
            self._async(c, ops, chunk, results)
        return results

    @staticmethod
    def _send(c: LDAPObject, op: Op, controls: list[RequestControl] | None = None) -> int:
        kind, dn, payload = op
        if kind == "add":
            return int(c.add_ext(dn, ldap.modlist.addModlist(encode(payload)),
                                 serverctrls=controls))
        if kind == "modify":
            return int(c.modify_ext(dn, modlist(payload), serverctrls=controls))
        raise InvalidValue("operation", f"unknown kind {kind!r}")

    def _in_transaction(self, c: LDAPObject, ops: Sequence[Op], chunk: range) -> bool:
        """True when the whole chunk committed in one transaction."""
        wait = self.timeout * 6
        try:
            _oid, txn_id = c.extop_s(ExtendedRequest(_TXN_START, None))
        except DOWN:
            raise
        except ldap.LDAPError:
            self.transactions = False  # not offered by this server: do without
            return False
        spec = RequestControl(_TXN_SPEC, True, txn_id)
        msgids = [self._send(c, ops[i], [spec]) for i in chunk]
        ok = True
        for msgid in msgids:
            try:
                c.result3(msgid, all=1, timeout=wait)
            except DOWN:
                raise
            except ldap.LDAPError:
                ok = False
        try:
            c.extop_s(ExtendedRequest(_TXN_END, txn_end(txn_id, commit=ok)))
        except DOWN:
            raise
        except ldap.LDAPError:
            return False  # aborted as a whole: nothing of it was applied
        return ok

    def _async(self, c: LDAPObject, ops: Sequence[Op], chunk: range,
               results: list[DirectoryRefused | None]) -> None:
        inflight: dict[int, int] = {}

        def collect_one() -> None:
            msgid = next(iter(inflight))
            index = inflight.pop(msgid)
            try:
                c.result3(msgid, all=1, timeout=self.timeout * 6)
            except DOWN:
                raise
            except ldap.LDAPError as exc:
                results[index] = refused(ops[index][0], ops[index][1], exc)

        for index in chunk:
            inflight[self._send(c, ops[index])] = index
            if len(inflight) >= _ASYNC_WINDOW:
                collect_one()
        while inflight:
            collect_one()


class _TxnEndRequest(univ.Sequence):
    """RFC 5805 §2.3: txnEndReq ::= SEQUENCE { commit BOOLEAN DEFAULT TRUE,
    identifier OCTET STRING }."""

    componentType = namedtype.NamedTypes(
        namedtype.DefaultedNamedType("commit", univ.Boolean(True)),
        namedtype.NamedType("identifier", univ.OctetString()))


def txn_end(txn_id: bytes, *, commit: bool) -> bytes:
    req = _TxnEndRequest()
    if not commit:
        req["commit"] = False
    req["identifier"] = txn_id
    return bytes(ber.encode(req))
