"""SM2 dual certificates (双证书): the KMC escrows an SM2 encryption key, the SM2
issuing CA certifies it, and the person receives it as a GM/T 0009
``SM2EnvelopedKey`` to their SM2 signing certificate.

OpenSSL 3.0 is the independent party: it makes the person's SM2 signing key and
CSR, SM2-encrypts a message to the encryption certificate's key
(``pkeyutl -encrypt``) and decrypts with the key the person got out of the
envelope (``pkeyutl -decrypt``). Every refusal is a named test that checks its
audit record and that nothing was issued or exported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from tongsuopy.crypto import serialization as t_serialization

from directory.model import Person
from idp.runtime.db import session_factory
from pki import sm2, sm2_envelope
from pki.audit_store import audit_log
from pki.errors import KmcRefusal, KmcRefused
from pki.kek import FileKeyEncryptionKey
from pki.kmc import DeliveryFormat, KeyManagementCentre, KmcSettings, Pkcs12, WrapTo
from pki.kmc_store import SqlEscrowStore, escrowed_keys
from pki.model import CASettings, HierarchyName
from tests.fixtures.pki import CAEnv, build_env, make_csr, make_person, pem, run

SM2 = HierarchyName.SM2
AGENTS = [make_person(f"agent{i}", groups=("key-recovery-agents",)) for i in (1, 2)]


@dataclass
class Holder:
    """A person with an SM2 signing certificate from our SM2 CA and its key (OpenSSL's)."""

    person: Person
    key: sm2.SM2PrivateKey
    key_file: Path
    cert: x509.Certificate


@dataclass
class World:
    env: CAEnv
    kmc: KeyManagementCentre

    def holder(self, uid: str, profile: str = "user-sign", **kw: object) -> Holder:
        person = make_person(uid, **kw)
        key_file = self.env.folder / f"{uid}-{profile}.key"
        csr_file = self.env.folder / f"{uid}-{profile}.csr"
        run("openssl", "genpkey", "-algorithm", "SM2", "-out", key_file)
        run("openssl", "req", "-new", "-key", key_file, "-sm3", "-sigopt",
            "distid:1234567812345678", "-subj", "/CN=ignored", "-out", csr_file)
        issued = self.env.ca.sm2.issue_from_csr(person, profile, csr_file.read_bytes())
        key = t_serialization.load_pem_private_key(key_file.read_bytes(), None)
        return Holder(person, key, key_file, issued.certificate)  # type: ignore[arg-type]

    def actions(self) -> list[tuple[str, str, dict[str, str]]]:
        with self.env.engine.connect() as conn:
            rows = conn.execute(select(audit_log.c.action, audit_log.c.target,
                                       audit_log.c.details).order_by(audit_log.c.seq)).all()
        return [(r.action, r.target, json.loads(r.details)) for r in rows]

    def last(self) -> tuple[str, str, dict[str, str]]:
        return self.actions()[-1]

    def exports(self) -> int:
        return sum(1 for a in self.actions() if a[0] == "kmc.exported")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("kmc-sm2")
    env = build_env(folder, f"sqlite:///{folder / 'govtrust.db'}",
                    settings=CASettings(sm2=True))
    kek = FileKeyEncryptionKey(folder / "keys", b"test passphrase, not a secret")
    try:
        yield World(env, KeyManagementCentre(SqlEscrowStore(session_factory(env.engine)),
                                             kek, env.ca, KmcSettings()))
    finally:
        env.engine.dispose()


@pytest.fixture(scope="module")
def lina(world: World) -> Holder:
    return world.holder("lina")


def _scalar(key: sm2.SM2PrivateKey) -> int:
    return key.private_numbers().private_value


def _pem_key(key: sm2.SM2PrivateKey) -> bytes:
    return key.private_bytes(t_serialization.Encoding.PEM, t_serialization.PrivateFormat.PKCS8,
                             t_serialization.NoEncryption())


def _refused(world: World, call: object, reason: KmcRefusal, action: str) -> None:
    """``call`` is refused for ``reason``, audited as ``action``; nothing issued or exported."""
    before, exports = world.env.counts(), world.exports()
    with pytest.raises(KmcRefused) as err:
        call()  # type: ignore[operator]
    assert err.value.reason is reason
    assert world.last()[0] == action and world.last()[2]["reason"] == reason.value
    assert world.env.counts()[0] == before[0]
    assert world.exports() == exports


# -- the dual issuance -----------------------------------------------------------------
def test_sm2_dual_issuance_key_matches_and_decrypts_what_openssl_encrypted(
        world: World, lina: Holder, tmp_path: Path) -> None:
    out = world.kmc.issue_escrowed(lina.person, WrapTo(lina.cert), actor="test",
                                   hierarchy=SM2)
    assert out.key.format is DeliveryFormat.SM2_ENVELOPED_KEY
    record, cert = out.issued.record, out.issued.certificate
    assert record.profile == "user-encrypt" and record.hierarchy is SM2
    assert cert.signature_algorithm_oid.dotted_string == sm2.SM3_WITH_SM2_OID
    assert cert.issuer == world.env.ca.sm2.issuing_certificate.subject
    # (a) the person opens the envelope with their signing key: the key matches the cert.
    key = sm2_envelope.open_enveloped_key(out.key.data, lina.key)
    cert_key = sm2.certificate_public_key(cert.public_bytes(serialization.Encoding.DER))
    assert sm2.SM2PublicKey.of(key.public_key()) == cert_key
    # (b) a sender who knows only the certificate encrypts with OpenSSL; the key reads it.
    (tmp_path / "enc.pem").write_bytes(pem(cert))
    run("openssl", "x509", "-in", tmp_path / "enc.pem", "-pubkey", "-noout",
        "-out", tmp_path / "enc.pub")
    message = "预算处 2026 年度预算（机密）".encode()
    (tmp_path / "message.txt").write_bytes(message)
    run("openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", tmp_path / "enc.pub",
        "-in", tmp_path / "message.txt", "-out", tmp_path / "message.sm2")
    assert sm2_envelope.decrypt(key, (tmp_path / "message.sm2").read_bytes()) == message
    # ... and OpenSSL itself decrypts with the delivered key.
    (tmp_path / "enc.key").write_bytes(_pem_key(key))
    got = run("openssl", "pkeyutl", "-decrypt", "-inkey", tmp_path / "enc.key",
              "-in", tmp_path / "message.sm2", "-out", tmp_path / "clear.txt")
    assert got.returncode == 0 and (tmp_path / "clear.txt").read_bytes() == message
    trail = [a for a, _, _ in world.actions()[-4:]]
    assert trail == ["kmc.generated", "cert.issue", "kmc.escrowed", "kmc.exported"]
    assert world.actions()[-4][2]["algorithm"] == "sm2"
    assert world.env.audit.verify().ok


def test_the_envelope_is_a_gmt_0009_sm2_enveloped_key(world: World, lina: Holder) -> None:
    out = world.kmc.issue_escrowed(lina.person, WrapTo(lina.cert), hierarchy=SM2)
    env = sm2_envelope.SM2EnvelopedKey.load(out.key.data, strict=True)
    assert env["sym_alg_id"]["algorithm"].dotted == "1.2.156.10197.1.104.1"  # SM4-ECB
    cipher = env["sym_encrypted_key"]
    assert len(cipher["hash"].native) == 32 and len(cipher["ciphertext"].native) == 16
    point = bytes(env["sm2_public_key"].contents)[1:]
    cert_key = sm2.certificate_public_key(out.issued.record.der)
    assert point == cert_key.point and point[0] == 4 and len(point) == 65
    assert len(bytes(env["sm2_encrypted_private_key"].contents)) == 1 + 32
    # The SM4 key inside is SM2-encrypted to the signing certificate: OpenSSL opens it.
    sealed = world.env.write("sealed.sm2", cipher.dump())
    sm4_key = run("openssl", "pkeyutl", "-decrypt", "-inkey", lina.key_file, "-in", sealed,
                  "-out", world.env.folder / "sm4.key")
    assert sm4_key.returncode == 0 and len((world.env.folder / "sm4.key").read_bytes()) == 16


def test_the_envelope_opens_with_the_signing_key_and_no_other(world: World,
                                                              lina: Holder) -> None:
    out = world.kmc.issue_escrowed(lina.person, WrapTo(lina.cert), hierarchy=SM2)
    assert _scalar(sm2_envelope.open_enveloped_key(out.key.data, lina.key)) > 0
    for other in (sm2.generate_private_key(),
                  sm2_envelope.open_enveloped_key(out.key.data, lina.key)):
        with pytest.raises(sm2.SM2Error) as err:
            sm2_envelope.open_enveloped_key(out.key.data, other)
        assert err.value.reason == "bad_ciphertext"


def test_a_tampered_envelope_does_not_open(world: World, lina: Holder) -> None:
    out = world.kmc.issue_escrowed(lina.person, WrapTo(lina.cert), hierarchy=SM2)
    damaged = bytearray(out.key.data)
    damaged[-1] ^= 0x01  # the last byte of the SM4-encrypted private key
    with pytest.raises(sm2.SM2Error) as err:
        sm2_envelope.open_enveloped_key(bytes(damaged), lina.key)
    assert err.value.reason in {"key_mismatch", "garbage"}


def test_the_sm2_key_is_sealed_under_the_kek_never_in_clear(world: World,
                                                            lina: Holder) -> None:
    out = world.kmc.issue_escrowed(lina.person, WrapTo(lina.cert), hierarchy=SM2)
    key = sm2_envelope.open_enveloped_key(out.key.data, lina.key)
    clear = _scalar(key).to_bytes(32, "big")
    with world.env.engine.connect() as conn:
        row = conn.execute(select(escrowed_keys).where(
            escrowed_keys.c.serial == out.issued.record.serial)).one()
    assert row.algorithm == "sm2" and row.kek_label == "kmc-kek"
    assert bytes(row.sealed)[:1] == b"\x01" and clear not in bytes(row.sealed)
    for path in world.env.folder.rglob("*"):
        if path.is_file():
            assert clear not in path.read_bytes(), path
    assert clear.hex() not in json.dumps(world.actions())


# -- recovery delivers the same envelope --------------------------------------------------
def test_own_recovery_gives_the_same_sm2_key_as_an_envelope(world: World,
                                                            lina: Holder) -> None:
    out = world.kmc.issue_escrowed(lina.person, WrapTo(lina.cert), hierarchy=SM2)
    first = _scalar(sm2_envelope.open_enveloped_key(out.key.data, lina.key))
    serial = out.issued.record.serial
    for level in (None, 3):
        got = world.kmc.recover_own(lina.person, serial, WrapTo(lina.cert), level=level,
                                    actor="lina")
        assert got.format is DeliveryFormat.SM2_ENVELOPED_KEY
        assert _scalar(sm2_envelope.open_enveloped_key(got.data, lina.key)) == first
        assert world.last()[0] == "kmc.exported"
        assert world.last()[2]["format"] == "sm2-enveloped-key"


def test_two_of_n_recovery_gives_the_requester_the_sm2_key_as_an_envelope(
        world: World, lina: Holder) -> None:
    out = world.kmc.issue_escrowed(lina.person, WrapTo(lina.cert), hierarchy=SM2)
    original = _scalar(sm2_envelope.open_enveloped_key(out.key.data, lina.key))
    auditor = world.holder("auditor", groups=("security-admins",))
    serial = out.issued.record.serial
    req = world.kmc.request_recovery(auditor.person, serial, "法院协助调查 (2026)京01刑1号",
                                     level=3)
    for agent in AGENTS:
        world.kmc.approve(req.id, agent, level=3)
    got = world.kmc.collect(req.id, auditor.person, WrapTo(auditor.cert), level=3)
    assert got.format is DeliveryFormat.SM2_ENVELOPED_KEY
    assert _scalar(sm2_envelope.open_enveloped_key(got.data, auditor.key)) == original
    with pytest.raises(sm2.SM2Error):  # the owner's signing key does not open it
        sm2_envelope.open_enveloped_key(got.data, lina.key)
    assert world.last()[:2] == ("kmc.exported", f"cert:{serial}")
    assert world.last()[2]["to"] == "auditor"


# -- refusals ----------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["user-sign", "user-auth"])
def test_escrow_refused_for_sm2_signing_profiles(world: World, lina: Holder,
                                                 profile: str) -> None:
    _refused(world, lambda: world.kmc.issue_escrowed(
        lina.person, WrapTo(lina.cert), profile_name=profile, hierarchy=SM2),
        KmcRefusal.SIGNING_KEY, "kmc.escrow_refused")


def test_wrap_to_another_persons_sm2_certificate_refused(world: World, lina: Holder) -> None:
    other = world.holder("wangfang")
    _refused(world, lambda: world.kmc.issue_escrowed(lina.person, WrapTo(other.cert),
                                                     hierarchy=SM2),
             KmcRefusal.BAD_RECIPIENT, "kmc.escrow_refused")
    assert "not the person's own" in world.last()[2]["detail"]


def test_wrap_to_an_ecdsa_signing_certificate_refused_for_an_sm2_key(world: World,
                                                                     lina: Holder) -> None:
    csr, _ = make_csr()
    ecdsa_sign = world.env.ca.issue_from_csr(lina.person, "user-sign", csr).certificate
    _refused(world, lambda: world.kmc.issue_escrowed(lina.person, WrapTo(ecdsa_sign),
                                                     hierarchy=SM2),
             KmcRefusal.BAD_RECIPIENT, "kmc.escrow_refused")
    assert "hierarchy" in world.last()[2]["detail"]


def test_wrap_to_an_sm2_signing_certificate_refused_for_an_ecdsa_key(world: World,
                                                                     lina: Holder) -> None:
    _refused(world, lambda: world.kmc.issue_escrowed(lina.person, WrapTo(lina.cert)),
             KmcRefusal.BAD_RECIPIENT, "kmc.escrow_refused")
    assert "hierarchy" in world.last()[2]["detail"]


def test_wrap_to_an_sm2_encryption_certificate_refused(world: World, lina: Holder) -> None:
    out = world.kmc.issue_escrowed(lina.person, WrapTo(lina.cert), hierarchy=SM2)
    _refused(world, lambda: world.kmc.issue_escrowed(
        lina.person, WrapTo(out.issued.certificate), hierarchy=SM2),
        KmcRefusal.BAD_RECIPIENT, "kmc.escrow_refused")


def test_wrap_to_a_revoked_sm2_signing_certificate_refused(world: World) -> None:
    zhou = world.holder("zhou")
    world.env.ca.sm2.revoke(format(zhou.cert.serial_number, "x"), "keyCompromise",
                            actor="test")
    _refused(world, lambda: world.kmc.issue_escrowed(zhou.person, WrapTo(zhou.cert),
                                                     hierarchy=SM2),
             KmcRefusal.BAD_RECIPIENT, "kmc.escrow_refused")


def test_sm2_pkcs12_delivery_refused_at_issuance(world: World, lina: Holder) -> None:
    _refused(world, lambda: world.kmc.issue_escrowed(
        lina.person, Pkcs12(b"a good passphrase"), hierarchy=SM2),
        KmcRefusal.SM2_ENVELOPE_ONLY, "kmc.escrow_refused")


def test_sm2_pkcs12_delivery_refused_at_recovery(world: World, lina: Holder) -> None:
    out = world.kmc.issue_escrowed(lina.person, WrapTo(lina.cert), hierarchy=SM2)
    _refused(world, lambda: world.kmc.recover_own(
        lina.person, out.issued.record.serial, Pkcs12(b"a good passphrase"), level=3,
        actor="lina"), KmcRefusal.SM2_ENVELOPE_ONLY, "kmc.recovery_refused")


def test_a_damaged_sm2_cipher_is_refused_before_tongsuo_sees_it(lina: Holder) -> None:
    with pytest.raises(sm2.SM2Error) as err:
        sm2_envelope.decrypt(lina.key, b"\x30\x03\x02\x01\x01junk")
    assert err.value.reason == "garbage"


# -- the command ------------------------------------------------------------------------
def test_cli_issues_an_sm2_escrowed_encryption_certificate(world: World, lina: Holder,
                                                           tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pki.cli import cert

    @dataclass
    class People:
        def show(self, uid: str) -> Person:
            assert uid == "lina"
            return lina.person

    @dataclass
    class Obj:
        ca: object
        kmc: KeyManagementCentre
        directory: People
        json: bool = True

    (tmp_path / "sign.pem").write_bytes(pem(lina.cert))
    result = CliRunner().invoke(cert, [
        "issue", "--algorithm", "sm2", "--uid", "lina", "--profile", "user-encrypt",
        "--escrow", "--wrap-to", str(tmp_path / "sign.pem"), "--out", str(tmp_path / "enc.pem"),
        "--key-out", str(tmp_path / "enc.env")], obj=Obj(world.env.ca, world.kmc, People()))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["hierarchy"] == "sm2"
    assert (tmp_path / "enc.env").stat().st_mode & 0o777 == 0o600
    key = sm2_envelope.open_enveloped_key((tmp_path / "enc.env").read_bytes(), lina.key)
    issued = x509.load_pem_x509_certificate((tmp_path / "enc.pem").read_bytes())
    assert sm2.SM2PublicKey.of(key.public_key()) == sm2.certificate_public_key(
        issued.public_bytes(serialization.Encoding.DER))
    assert not isinstance(key, ec.EllipticCurvePrivateKey)  # tongsuopy's, not pyca's
