"""The audit log's chain: every record carries the hash of the one before.

Pure logic, no database: ``record_hash`` defines the chain and ``verify_chain``
walks stored records and names the first one that was changed, removed or
reordered. ``pki.audit_store`` keeps the records in SQL; the CA signs the head
(the last hash and sequence number) so that truncating the tail shows too.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    details: Mapping[str, str] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""


def canonical(seq: int, at: datetime, actor: str, action: str, target: str,
              details: Mapping[str, str], prev_hash: str) -> bytes:
    body = {
        "seq": seq,
        "at": at.isoformat(),
        "actor": actor,
        "action": action,
        "target": target,
        "details": dict(sorted(details.items())),
        "prev": prev_hash,
    }
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def record_hash(seq: int, at: datetime, actor: str, action: str, target: str,
                details: Mapping[str, str], prev_hash: str) -> str:
    return hashlib.sha256(canonical(seq, at, actor, action, target, details, prev_hash)).hexdigest()


class Problem(enum.StrEnum):
    CHANGED = "changed"  # the record's content no longer matches its hash
    BROKEN_LINK = "broken_link"  # prev_hash is not the hash of the record before
    MISSING = "missing"  # a sequence number is skipped (a record was removed)
    TRUNCATED = "truncated"  # the signed head names a later record than the log has
    BAD_HEAD_SIGNATURE = "bad_head_signature"  # the CA's signature over the head fails


@dataclass(frozen=True)
class SignedHead:
    """The last (seq, hash) the issuing CA signed, with its signature."""

    seq: int
    hash: str
    signature: bytes


def head_message(seq: int, digest: str) -> bytes:
    """The bytes the CA signs for a head: domain-separated, unambiguous."""
    return f"govtrust-audit-head\x00{seq}\x00{digest}".encode()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    count: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: Problem | None = None

    def describe(self) -> str:
        if self.ok:
            return f"audit log intact: {self.count} records, head {self.head_hash[:16]}"
        return f"audit log broken at record {self.first_bad_seq}: {self.problem}"


def verify_chain(records: Iterable[AuditRecord], expected_head: tuple[int, str] | None = None
                 ) -> ChainReport:
    """Walk ``records`` in sequence order; report the first bad one.

    ``expected_head`` is the last (seq, hash) the CA signed; records after it are
    fine (not yet signed) but the log must still contain it.
    """
    prev = GENESIS
    expected_seq = 1
    count = 0
    seen_head = expected_head is None
    for rec in records:
        if rec.seq != expected_seq:
            return ChainReport(False, count, prev, expected_seq, Problem.MISSING)
        digest = record_hash(rec.seq, rec.at, rec.actor, rec.action, rec.target,
                             rec.details, rec.prev_hash)
        if not hmac.compare_digest(digest, rec.hash):
            return ChainReport(False, count, prev, rec.seq, Problem.CHANGED)
        if not hmac.compare_digest(rec.prev_hash, prev):
            return ChainReport(False, count, prev, rec.seq, Problem.BROKEN_LINK)
        if expected_head is not None and rec.seq == expected_head[0]:
            if not hmac.compare_digest(rec.hash, expected_head[1]):
                return ChainReport(False, count, prev, rec.seq, Problem.CHANGED)
            seen_head = True
        prev = rec.hash
        expected_seq += 1
        count += 1
    if not seen_head:
        assert expected_head is not None
        return ChainReport(False, count, prev, count + 1, Problem.TRUNCATED)
    return ChainReport(True, count, prev)
