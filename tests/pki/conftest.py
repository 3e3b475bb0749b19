"""Fixtures for the CA tests: a CA on a fresh database, people, CSRs, the HTTP service."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from sqlalchemy import Engine, func, select
from werkzeug.serving import make_server

from directory.model import Person, PersonStatus
from idp.db import make_engine, session_factory, upgrade
from pki.audit_store import AuditLog, audit_log
from pki.authority import CertificateAuthority
from pki.http import create_app
from pki.keys import FileKeyStore, KeyStore
from pki.model import CASettings
from pki.publish import RecordingPublisher
from pki.store import SqlCertificateStore, certificates

VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_person(uid: str = "zhangwei", **kw: object) -> Person:
    values: dict[str, object] = dict(
        uid=uid, dn=f"uid={uid},ou=people,dc=beijing,dc=gov,dc=cn",
        entry_uuid=f"uuid-{uid}", display_name="张伟", department=("市财政局", "预算处"),
        title="科员", email=f"{uid}@beijing.gov.cn")
    values.update(kw)
    return Person(**values)  # type: ignore[arg-type]


def make_csr(key: CertificateIssuerPrivateKeyTypes | None = None,
             extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
             subject: str = "CN=ignored") -> tuple[bytes, CertificateIssuerPrivateKeyTypes]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name.from_rfc4514_string(subject))
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical)
    algorithm = None if key.__class__.__name__.startswith("Ed") else hashes.SHA256()
    csr = builder.sign(key, algorithm)  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM), key


@dataclass
class CAEnv:
    ca: CertificateAuthority
    engine: Engine
    publisher: RecordingPublisher
    audit: AuditLog
    folder: Path

    def counts(self) -> tuple[int, int]:
        """(certificates recorded, audit records): what 'nothing recorded' compares."""
        with self.engine.connect() as conn:
            certs = conn.execute(select(func.count()).select_from(certificates)).scalar_one()
            audits = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
        return int(certs), int(audits)

    def write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path


def build_env(folder: Path, url: str, *, keys: KeyStore | None = None,
              settings: CASettings | None = None) -> CAEnv:
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    publisher = RecordingPublisher()
    audit = AuditLog(sessions)
    ca = CertificateAuthority(
        SqlCertificateStore(sessions),
        keys or FileKeyStore(folder / "keys", b"test passphrase, not a secret"),
        settings or CASettings(), publisher=publisher, audit=audit)
    ca.initialize(actor="test")
    return CAEnv(ca, engine, publisher, audit, folder)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[CAEnv]:
    e = build_env(tmp_path, f"sqlite:///{tmp_path / 'govtrust.db'}")
    try:
        yield e
    finally:
        e.engine.dispose()


@pytest.fixture
def person() -> Person:
    return make_person()


@pytest.fixture
def suspended_person() -> Person:
    return make_person("lisi", display_name="李四", status=PersonStatus.SUSPENDED)


@dataclass
class Served:
    env: CAEnv
    url: str


def serve(env: CAEnv) -> Iterator[str]:
    """Run the public PKI service on its configured port, in a thread."""
    port = int(env.ca.settings.public_url.rsplit(":", 1)[1])
    server = make_server("127.0.0.1", port, create_app(env.ca), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield env.ca.settings.public_url
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def serve_ca(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start a CA (settings overridable) with its HTTP service; stopped at teardown."""
    started: list[tuple[CAEnv, Iterator[str]]] = []

    def start(**settings: object) -> Served:
        port = free_port()
        folder = tmp_path / f"ca{len(started)}"
        folder.mkdir()
        e = build_env(folder, f"sqlite:///{folder / 'govtrust.db'}",
                      settings=CASettings(public_url=f"http://127.0.0.1:{port}",
                                          **settings))  # type: ignore[arg-type]
        gen = serve(e)
        url = next(gen)
        started.append((e, gen))
        return Served(e, url)

    yield start
    for e, gen in started:
        for _ in gen:
            pass
        e.engine.dispose()


@pytest.fixture
def served(serve_ca: Callable[..., Served]) -> Served:
    return serve_ca()
