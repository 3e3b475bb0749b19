"""Group commit of issuances on real SQLite and PostgreSQL (``pki.group_commit``
over ``SqlCertificateStore.add_certificates``).

A commit is held open at a gate while other callers queue behind it; they are
then written together in the next transaction, in the order they queued. No
sleeps decide anything: the tests wait (with a deadline) for the queue to hold
what they put in it, then open the gate.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from directory.model import Person
from pki.audit import GENESIS
from pki.audit_store import ChainTip, audit_log
from pki.certs import new_serial
from pki.group_commit import GroupCommit
from pki.model import AuditEntry, CertificateRecord
from pki.store import SqlCertificateStore
from tests.fixtures.pki import CAEnv, build_env, make_csr

pytestmark = pytest.mark.postgres

Item = tuple[CertificateRecord, AuditEntry]


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> Iterator[CAEnv]:
    e = build_env(tmp_path, database_url)
    try:
        yield e
    finally:
        e.engine.dispose()


def store_of(env: CAEnv) -> SqlCertificateStore:
    store = env.ca.store
    assert isinstance(store, SqlCertificateStore)
    return store


def items(template: CertificateRecord, n: int) -> list[Item]:
    out = []
    for _ in range(n):
        serial = format(new_serial(), "x")
        out.append((dataclasses.replace(template, serial=serial),
                    AuditEntry("test", "cert.issue", f"cert:{serial}", {
                        "serial": serial, "profile": template.profile,
                        "hierarchy": template.hierarchy.value})))
    return out


def wait_for(predicate: Callable[[], bool], what: str, deadline_s: float = 60) -> None:
    """A readiness poll with a deadline, not a measurement."""
    done = threading.Event()
    for _ in range(int(deadline_s * 100)):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError(f"gave up waiting for {what}")


class Gated:
    """A group commit over the store's batch write whose first batch waits at a
    gate (holding the commit) until the test opens it."""

    def __init__(self, store: SqlCertificateStore) -> None:
        self.store = store
        self.gate = threading.Event()
        self.batches: list[list[str]] = []
        self.group: GroupCommit[Item] = GroupCommit(self._write)
        self.errors: dict[str, BaseException] = {}
        self.recorded_on_return: dict[str, bool] = {}

    def _write(self, batch: Sequence[Item]) -> None:
        self.batches.append([rec.serial for rec, _ in batch])
        if len(self.batches) == 1:
            assert self.gate.wait(60)
        self.store.add_certificates(batch)

    def submit(self, item: Item) -> threading.Thread:
        def run() -> None:
            try:
                self.group.submit(item)
            except BaseException as exc:  # noqa: BLE001 - kept for the test to check
                self.errors[item[0].serial] = exc
            else:
                # Read back at once, from this thread: recorded before returned.
                self.recorded_on_return[item[0].serial] = \
                    self.store.get(item[0].serial) is not None
        thread = threading.Thread(target=run)
        thread.start()
        return thread


def audit_targets(env: CAEnv) -> list[str]:
    with env.engine.connect() as conn:
        return list(conn.execute(select(audit_log.c.target).order_by(audit_log.c.seq))
                    .scalars())


def hold_then_queue(env: CAEnv, gated: Gated, followers: list[Item]) -> list[Item]:
    """One commit held open, ``followers`` queued behind it one by one (so their
    queue order is known); then the gate opens. Returns the leader's item."""
    template = env.ca.issue_from_csr(person_of(env), "user-auth", make_csr()[0]).record
    leader = items(template, 1)
    threads = [gated.submit(leader[0])]
    wait_for(lambda: len(gated.batches) == 1, "the first commit to start")
    for n, item in enumerate(followers, start=1):
        threads.append(gated.submit(item))
        wait_for(lambda n=n: gated.group.pending() == n, f"{n} callers queued")
    gated.gate.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    return leader


def person_of(env: CAEnv) -> Person:
    return Person(uid="zhangwei", dn="uid=zhangwei,ou=people,dc=beijing,dc=gov,dc=cn",
                  entry_uuid="uuid-zhangwei", display_name="张伟",
                  department=("市财政局", "预算处"), email="zhangwei@beijing.gov.cn")


def gated_with_template(env: CAEnv) -> tuple[Gated, CertificateRecord]:
    """The store behind a gate, and one certificate issued through it to copy."""
    gated = Gated(store_of(env))
    return gated, env.ca.issue_from_csr(person_of(env), "user-auth", make_csr()[0]).record


