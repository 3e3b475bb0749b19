"""The key management centre: escrowed dual issuance, self-recovery, m-of-n recovery.

A real CA on SQLite, the file KEK, and OpenSSL as the independent party: it
encrypts to the encryption certificate and opens the envelope with the person's
signing key. Every refusal is a named test that checks the audit record and that
nothing was exported or changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

from directory.model import Person
from idp.runtime.db import session_factory
from pki.audit_store import ChainTip, audit_log
from pki.errors import KeyStoreError, KmcRefusal, KmcRefused
from pki.kek import FileKeyEncryptionKey
from pki.kmc import KeyManagementCentre, KmcSettings, Pkcs12, RequestState, WrapTo
from pki.kmc_store import SqlEscrowStore, escrowed_keys
from tests.fixtures.pki import CAEnv, make_csr, make_person, pem, run

PASS = b"recovery passphrase"


@dataclass(frozen=True)
class Staff:
    uid: str
    entry_uuid: str
    groups: tuple[str, ...] = field(default=())


AGENTS = [Staff(f"agent{i}", f"uuid-agent{i}", ("key-recovery-agents",)) for i in (1, 2, 3)]
REQUESTER = Staff("auditor", "uuid-auditor", ("security-admins",))


@dataclass
class World:
    env: CAEnv
    kmc: KeyManagementCentre
    person: Person
    sign_key: ec.EllipticCurvePrivateKey
    sign_cert: x509.Certificate

    def actions(self) -> list[tuple[str, str, dict[str, str]]]:
        import json

        with self.env.engine.connect() as conn:
            rows = conn.execute(select(audit_log.c.action, audit_log.c.target,
                                       audit_log.c.details).order_by(audit_log.c.seq)).all()
        return [(r.action, r.target, json.loads(r.details)) for r in rows]

    def last(self) -> tuple[str, str, dict[str, str]]:
        return self.actions()[-1]

    def exports(self) -> int:
        return sum(1 for a in self.actions() if a[0] == "kmc.exported")


@pytest.fixture
def world(env: CAEnv) -> Iterator[World]:
    person = make_person("lina")
    csr, key = make_csr()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    sign = env.ca.issue_from_csr(person, "user-sign", csr)
    kek = FileKeyEncryptionKey(env.folder / "keys", b"test passphrase, not a secret")
    kmc = KeyManagementCentre(SqlEscrowStore(session_factory(env.engine)), kek, env.ca,
                              KmcSettings())
    yield World(env, kmc, person, key, sign.certificate)


def escrow(w: World) -> tuple[str, bytes]:
    """An escrowed encryption certificate; (serial, the key as PKCS#8 DER)."""
    out = w.kmc.issue_escrowed(w.person, Pkcs12(PASS), actor="test")
    key, _, _ = pkcs12.load_key_and_certificates(out.key.data, PASS)
    assert key is not None
    return out.issued.record.serial, key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def pkcs8_of(p12: bytes) -> bytes:
    key, _, _ = pkcs12.load_key_and_certificates(p12, PASS)
    assert key is not None
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# -- escrowed dual issuance ------------------------------------------------------------
def test_escrow_records_leave_the_cas_chain_tip_current(world: World) -> None:
    """The KMC appends onto the chain tip the CA store shares (one per database),
    so the CA's next issuance finds the head it remembers and takes its one
    compare-and-set; with a tip of its own it missed after every escrow record."""
    escrow(world)
    tip = world.env.ca.store._tip  # type: ignore[attr-defined]  # noqa: SLF001
    assert tip is ChainTip.of(world.env.engine)
    assert tip.head == world.env.audit.head()
    world.env.ca.issue_from_csr(world.person, "user-sign", make_csr()[0])
    assert tip.head == world.env.audit.head()
    assert world.env.audit.verify().ok


def test_dual_issuance_key_decrypts_a_message_encrypted_to_the_certificate(
        world: World, tmp_path: Path) -> None:
    out = world.kmc.issue_escrowed(world.person, WrapTo(world.sign_cert), actor="test")
    cert = out.issued.certificate
    assert out.issued.record.profile == "user-encrypt"
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_agreement
    (tmp_path / "enc.pem").write_bytes(pem(cert))
    (tmp_path / "sign.pem").write_bytes(pem(world.sign_cert))
    (tmp_path / "sign.key").write_bytes(world.sign_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "envelope.der").write_bytes(out.key.data)
    (tmp_path / "message.txt").write_text("预算处 2026 年度预算（机密）\n", encoding="utf-8")
    # A sender encrypts to the encryption certificate, knowing nothing of the KMC.
    run("openssl", "cms", "-encrypt", "-aes256", "-in", tmp_path / "message.txt",
        "-out", tmp_path / "message.p7m", "-outform", "DER", tmp_path / "enc.pem")
    # The person opens the delivered envelope with their signing key ...
    run("openssl", "cms", "-decrypt", "-inform", "DER", "-in", tmp_path / "envelope.der",
        "-recip", tmp_path / "sign.pem", "-inkey", tmp_path / "sign.key",
        "-out", tmp_path / "enc.key")
    # ... and reads the message with the encryption key inside it.
    done = run("openssl", "cms", "-decrypt", "-inform", "DER", "-in",
               tmp_path / "message.p7m", "-recip", tmp_path / "enc.pem", "-inkey",
               tmp_path / "enc.key")
    assert done.stdout == "预算处 2026 年度预算（机密）\n"
    serial = out.issued.record.serial
    actions = [a[0] for a in world.actions()]
    assert actions[-4:] == ["kmc.generated", "cert.issue", "kmc.escrowed", "kmc.exported"]
    assert world.last()[2] == {"serial": serial, "to": "lina", "purpose": "issue",
                               "format": "cms"}


def test_pkcs12_delivery_opens_with_openssl(world: World, tmp_path: Path) -> None:
    out = world.kmc.issue_escrowed(world.person, Pkcs12(PASS), actor="test")
    (tmp_path / "k.p12").write_bytes(out.key.data)
    done = run("openssl", "pkcs12", "-in", tmp_path / "k.p12", "-nodes", "-passin",
               f"pass:{PASS.decode()}")
    assert "PRIVATE KEY" in done.stdout and "BEGIN CERTIFICATE" in done.stdout


def test_escrowed_key_is_never_in_clear_on_disk(world: World, tmp_path: Path) -> None:
    _, pkcs8 = escrow(world)
    key = serialization.load_der_private_key(pkcs8, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    db = Path(str(world.env.engine.url.database))
    blobs = [p.read_bytes() for p in [db, *db.parent.glob(db.name + "-*"),
                                      *(world.env.folder / "keys").iterdir()]]
    assert all(scalar not in b and pkcs8 not in b for b in blobs)


@pytest.mark.parametrize("profile", ["user-sign", "user-auth"])
def test_escrow_refused_for_a_signing_profile(world: World, profile: str) -> None:
    before = world.env.counts()
    with pytest.raises(KmcRefused) as err:
        world.kmc.issue_escrowed(world.person, Pkcs12(PASS), profile_name=profile)
    assert err.value.reason is KmcRefusal.SIGNING_KEY
    certs, audits = world.env.counts()
    assert (certs, audits) == (before[0], before[1] + 1)
    assert world.last()[0] == "kmc.escrow_refused"


def test_wrap_to_someone_elses_certificate_refused(world: World) -> None:
    csr, _ = make_csr()
    other = world.env.ca.issue_from_csr(make_person("wangfang"), "user-sign", csr)
    before = world.env.counts()
    with pytest.raises(KmcRefused) as err:
        world.kmc.issue_escrowed(world.person, WrapTo(other.certificate))
    assert err.value.reason is KmcRefusal.BAD_RECIPIENT
    assert world.env.counts() == (before[0], before[1] + 1)


def test_wrap_to_a_revoked_signing_certificate_refused(world: World) -> None:
    world.env.ca.revoke(format(world.sign_cert.serial_number, "x"))
    before = world.env.counts()
    with pytest.raises(KmcRefused) as err:
        world.kmc.issue_escrowed(world.person, WrapTo(world.sign_cert))
    assert err.value.reason is KmcRefusal.BAD_RECIPIENT
    assert world.env.counts() == (before[0], before[1] + 1)


def test_weak_pkcs12_passphrase_refused(world: World) -> None:
    with pytest.raises(KmcRefused) as err:
        world.kmc.issue_escrowed(world.person, Pkcs12(b"short"))
    assert err.value.reason is KmcRefusal.WEAK_PASSPHRASE


# -- the owner's own key -------------------------------------------------------------
def test_own_recovery_in_a_level_3_session_gives_the_same_key(world: World) -> None:
    serial, original = escrow(world)
    got = world.kmc.recover_own(world.person, serial, Pkcs12(PASS), level=3, actor="lina")
    assert pkcs8_of(got.data) == original
    assert world.last()[2]["purpose"] == "self"


def test_own_recovery_from_a_level_2_session_refused(world: World) -> None:
    serial, _ = escrow(world)
    exports = world.exports()
    with pytest.raises(KmcRefused) as err:
        world.kmc.recover_own(world.person, serial, Pkcs12(PASS), level=2, actor="lina")
    assert err.value.reason is KmcRefusal.LEVEL_TOO_LOW
    assert world.exports() == exports
    assert world.last()[0] == "kmc.recovery_refused"


def test_own_recovery_without_a_session_only_wraps_to_the_owner(world: World) -> None:
    serial, _ = escrow(world)
    with pytest.raises(KmcRefused) as err:
        world.kmc.recover_own(world.person, serial, Pkcs12(PASS), level=None, actor="cli")
    assert err.value.reason is KmcRefusal.NO_SESSION
    got = world.kmc.recover_own(world.person, serial, WrapTo(world.sign_cert), level=None,
                                actor="cli")
    assert got.format.value == "cms"


def test_own_recovery_of_someone_elses_key_refused(world: World) -> None:
    serial, _ = escrow(world)
    with pytest.raises(KmcRefused) as err:
        world.kmc.recover_own(make_person("wangfang"), serial, Pkcs12(PASS), level=3,
                              actor="wangfang")
    assert err.value.reason is KmcRefusal.NOT_OWNER


def test_recovery_for_a_signing_certificate_refused(world: World) -> None:
    serial = format(world.sign_cert.serial_number, "x")
    exports = world.exports()
    with pytest.raises(KmcRefused) as err:
        world.kmc.recover_own(world.person, serial, Pkcs12(PASS), level=3, actor="lina")
    assert err.value.reason is KmcRefusal.SIGNING_KEY
    with pytest.raises(KmcRefused) as err:
        world.kmc.request_recovery(REQUESTER, serial, "case 2026-17", level=3)
    assert err.value.reason is KmcRefusal.SIGNING_KEY
    assert world.last()[0] == "kmc.recovery_refused"
    assert world.last()[2]["serial"] == serial
    assert world.exports() == exports


# -- organisational recovery: m of n agents ---------------------------------------------
def requested(w: World) -> tuple[str, bytes, str]:
    serial, original = escrow(w)
    req = w.kmc.request_recovery(REQUESTER, serial, "法院协助调查 (2026)京01刑1号", level=3)
    return serial, original, req.id


def test_two_of_three_recovery_gives_the_requester_the_same_key(world: World) -> None:
    serial, original, rid = requested(world)
    first = world.kmc.approve(rid, AGENTS[0], level=3)
    assert first.state is RequestState.PENDING and first.approvals == ("agent1",)
    second = world.kmc.approve(rid, AGENTS[2], level=3)
    assert second.state is RequestState.APPROVED
    got = world.kmc.collect(rid, REQUESTER, Pkcs12(PASS), level=3)
    assert pkcs8_of(got.data) == original
    trail = [(a, d.get("serial")) for a, _, d in world.actions()[-4:]]
    assert trail == [("kmc.recovery_requested", serial), ("kmc.recovery_approved", serial),
                     ("kmc.recovery_approved", serial), ("kmc.exported", serial)]
    assert world.env.audit.verify().ok


def test_recovery_approved_twice_by_the_same_agent_refused(world: World) -> None:
    _, _, rid = requested(world)
    world.kmc.approve(rid, AGENTS[0], level=3)
    with pytest.raises(KmcRefused) as err:
        world.kmc.approve(rid, AGENTS[0], level=3)
    assert err.value.reason is KmcRefusal.ALREADY_APPROVED
    assert world.kmc.get_request(rid).state is RequestState.PENDING  # type: ignore[union-attr]
    assert world.last()[0] == "kmc.recovery_refused"


def test_recovery_approved_by_the_requester_refused(world: World) -> None:
    serial, _ = escrow(world)
    req = world.kmc.request_recovery(AGENTS[0], serial, "离职交接", level=3)
    with pytest.raises(KmcRefused) as err:
        world.kmc.approve(req.id, AGENTS[0], level=3)
    assert err.value.reason is KmcRefusal.REQUESTER_APPROVAL
    assert world.kmc.get_request(req.id).approvals == ()  # type: ignore[union-attr]


def test_recovery_approval_from_a_level_2_session_refused(world: World) -> None:
    _, _, rid = requested(world)
    with pytest.raises(KmcRefused) as err:
        world.kmc.approve(rid, AGENTS[1], level=2)
    assert err.value.reason is KmcRefusal.LEVEL_TOO_LOW
    assert world.kmc.get_request(rid).approvals == ()  # type: ignore[union-attr]
    assert world.last()[2]["reason"] == "level_too_low"


def test_recovery_approval_by_a_non_agent_refused(world: World) -> None:
    _, _, rid = requested(world)
    with pytest.raises(KmcRefused) as err:
        world.kmc.approve(rid, Staff("someone", "uuid-someone", ("security-admins",)),
                          level=3)
    assert err.value.reason is KmcRefusal.NOT_AGENT


def test_recovery_request_without_a_reason_refused(world: World) -> None:
    serial, _ = escrow(world)
    with pytest.raises(KmcRefused) as err:
        world.kmc.request_recovery(REQUESTER, serial, "   ", level=3)
    assert err.value.reason is KmcRefusal.NO_REASON


def test_recovery_request_by_an_ordinary_person_refused(world: World) -> None:
    serial, _ = escrow(world)
    with pytest.raises(KmcRefused) as err:
        world.kmc.request_recovery(Staff("nobody", "uuid-nobody"), serial, "curious", level=3)
    assert err.value.reason is KmcRefusal.NOT_ALLOWED_TO_REQUEST


def test_recovery_collected_by_someone_else_refused(world: World) -> None:
    _, _, rid = requested(world)
    world.kmc.approve(rid, AGENTS[0], level=3)
    world.kmc.approve(rid, AGENTS[1], level=3)
    exports = world.exports()
    with pytest.raises(KmcRefused) as err:
        world.kmc.collect(rid, AGENTS[2], Pkcs12(PASS), level=3)
    assert err.value.reason is KmcRefusal.NOT_REQUESTER
    assert world.exports() == exports


def test_recovery_collected_before_enough_approvals_refused(world: World) -> None:
    _, _, rid = requested(world)
    world.kmc.approve(rid, AGENTS[0], level=3)
    with pytest.raises(KmcRefused) as err:
        world.kmc.collect(rid, REQUESTER, Pkcs12(PASS), level=3)
    assert err.value.reason is KmcRefusal.NOT_APPROVED


def test_recovery_collected_twice_refused(world: World) -> None:
    _, _, rid = requested(world)
    world.kmc.approve(rid, AGENTS[0], level=3)
    world.kmc.approve(rid, AGENTS[1], level=3)
    world.kmc.collect(rid, REQUESTER, Pkcs12(PASS), level=3)
    with pytest.raises(KmcRefused) as err:
        world.kmc.collect(rid, REQUESTER, Pkcs12(PASS), level=3)
    assert err.value.reason is KmcRefusal.NOT_PENDING


def test_recovery_approval_after_expiry_refused(world: World) -> None:
    _, _, rid = requested(world)
    later = datetime.now(UTC) + timedelta(hours=73)
    world.kmc._clock = lambda: later
    with pytest.raises(KmcRefused) as err:
        world.kmc.approve(rid, AGENTS[0], level=3)
    assert err.value.reason is KmcRefusal.EXPIRED


def test_unknown_request_refused(world: World) -> None:
    with pytest.raises(KmcRefused) as err:
        world.kmc.approve("'; drop table --", AGENTS[0], level=3)
    assert err.value.reason is KmcRefusal.UNKNOWN_REQUEST


# -- the storage key ------------------------------------------------------------------
def test_sealed_key_moved_to_another_row_does_not_open(world: World) -> None:
    first, _ = escrow(world)
    second, _ = escrow(world)
    db = str(world.env.engine.url.database)
    with sqlite3.connect(db) as conn:
        sealed = conn.execute("SELECT sealed FROM kmc_escrowed_keys WHERE serial = ?",
                              (first,)).fetchone()[0]
        conn.execute("UPDATE kmc_escrowed_keys SET sealed = ? WHERE serial = ?",
                     (sealed, second))
    with pytest.raises(KmcRefused) as err:
        world.kmc.recover_own(world.person, second, Pkcs12(PASS), level=3, actor="lina")
    assert err.value.reason is KmcRefusal.KEK_UNAVAILABLE


def test_kek_with_a_wrong_passphrase_refused(world: World) -> None:
    escrow(world)  # creates the KEK file
    wrong = FileKeyEncryptionKey(world.env.folder / "keys", b"another passphrase")
    with pytest.raises(KeyStoreError):
        wrong.unwrap(b"\x01" + bytes(40), b"x")


def test_escrow_rows_hold_sealed_keys_only(world: World) -> None:
    escrow(world)
    with world.env.engine.connect() as conn:
        row = conn.execute(select(escrowed_keys)).one()
    assert row.kek_label == "kmc-kek" and bytes(row.sealed)[:1] == b"\x01"


# -- the commands ---------------------------------------------------------------------
@dataclass
class People:
    people: dict[str, Person]

    def show(self, uid: str) -> Person:
        return self.people[uid]


@dataclass
class Obj:
    ca: object
    kmc: KeyManagementCentre
    directory: People
    json: bool = False


def cli(w: World, *args: str, json_output: bool = False) -> tuple[int, str]:
    from click.testing import CliRunner

    from pki.cli import cert
    from pki.kmc_cli import kmc

    obj = Obj(w.env.ca, w.kmc, People({"lina": w.person}), json_output)
    group = {"cert": cert, "kmc": kmc}[args[0]]
    result = CliRunner().invoke(group, list(args[1:]), obj=obj)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_cli_escrowed_issue_wraps_to_the_signing_certificate(world: World,
                                                             tmp_path: Path) -> None:
    (tmp_path / "sign.pem").write_bytes(pem(world.sign_cert))
    (tmp_path / "sign.key").write_bytes(world.sign_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    code, output = cli(world, "cert", "issue", "--uid", "lina", "--profile", "user-encrypt",
                       "--escrow", "--wrap-to", str(tmp_path / "sign.pem"), "--key-out",
                       str(tmp_path / "enc.cms"), "--out", str(tmp_path / "enc.pem"))
    assert code == 0, output
    assert (tmp_path / "enc.cms").stat().st_mode & 0o777 == 0o600
    run("openssl", "cms", "-decrypt", "-inform", "PEM", "-in", tmp_path / "enc.cms",
        "-recip", tmp_path / "sign.pem", "-inkey", tmp_path / "sign.key",
        "-out", tmp_path / "enc.key")
    key = serialization.load_pem_private_key((tmp_path / "enc.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((tmp_path / "enc.pem").read_bytes())
    assert key.public_key() == cert.public_key()
    serial = format(cert.serial_number, "x")
    code, output = cli(world, "kmc", "recover", "--uid", "lina", "--serial", serial,
                       "--wrap-to", str(tmp_path / "sign.pem"), "--out",
                       str(tmp_path / "again.cms"))
    assert code == 0, output
    again = run("openssl", "cms", "-decrypt", "-inform", "PEM", "-in",
                tmp_path / "again.cms", "-recip", tmp_path / "sign.pem", "-inkey",
                tmp_path / "sign.key")
    assert again.stdout == (tmp_path / "enc.key").read_text()


def test_cli_escrow_of_a_signing_profile_refused(world: World, tmp_path: Path) -> None:
    (tmp_path / "sign.pem").write_bytes(pem(world.sign_cert))
    before = world.env.counts()
    code, output = cli(world, "cert", "issue", "--uid", "lina", "--profile", "user-sign",
                       "--escrow", "--wrap-to", str(tmp_path / "sign.pem"), "--key-out",
                       str(tmp_path / "x.cms"))
    assert code == 1 and "signing_key" in output
    assert not (tmp_path / "x.cms").exists()
    assert world.env.counts()[0] == before[0]


def test_cli_kmc_requests_lists_requests(world: World) -> None:
    requested(world)
    code, output = cli(world, "kmc", "requests", json_output=True)
    import json

    assert code == 0, output
    assert json.loads(output)[0]["state"] == "pending"
