"""The hash-chained audit log on SQLite and PostgreSQL: appends, and a changed,
removed or reordered record is named by verify."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from idp.runtime.db import session_factory
from pki.audit import Problem
from pki.audit_store import AuditLog, audit_log


def _log(engine: Any) -> AuditLog:
    return AuditLog(session_factory(engine))


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.record(actor="admin", action="directory.add", target=f"user{i}",
                   details={"name": "张伟", "n": str(i)})


def test_intact_log_verifies(migrated_engine: Any) -> None:
    log = _log(migrated_engine)
    _fill(log, 5)
    report = log.verify()
    assert report.ok and report.count == 5
    assert log.head() == (5, report.head_hash)


def test_empty_log_verifies(migrated_engine: Any) -> None:
    report = _log(migrated_engine).verify()
    assert report.ok and report.count == 0


def test_changed_record_is_named(migrated_engine: Any) -> None:
    log = _log(migrated_engine)
    _fill(log, 5)
    with migrated_engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(target="mallory"))
    report = log.verify()
    assert not report.ok
    assert (report.first_bad_seq, report.problem) == (3, Problem.CHANGED)


def test_changed_details_are_named(migrated_engine: Any) -> None:
    log = _log(migrated_engine)
    _fill(log, 4)
    with migrated_engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 2)
                     .values(details='{"name": "李娜", "n": "1"}'))
    report = log.verify()
    assert (report.first_bad_seq, report.problem) == (2, Problem.CHANGED)


def test_removed_record_is_named(migrated_engine: Any) -> None:
    log = _log(migrated_engine)
    _fill(log, 5)
    with migrated_engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 2))
    report = log.verify()
    assert (report.first_bad_seq, report.problem) == (2, Problem.MISSING)


def test_reordered_records_are_named(migrated_engine: Any) -> None:
    log = _log(migrated_engine)
    _fill(log, 5)
    # Swap the content of records 2 and 4, keeping sequence numbers in place.
    with migrated_engine.begin() as conn:
        rows = {r.seq: r for r in conn.execute(select(audit_log)).all()}
        for a, b in ((2, 4), (4, 2)):
            src = rows[b]
            conn.execute(update(audit_log).where(audit_log.c.seq == a).values(
                at=src.at, actor=src.actor, action=src.action, target=src.target,
                details=src.details, prev_hash=src.prev_hash, hash=src.hash))
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 2


def test_truncated_tail_is_found_against_the_signed_head(migrated_engine: Any) -> None:
    log = _log(migrated_engine)
    _fill(log, 5)
    signed = log.head()
    with migrated_engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq >= 4))
    assert log.verify().ok  # without the signed head a clean cut looks intact...
    report = log.verify(signed)  # ...with it, it does not
    assert (report.first_bad_seq, report.problem) == (4, Problem.TRUNCATED)


def test_concurrent_appends_never_fork_the_chain(migrated_engine: Any) -> None:
    log = _log(migrated_engine)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(15):
                log.record(actor=f"w{k}", action="test", target=str(i))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = log.verify()
    assert report.ok and report.count == 60


@pytest.mark.parametrize("details", [{"k": "x" * 100_000}, {"名字": "王\x00芳"}])
def test_odd_details_round_trip(migrated_engine: Any, details: dict[str, str]) -> None:
    log = _log(migrated_engine)
    log.record(actor="a", action="b", target="c", details=details)
    report = log.verify()
    assert report.ok and report.count == 1
