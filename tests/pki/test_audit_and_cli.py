"""The signed audit head (through the composition root) and the ca/cert/crl commands."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from sqlalchemy import text, update

from directory.errors import NotFound
from directory.model import Person
from idp.runtime.config import Config
from idp.runtime.services import Services
from pki.audit import Problem
from pki.audit_store import audit_head
from pki.authority import CertificateAuthority
from pki.cli import ca, cert, crl
from tests.fixtures.pki import CAEnv, make_csr, make_person


@pytest.fixture
def services(tmp_path: Path) -> Services:
    config = Config.load(tmp_path, environ={
        "GOVTRUST_SECRET_CA_PASSPHRASE": "not a real secret, test only",
    })
    s = Services(config)
    from idp.runtime.db import upgrade

    upgrade(s.engine)
    s.__dict__["certificate_publisher"] = __import__(
        "pki.publish", fromlist=["RecordingPublisher"]).RecordingPublisher()
    s.ca.initialize(actor="test")
    return s


def test_audit_verify_passes_then_names_the_edited_record(services: Services) -> None:
    services.ca.issue_from_csr(make_person(), "user-auth", make_csr()[0])
    report = services.verify_audit()
    assert report.ok and report.count > 3
    assert services.audit.signed_head_record() is not None
    with services.engine.begin() as conn:
        victim = conn.execute(text("SELECT max(seq) FROM audit_log WHERE action = 'cert.issue'")
                              ).scalar_one()
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = :s"),
                     {"s": victim})
    report = services.verify_audit()
    assert not report.ok and report.first_bad_seq == victim
    assert report.problem is Problem.CHANGED
    services.close()


def test_a_forged_head_signature_is_reported(services: Services) -> None:
    services.verify_audit()
    with services.engine.begin() as conn:
        conn.execute(update(audit_head).values(signature="AAAA"))
    report = services.verify_audit()
    assert not report.ok and report.problem is Problem.BAD_HEAD_SIGNATURE
    services.close()


def test_truncating_the_log_after_a_signed_head_shows(services: Services) -> None:
    services.verify_audit()
    with services.engine.begin() as conn:
        top = conn.execute(text("SELECT max(seq) FROM audit_log")).scalar_one()
        conn.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": top})
    report = services.verify_audit()
    assert not report.ok and report.problem is Problem.TRUNCATED
    services.close()


# -- the commands ---------------------------------------------------------------------

@dataclass
class FakeDirectory:
    people: dict[str, Person] = field(default_factory=dict)

    def show(self, uid: str) -> Person:
        try:
            return self.people[uid]
        except KeyError:
            raise NotFound("person", uid) from None


@dataclass
class Obj:
    ca: CertificateAuthority
    directory: FakeDirectory
    json: bool = False


def _run(obj: Obj, group: object, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(group, list(args), obj=obj)  # type: ignore[arg-type]
    return result.exit_code, result.output


def test_cert_commands_end_to_end(env: CAEnv, person: Person, tmp_path: Path) -> None:
    obj = Obj(env.ca, FakeDirectory({person.uid: person}))
    csr_path = tmp_path / "req.pem"
    csr_path.write_bytes(make_csr()[0])
    out = tmp_path / "cert.pem"
    code, output = _run(obj, cert, "issue", "--uid", person.uid, "--profile", "user-auth",
                        "--csr", str(csr_path), "--out", str(out))
    assert code == 0, output
    serial = format(x509.load_pem_x509_certificate(out.read_bytes()).serial_number, "x")
    obj.json = True
    code, output = _run(obj, cert, "list", "--uid", person.uid, "--expiring-within", "400")
    assert code == 0 and json.loads(output)[0]["serial"] == serial
    code, output = _run(obj, cert, "list", "--expiring-within", "30")
    assert code == 0 and [r["profile"] for r in json.loads(output)] == ["ocsp-signing"]
    code, output = _run(obj, cert, "hold", serial)
    assert code == 0 and json.loads(output)["status"] == "hold"
    code, output = _run(obj, cert, "release", serial)
    assert code == 0 and json.loads(output)["status"] == "valid"
    code, output = _run(obj, cert, "revoke", serial, "--reason", "keyCompromise",
                        "--invalidity-date", "2026-01-02T03:04:05")
    assert code == 0 and json.loads(output)["reason"] == "keyCompromise"
    obj.json = False
    code, output = _run(obj, cert, "revoke", serial.upper(), "--reason", "superseded")
    assert code == 1 and "cannot revoke" in output
    code, output = _run(obj, cert, "revoke", "abcdef0123")
    assert code == 1 and "no certificate with serial abcdef0123" in output
    code, output = _run(obj, crl, "generate", "--delta")
    assert code == 0 and "delta CRL" in output
    code, output = _run(obj, ca, "show")
    assert code == 0 and "GovTrust Issuing CA" in output and "/ocsp" in output


def test_cert_issue_errors_exit_non_zero(env: CAEnv, person: Person, tmp_path: Path) -> None:
    obj = Obj(env.ca, FakeDirectory({person.uid: person}))
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                    b"-----END CERTIFICATE REQUEST-----\n")
    before = env.counts()
    code, output = _run(obj, cert, "issue", "--uid", person.uid, "--profile", "user-auth",
                        "--csr", str(bad))
    assert code == 1 and "garbage" in output
    code, output = _run(obj, cert, "issue", "--uid", "nobody", "--profile", "user-auth",
                        "--csr", str(bad))
    assert code == 1 and "nobody" in output
    assert env.counts() == before


def test_cert_issue_pkcs12_and_tls_server(env: CAEnv, person: Person, tmp_path: Path) -> None:
    obj = Obj(env.ca, FakeDirectory({person.uid: person}))
    pw = tmp_path / "pw"
    pw.write_text("a long passphrase\n")
    p12 = tmp_path / "me.p12"
    code, output = _run(obj, cert, "issue", "--uid", person.uid, "--profile", "user-sign",
                        "--pkcs12", str(p12), "--passphrase-file", str(pw),
                        "--out", str(tmp_path / "me.pem"))
    assert code == 0, output
    assert p12.stat().st_mode & 0o777 == 0o600
    key = tmp_path / "tls.key"
    code, output = _run(obj, cert, "issue", "--app", "govtrust", "--profile", "tls-server",
                        "--dns", "localhost", "--dns", "127.0.0.1", "--approve",
                        "--key-out", str(key), "--out", str(tmp_path / "tls.pem"))
    assert code == 0, output
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
