"""The offline root: ``govtrust init --offline-root`` and the root ceremony, through
the real command (subprocess), checked with OpenSSL.

One home is made per module (init starts the managed slapd: seconds); the tests
that change it (a ceremony) assert on what they made, not on a fixed state.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from idp.runtime.config import Config
from idp.runtime.health import pki_readiness
from idp.runtime.services import Services
from pki.keys import FileKeyStore, KeyAlgorithm
from pki.model import CARole
from pki.publish import RecordingPublisher
from tests.fixtures.pki import free_port, make_csr, make_person
from tests.fixtures.served import GOVTRUST

ROOT_PASSPHRASE = "root passphrase, test only\n"


@dataclass(frozen=True)
class OfflineHome:
    home: Path
    medium: Path
    passphrase_file: Path
    env: dict[str, str]

    @property
    def root_key(self) -> Path:
        return self.medium / "root.key.pem"

    def govtrust(self, *args: str, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([GOVTRUST, "--home", str(self.home), *args],
                              env=env or self.env, capture_output=True, text=True, timeout=120)

    def services(self, **env: str) -> Services:
        services = Services(Config.load(self.home, environ={**self.env, **env}))
        services.may_start_slapd = False
        services.__dict__["certificate_publisher"] = RecordingPublisher()
        return services


def _env(tmp: Path) -> dict[str, str]:
    return dict(os.environ, GOVTRUST_DIRECTORY_URIS=f"ldap://127.0.0.1:{free_port()}",
                GOVTRUST_PKI_SM2="false")


def _passphrase_file(folder: Path, text: str = ROOT_PASSPHRASE) -> Path:
    path = folder / "root-passphrase"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> OfflineHome:
    base = tmp_path_factory.mktemp("offline-root")
    (base / "medium").mkdir()
    made = OfflineHome(base / "home", base / "medium", _passphrase_file(base), _env(base))
    done = made.govtrust("init", "--offline-root", str(made.medium),
                         "--root-passphrase-file", str(made.passphrase_file))
    assert done.returncode == 0, done.stderr
    return made


@pytest.fixture
def services(offline: OfflineHome) -> Iterator[Services]:
    services = offline.services()
    try:
        yield services
    finally:
        services.close()


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)


def _state(services: Services) -> tuple[str, int, int, int]:
    """What a refused ceremony must leave as it was: the current issuing CA, the
    newest root CRL's number, the audit log's length, the number of CA keys."""
    from sqlalchemy import func, select

    from pki.audit_store import audit_log

    ca = services.ca
    issuing = ca.store.current_ca(CARole.ISSUING)
    root_crl = ca.store.latest_crl("root", False)
    assert issuing is not None and root_crl is not None
    with services.engine.connect() as conn:
        records = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    keys = len(list((services.config.home / "pki" / "keys").iterdir()))
    return issuing.serial, root_crl.number, records, keys


# -- init --offline-root ----------------------------------------------------------------

def test_init_leaves_no_root_key_in_the_home(offline: OfflineHome, services: Services
                                             ) -> None:
    keys = sorted(p.name for p in (offline.home / "pki" / "keys").iterdir())
    assert "root.key.pem" not in keys
    assert any(k.startswith("issuing") for k in keys) and any(k.startswith("ocsp") for k in keys)
    assert not any("root" in p.name for p in offline.home.rglob("*.key.pem"))
    # The medium's key is the root certificate's, encrypted under the root
    # passphrase (the home's does not open it).
    assert offline.root_key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert services.ca.root_key_in_home is False
    root = x509.load_pem_x509_certificate((offline.home / "pki" / "root.pem").read_bytes())
    assert root == services.ca.root_certificate


def test_issuance_works_without_the_root_key(offline: OfflineHome, services: Services,
                                             tmp_path: Path) -> None:
    issued = services.ca.issue_from_csr(make_person(), "user-auth", make_csr()[0])
    (tmp_path / "leaf.pem").write_bytes(_pem(issued.certificate))
    (tmp_path / "issuing.pem").write_bytes(_pem(services.ca.issuing_certificate))
    done = _openssl("verify", "-CAfile", str(offline.home / "pki" / "root.pem"),
                    "-untrusted", str(tmp_path / "issuing.pem"), str(tmp_path / "leaf.pem"))
    assert done.returncode == 0, done.stderr


def test_the_duty_does_not_sign_the_root_crl_without_the_key(services: Services) -> None:
    before = services.ca.store.latest_crl("root", False)
    done = services.ca.refresh_if_due(actor="test")
    assert "root-crl" not in done
    assert services.ca.store.latest_crl("root", False) == before


def test_the_root_crl_from_init_lives_root_crl_days_and_verifies(
        offline: OfflineHome, services: Services, tmp_path: Path) -> None:
    rec = services.ca.store.latest_crl("root", False)
    assert rec is not None
    assert (rec.next_update - rec.this_update).days == 180
    (tmp_path / "root.crl").write_bytes(rec.der)
    done = _openssl("crl", "-inform", "DER", "-in", str(tmp_path / "root.crl"), "-noout",
                    "-CAfile", str(offline.home / "pki" / "root.pem"))
    assert done.returncode == 0 and "verify OK" in done.stderr + done.stdout, done


# -- the ceremony ---------------------------------------------------------------------

def test_ceremony_issues_an_issuing_ca_that_openssl_verifies_to_the_root(
        offline: OfflineHome, tmp_path: Path) -> None:
    chain = tmp_path / "chain.pem"
    done = offline.govtrust("--json", "ca", "ceremony", "issue-ca", "--root-key",
                            str(offline.root_key), "--root-passphrase-file",
                            str(offline.passphrase_file), "--out", str(chain))
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    new = x509.load_pem_x509_certificate(chain.read_bytes())
    assert format(new.serial_number, "x") == info["serial"].lstrip("0")
    (tmp_path / "issuing.pem").write_bytes(_pem(new))
    verified = _openssl("verify", "-CAfile", str(offline.home / "pki" / "root.pem"),
                        str(tmp_path / "issuing.pem"))
    assert verified.returncode == 0, verified.stderr
    services = offline.services()
    try:
        # Recorded as the current issuing CA, its key in the home, and audited.
        assert services.ca.issuing_certificate == new
        assert (offline.home / "pki" / "keys" / f"{info['key_label']}.key.pem").exists()
        assert services.verify_audit().ok
        with services.engine.connect() as conn:
            from sqlalchemy import text

            actions = conn.execute(text("SELECT action FROM audit_log WHERE target = "
                                        "'ca:issuing'")).scalars().all()
        assert "ca.ceremony.issue_ca" in actions
        # It signs: a new certificate chains through it to the root.
        leaf = services.ca.issue_from_csr(make_person(), "user-auth", make_csr()[0])
        (tmp_path / "leaf.pem").write_bytes(_pem(leaf.certificate))
        done = _openssl("verify", "-CAfile", str(offline.home / "pki" / "root.pem"),
                        "-untrusted", str(tmp_path / "issuing.pem"), str(tmp_path / "leaf.pem"))
        assert done.returncode == 0, done.stderr
        # The responder is certified by the new issuing CA.
        responder, _ = services.ca.ocsp_credentials()
        assert responder.issuer == new.subject
        assert responder.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier).value.key_identifier == \
            new.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    finally:
        services.close()


def test_ceremony_signs_the_root_crl_that_openssl_verifies(
        offline: OfflineHome, tmp_path: Path) -> None:
    done = offline.govtrust("--json", "ca", "ceremony", "crl", "--root-key",
                            str(offline.root_key), "--root-passphrase-file",
                            str(offline.passphrase_file))
    assert done.returncode == 0, done.stderr
    number = json.loads(done.stdout)["number"]
    services = offline.services()
    try:
        rec = services.ca.store.latest_crl("root", False)
        assert rec is not None and rec.number == number
    finally:
        services.close()
    (tmp_path / "root.crl").write_bytes(rec.der)
    verified = _openssl("crl", "-inform", "DER", "-in", str(tmp_path / "root.crl"), "-noout",
                        "-CAfile", str(offline.home / "pki" / "root.pem"))
    assert "verify OK" in verified.stderr + verified.stdout, verified


# -- refusals: each a clear error, nothing changed --------------------------------------

def _refused(offline: OfflineHome, services: Services, *args: str) -> str:
    """Run ``govtrust ca ceremony ARGS`` in-process (click's runner: the refusals
    happen before anything is signed, a subprocess per case would only add
    start-up time); it must fail with a message and change nothing."""
    from click.testing import CliRunner

    from idp.runtime.cli import cli

    before = _state(services)
    done = CliRunner().invoke(cli, ["--home", str(offline.home), "ca", "ceremony", *args],
                              env={k: v for k, v in offline.env.items()
                                   if k.startswith("GOVTRUST_")})
    assert done.exit_code not in (0, None) and done.exc_info is not None
    assert isinstance(done.exception, SystemExit), done.exc_info  # click's error exit
    assert _state(services) == before
    return done.output


def test_ceremony_without_a_medium_refuses_when_the_root_key_is_offline(
        offline: OfflineHome, services: Services) -> None:
    for command in ("issue-ca", "crl"):
        err = _refused(offline, services, command)
        assert "root CA key (offline)" in err and "--root-key" in err


def test_ceremony_refuses_a_wrong_passphrase(offline: OfflineHome, services: Services,
                                             tmp_path: Path) -> None:
    wrong = _passphrase_file(tmp_path, "not the root passphrase\n")
    for command in ("issue-ca", "crl"):
        err = _refused(offline, services, command, "--root-key", str(offline.root_key),
                       "--root-passphrase-file", str(wrong))
        assert "wrong_passphrase" in err and "cannot decrypt" in err


def test_ceremony_refuses_another_cas_key(offline: OfflineHome, services: Services,
                                          tmp_path: Path) -> None:
    # Another CA's medium: a root key under the same passphrase, but not this root's.
    other = tmp_path / "other-medium"
    FileKeyStore(other, ROOT_PASSPHRASE.strip().encode()).create("root", KeyAlgorithm.EC_P256)
    for command in ("issue-ca", "crl"):
        err = _refused(offline, services, command, "--root-key", str(other / "root.key.pem"),
                       "--root-passphrase-file", str(offline.passphrase_file))
        assert "other_ca" in err


def test_ceremony_refuses_a_missing_key_file(offline: OfflineHome, services: Services,
                                             tmp_path: Path) -> None:
    err = _refused(offline, services, "issue-ca", "--root-key",
                   str(tmp_path / "unmounted" / "root.key.pem"),
                   "--root-passphrase-file", str(offline.passphrase_file))
    assert "missing" in err and "does not exist" in err


def test_ceremony_refuses_a_medium_without_a_passphrase(offline: OfflineHome,
                                                        services: Services) -> None:
    err = _refused(offline, services, "crl", "--root-key", str(offline.root_key))
    assert "--root-passphrase-file" in err


def _init_refused(made: OfflineHome, **env: str) -> str:
    """``govtrust init --offline-root`` in-process (refused before anything starts)."""
    from click.testing import CliRunner

    from idp.runtime.cli import cli

    done = CliRunner().invoke(cli, ["--home", str(made.home), "init", "--offline-root",
                                    str(made.medium), "--root-passphrase-file",
                                    str(made.passphrase_file)],
                              env={**{k: v for k, v in made.env.items()
                                      if k.startswith("GOVTRUST_")}, **env})
    assert done.exit_code not in (0, None) and isinstance(done.exception, SystemExit), \
        done.exc_info
    return done.output


def test_init_refuses_the_homes_passphrase_as_the_root_passphrase(tmp_path: Path) -> None:
    (tmp_path / "medium").mkdir()
    made = OfflineHome(tmp_path / "home", tmp_path / "medium", _passphrase_file(tmp_path),
                       _env(tmp_path))
    err = _init_refused(made, GOVTRUST_SECRET_CA_PASSPHRASE=ROOT_PASSPHRASE.strip())
    assert "same_passphrase" in err, err
    assert not made.home.exists() and not any(made.medium.iterdir())


def test_init_refuses_a_medium_already_holding_a_root_key(tmp_path: Path) -> None:
    (tmp_path / "medium").mkdir()
    made = OfflineHome(tmp_path / "home", tmp_path / "medium", _passphrase_file(tmp_path),
                       _env(tmp_path))
    FileKeyStore(made.medium, b"an older root").create("root", KeyAlgorithm.EC_P256)
    before = made.root_key.read_bytes()
    assert "medium_not_empty" in _init_refused(made)
    assert not made.home.exists() and made.root_key.read_bytes() == before


def test_init_refuses_a_medium_that_is_not_there(tmp_path: Path) -> None:
    made = OfflineHome(tmp_path / "home", tmp_path / "unmounted", _passphrase_file(tmp_path),
                       _env(tmp_path))
    assert "no_medium" in _init_refused(made)
    assert not made.home.exists() and not made.medium.exists()


def test_init_offline_root_refuses_a_home_whose_root_key_is_in_it(
        offline: OfflineHome, tmp_path: Path) -> None:
    from pki.errors import RootKeyError, RootKeyProblem

    # A home initialised the ordinary way holds its root key; asking for an
    # offline root afterwards is refused (in-process: the home needs no slapd).
    (tmp_path / "online").mkdir()
    home = Services(Config.load(tmp_path / "online", environ={
        "GOVTRUST_SECRET_CA_PASSPHRASE": "online home, test only"}))
    try:
        from idp.runtime.config import write_config
        from idp.runtime.db import upgrade
        from idp.runtime.home import OfflineRoot, initialize

        write_config(home.config.home, {"pki": {"sm2": False}})
        upgrade(home.engine)
        home.__dict__["certificate_publisher"] = RecordingPublisher()
        home.ca.initialize(actor="test")
        (tmp_path / "medium").mkdir()
        with pytest.raises(RootKeyError) as caught:
            initialize(home, demo=False, echo=lambda _: None,
                       offline_root=OfflineRoot(tmp_path / "medium", b"root"))
        assert caught.value.problem is RootKeyProblem.ONLINE_ROOT
        assert not any((tmp_path / "medium").iterdir())
    finally:
        home.close()


# -- /readyz --------------------------------------------------------------------------

def test_root_crl_near_its_end_is_a_readiness_warning_not_unready(offline: OfflineHome
                                                                  ) -> None:
    services = offline.services()
    try:
        report = pki_readiness(services).report()
        assert report.ready and report.checks["ca.root-crl"] == "ok", report
    finally:
        services.close()
    # Warn 181 days ahead: the ceremony's 180-day CRL is inside the window.
    services = offline.services(GOVTRUST_PKI_ROOT_CRL_DAYS="3650",
                                GOVTRUST_PKI_ROOT_CRL_WARN_DAYS="181")
    try:
        report = pki_readiness(services).report()
        assert report.ready, report
        assert report.checks["ca.root-crl"].startswith("warning: PKIError"), report
        assert "govtrust ca ceremony crl" in report.checks["ca.root-crl"]
    finally:
        services.close()