def test_callers_queued_behind_a_commit_share_the_next_one_in_queue_order(
        env: CAEnv) -> None:
    gated, template = gated_with_template(env)
    followers = items(template, 5)
    leader = hold_then_queue(env, gated, followers)
    order = [rec.serial for rec, _ in followers]
    assert gated.batches == [[leader[0][0].serial], order]
    assert gated.errors == {}
    assert gated.recorded_on_return == dict.fromkeys([leader[0][0].serial, *order], True)
    assert audit_targets(env)[-6:] == [f"cert:{s}" for s in [leader[0][0].serial, *order]]
    assert env.audit.verify().ok
    assert ChainTip.of(env.engine).head == env.audit.head()


def test_a_failed_commit_fails_every_caller_in_it_and_records_none_of_them(
        env: CAEnv) -> None:
    gated, template = gated_with_template(env)
    store = gated.store
    fresh = items(template, 4)
    # The third follower names a serial already recorded: its insert fails, and
    # with it the whole transaction.
    duplicate = (template, AuditEntry("test", "cert.issue", f"cert:{template.serial}", {}))
    followers = [*fresh[:2], duplicate, *fresh[2:]]
    leader = hold_then_queue(env, gated, followers)
    head_after_leader = env.audit.head()
    assert len(gated.batches) == 2 and len(gated.batches[1]) == 5
    assert gated.recorded_on_return == {leader[0][0].serial: True}
    assert set(gated.errors) == {rec.serial for rec, _ in followers}
    assert all(isinstance(e, IntegrityError) for e in gated.errors.values())
    for rec, _ in fresh:
        assert store.get(rec.serial) is None
    assert not any(t.endswith(tuple(rec.serial for rec, _ in fresh))
                   for t in audit_targets(env))
    assert env.audit.head() == head_after_leader
    assert env.audit.verify().ok
    # Nothing was left half-done: the next issuance chains on as usual.
    env.ca.issue_from_csr(person_of(env), "user-auth", make_csr()[0])
    assert env.audit.verify().ok
    assert env.audit.head()[0] == head_after_leader[0] + 1


def test_a_batch_after_another_writer_moved_the_head_chains_onto_the_stored_head(
        env: CAEnv) -> None:
    store = store_of(env)
    template = env.ca.issue_from_csr(person_of(env), "user-auth", make_csr()[0]).record
    ChainTip.of(env.engine).head = (1, GENESIS)  # a stale hint: its compare-and-set misses
    before = env.audit.head()
    batch = items(template, 3)
    store.add_certificates(batch)
    assert env.audit.head()[0] == before[0] + 3
    assert audit_targets(env)[-3:] == [f"cert:{rec.serial}" for rec, _ in batch]
    assert env.audit.verify().ok
    assert ChainTip.of(env.engine).head == env.audit.head()


def test_concurrent_issuances_are_each_recorded_once_on_a_verifiable_chain(
        env: CAEnv) -> None:
    person = person_of(env)
    csrs = [make_csr()[0] for _ in range(24)]
    serials: list[str] = []
    errors: list[BaseException] = []

    def issue(chunk: list[bytes]) -> None:
        try:
            for csr in chunk:
                rec = env.ca.issue_from_csr(person, "user-auth", csr).record
                assert store_of(env).get(rec.serial) is not None
                serials.append(rec.serial)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=issue, args=(csrs[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(set(serials)) == 24
    targets = audit_targets(env)
    assert all(targets.count(f"cert:{s}") == 1 for s in serials)
    assert env.audit.verify().ok


def test_issuances_on_every_path_are_counted_once_by_the_metrics(env: CAEnv) -> None:
    """The hot paths write outside SQLAlchemy's events and announce what they
    committed; the general and batch paths are seen by the events. Each
    issuance is counted once whichever path it took."""
    from prometheus_client import REGISTRY

    from idp.runtime.metrics import watch_audit

    watch_audit(env.engine)
    labels = {"profile": "user-auth", "hierarchy": "ecdsa"}

    def issued() -> float:
        return REGISTRY.get_sample_value("govtrust_certificates_issued_total", labels) or 0.0

    before = issued()
    template = env.ca.issue_from_csr(person_of(env), "user-auth", make_csr()[0]).record
    env.ca.issue_from_csr(person_of(env), "user-auth", make_csr()[0])  # the hot path
    store = store_of(env)
    store.add_certificates(items(template, 3))  # a batch onto the tip
    ChainTip.of(env.engine).head = (1, GENESIS)
    store.add_certificates(items(template, 2))  # a batch after a missed compare-and-set
    ChainTip.of(env.engine).head = (1, GENESIS)
    env.ca.issue_from_csr(person_of(env), "user-auth", make_csr()[0])  # the general path
    assert issued() == before + 8
