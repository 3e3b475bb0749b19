"""Directory lifecycle events revoke, hold and release certificates, idempotently."""

from __future__ import annotations

from datetime import UTC, datetime

from directory.events import LifecycleEvent, LifecycleKind
from directory.model import Person
from pki.lifecycle import CertificateLifecycle
from pki.model import CertStatus, RevocationReason
from tests.fixtures.pki import CAEnv, make_csr, make_person


def _event(kind: LifecycleKind, person: Person) -> LifecycleEvent:
    return LifecycleEvent(kind, person.uid, person.entry_uuid, datetime.now(UTC), "admin")


def test_suspend_restore_leave(env: CAEnv, person: Person) -> None:
    sub = CertificateLifecycle(env.ca)
    other = make_person("wangwu", display_name="王五")
    mine = [env.ca.issue_from_csr(person, p, make_csr()[0]).record.serial
            for p in ("user-auth", "user-sign")]
    theirs = env.ca.issue_from_csr(other, "user-auth", make_csr()[0]).record.serial

    for _ in range(2):  # delivered twice: the same outcome
        sub.handle(_event(LifecycleKind.SUSPENDED, person))
        assert {env.ca.get(s).status for s in mine} == {CertStatus.HOLD}
    for _ in range(2):
        sub.handle(_event(LifecycleKind.RESTORED, person))
        assert {env.ca.get(s).status for s in mine} == {CertStatus.VALID}
    sub.handle(_event(LifecycleKind.SUSPENDED, person))
    audits = env.counts()[1]
    for _ in range(2):
        sub.handle(_event(LifecycleKind.LEFT, person))
        assert {env.ca.get(s).status for s in mine} == {CertStatus.REVOKED}
        assert {env.ca.get(s).reason for s in mine} == {RevocationReason.AFFILIATION_CHANGED}
    assert env.counts()[1] > audits
    assert env.ca.get(theirs).status is CertStatus.VALID
    assert {uid for uid, _ in env.publisher.unpublished} == {person.uid}


def test_a_reused_uid_does_not_touch_the_new_persons_certificates(env: CAEnv,
                                                                  person: Person) -> None:
    newcomer = make_person(person.uid, entry_uuid="uuid-someone-else")
    serial = env.ca.issue_from_csr(newcomer, "user-auth", make_csr()[0]).record.serial
    CertificateLifecycle(env.ca).handle(_event(LifecycleKind.LEFT, person))
    assert env.ca.get(serial).status is CertStatus.VALID
