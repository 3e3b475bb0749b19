"""The CA's records on SQLite and PostgreSQL: issuance, transitions, CRLs, audit."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from directory.model import Person
from pki.errors import AlreadyRevoked, InvalidTransition
from pki.model import CertStatus, RevocationReason
from tests.fixtures.pki import build_env, make_csr


@pytest.mark.postgres
def test_lifecycle_of_records_and_crls(database_url: str, tmp_path: Path,
                                       person: Person) -> None:
    env = build_env(tmp_path, database_url)
    try:
        ca = env.ca
        serials = [ca.issue_from_csr(person, "user-auth", make_csr()[0]).record.serial
                   for _ in range(4)]
        ca.revoke(serials[0], "keyCompromise",
                  invalidity_date=ca.now().replace(year=ca.now().year - 1))
        ca.hold(serials[1])
        ca.hold(serials[2])
        ca.release(serials[2])
        with pytest.raises(AlreadyRevoked):
            ca.revoke(serials[0])
        with pytest.raises(InvalidTransition):
            ca.hold(serials[1])
        full = x509.load_der_x509_crl(ca.crl())
        listed = {format(r.serial_number, "x"): r for r in full}
        assert set(listed) == {serials[0], serials[1]}
        entry = listed[serials[0]]
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is \
            x509.ReasonFlags.key_compromise
        assert entry.extensions.get_extension_for_class(x509.InvalidityDate)
        assert listed[serials[1]].extensions.get_extension_for_class(
            x509.CRLReason).value.reason is x509.ReasonFlags.certificate_hold
        assert full.is_signature_valid(ca.issuing_certificate.public_key())  # type: ignore[arg-type]
        delta = x509.load_der_x509_crl(ca.crl(delta=True))
        base = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value
        assert base.crl_number == full.extensions.get_extension_for_class(
            x509.CRLNumber).value.crl_number
        assert [r for r in ca.find(status=CertStatus.HOLD)][0].serial == serials[1]
        assert len(ca.find(uid=person.uid)) == 4
        assert len(ca.find(uid=person.uid,
                           expiring_within=ca.now() - ca.now() + (400 * ca.settings.crl_refresh)
                           )) == 4
        assert env.audit.verify().ok
        assert ca.store.status(int(serials[0], 16)).reason is \
            RevocationReason.KEY_COMPROMISE  # type: ignore[union-attr]
    finally:
        env.engine.dispose()


def test_release_shows_as_remove_from_crl_in_the_delta(tmp_path: Path, person: Person) -> None:
    from pki.model import CASettings

    env = build_env(tmp_path, f"sqlite:///{tmp_path / 'd.db'}",
                    settings=CASettings(full_crl_on_revoke_max=10**9))
    ca = env.ca
    serial = ca.issue_from_csr(person, "user-auth", make_csr()[0]).record.serial
    ca.hold(serial)
    base_number = ca.store.latest_crl("issuing", delta=False).number  # type: ignore[union-attr]
    ca.release(serial, refresh=False)
    ca.generate_crl(delta=True)
    delta = x509.load_der_x509_crl(ca.crl(delta=True))
    assert delta.extensions.get_extension_for_class(
        x509.DeltaCRLIndicator).value.crl_number == base_number
    entry = delta.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is \
        x509.ReasonFlags.remove_from_crl
    env.engine.dispose()


def test_crl_numbers_increase_across_full_and_delta(tmp_path: Path) -> None:
    env = build_env(tmp_path, f"sqlite:///{tmp_path / 'n.db'}")
    numbers = [env.ca.generate_crl(delta=d).number for d in (False, True, False, True)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4  # RFC 5280 §5.2.3
    env.engine.dispose()


def test_refresh_if_due_renews_the_ocsp_responder(tmp_path: Path) -> None:
    from datetime import timedelta

    env = build_env(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    assert env.ca.refresh_if_due() == []
    first = env.ca.ocsp_credentials()[0]
    later = env.ca.now() + timedelta(days=21)  # past 2/3 of 30 days
    env.ca._clock = lambda: later  # noqa: SLF001 - a test clock
    env.ca._ocsp = None  # noqa: SLF001
    done = env.ca.refresh_if_due()
    assert "ocsp-responder" in done and "crl" in done and "delta-crl" in done
    assert env.ca.ocsp_credentials()[0].serial_number != first.serial_number
    env.engine.dispose()


@pytest.mark.postgres
def test_racing_revocations_record_exactly_one(database_url: str, tmp_path: Path,
                                               person: Person) -> None:
    import threading

    env = build_env(tmp_path, database_url)
    try:
        serial = env.ca.issue_from_csr(person, "user-auth", make_csr()[0]).record.serial
        before = env.counts()
        outcomes: list[str] = []
        barrier = threading.Barrier(4)

        def revoke() -> None:
            barrier.wait()
            try:
                env.ca.revoke(serial, RevocationReason.KEY_COMPROMISE, refresh=False)
                outcomes.append("revoked")
            except AlreadyRevoked:
                outcomes.append("already")

        threads = [threading.Thread(target=revoke) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes) == ["already"] * 3 + ["revoked"]
        assert env.counts() == (before[0], before[1] + 1)
        assert env.audit.verify().ok
    finally:
        env.engine.dispose()
