"""Faults of one machine, each with the real process starved or killed: the CA's
PKCS#11 token unavailable, the home's disk full, processes SIGKILLed mid-issuance.

What must hold every time (DESIGN.md, "Data that must never be lost"): every
certificate a client was given is in the inventory with its audit record,
nothing is recorded twice, and ``govtrust audit verify`` passes afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from pki.errors import KeyStoreError
from tests.fixtures.pki import VENV_BIN, build_env, make_csr, make_person

ROOT = Path(__file__).resolve().parents[2]
MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "87654321"


def home_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVTRUST_")}
    env.update({"GOVTRUST_SECRET_CA_PASSPHRASE": "test passphrase, not a secret",
                "GOVTRUST_SECRET_LDAP_ADMIN_PASSWORD": "test only, no slapd here",
                "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


def child(env: dict[str, str], *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.pki.durability_child",
                             *map(str, args)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finished(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def govtrust(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "govtrust"), "--home", str(home), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def inventory(engine: Engine) -> tuple[dict[str, str], dict[str, int], dict[str, int]]:
    """(status by serial, cert.issue records by serial, cert.revoke records by serial)."""
    with engine.connect() as conn:
        status = dict(conn.execute(text("SELECT serial, status FROM certificates")).all())
        rows = conn.execute(text("SELECT action, target FROM audit_log")).all()
    issue: dict[str, int] = {}
    revoke: dict[str, int] = {}
    for action, target in rows:
        book = issue if action == "cert.issue" else revoke if action == "cert.revoke" else None
        if book is not None and target.startswith("cert:"):
            book[target[5:]] = book.get(target[5:], 0) + 1
    return status, issue, revoke


# -- the PKCS#11 token unavailable ----------------------------------------------------

@pytest.fixture(scope="module")
def hsm_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict]]:
    """A home whose CA keys are in a SoftHSM2 token of its own (its own SOFTHSM2_CONF:
    the children load the module, not this process)."""
    if not (Path(MODULE).exists() and shutil.which("softhsm2-util")):
        pytest.fail("SoftHSM2 is not installed: run scripts/setup")
    folder = tmp_path_factory.mktemp("hsm-home")
    tokens = folder / "tokens"
    tokens.mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    env = home_env(SOFTHSM2_CONF=str(conf), GOVTRUST_PKI_KEY_STORE="pkcs11",
                   GOVTRUST_PKI_PKCS11_MODULE=MODULE, GOVTRUST_PKI_PKCS11_TOKEN="gt-fault",
                   GOVTRUST_SECRET_PKCS11_PIN=PIN)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "gt-fault",
                    "--so-pin", "12345678", "--pin", PIN], check=True, capture_output=True,
                   env=env)
    home = folder / "home"
    finished(child(env, "init", home))
    yield home, tokens, env


def test_wrong_pin_refuses_crl_signing_with_a_clear_cli_error(
        hsm_home: tuple[Path, Path, dict]) -> None:
    home, _, env = hsm_home
    proc = govtrust({**env, "GOVTRUST_SECRET_PKCS11_PIN": "11112222"}, home, "crl", "generate")
    assert proc.returncode == 1
    assert "the PIN of token 'gt-fault' is wrong" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_module_refuses_crl_signing_with_a_clear_cli_error(
        hsm_home: tuple[Path, Path, dict]) -> None:
    home, _, env = hsm_home
    proc = govtrust({**env, "GOVTRUST_PKI_PKCS11_MODULE": "/nonexistent/libhsm.so"}, home,
                    "crl", "generate")
    assert proc.returncode == 1
    assert "the PKCS#11 module /nonexistent/libhsm.so cannot be loaded" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_removed_token_refuses_signing_keeps_presigned_ocsp_and_names_the_keys(
        hsm_home: tuple[Path, Path, dict]) -> None:
    # Runs last in this module: it deletes the token.
    home, tokens, env = hsm_home
    report = json.loads(finished(child(env, "token-removed", home, tokens)))
    assert report["issue"].startswith("KeyStoreError")
    assert report["crl"].startswith("KeyStoreError")
    # The answer pre-signed before the token went is still served, byte for byte.
    assert report["presigned_status"] == 200 and report["presigned_same"]
    assert report["crl_http"] == 200  # stored CRLs are already signed
    missing = {k["role"] for k in report["key_status"] if not k["available"]}
    assert missing == {"root", "issuing", "ocsp"}
    assert all(k["reason"] for k in report["key_status"])
    # The CLI says so too, without a traceback.
    proc = govtrust(env, home, "crl", "generate")
    assert proc.returncode == 1 and "CA key store:" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- the home's disk full -------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs: the home's database and key folder live on it."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root (the test machines run as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    ballast = folder / "ballast"
    # Unbuffered: a buffered file keeps the tail of a short write and raises
    # ENOSPC again when it is closed, depending on how much room was left.
    with ballast.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass
    return ballast


def test_disk_full_gives_a_clear_error_records_nothing_and_recovers(small_disk: Path) -> None:
    env = build_env(small_disk, f"sqlite:///{small_disk / 'govtrust.db'}")
    person = make_person()
    try:
        before = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
        counts = env.counts()
        ballast = fill(small_disk)
        refused = 0
        for _ in range(5):
            try:
                env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
            except OperationalError as exc:
                assert "full" in str(exc.orig)
                refused += 1
        assert refused == 5
        assert env.counts() == counts  # nothing recorded, nothing half recorded
        with pytest.raises(OperationalError):
            env.ca.revoke(before.record.serial, "superseded")
        assert env.audit.verify(None).ok
        ballast.unlink()
        again = env.ca.issue_from_csr(person, "user-auth", make_csr()[0])
        env.ca.revoke(before.record.serial, "superseded")
        status, issue, revoke = inventory(env.engine)
        assert status[again.record.serial] == "valid" and issue[again.record.serial] == 1
        assert status[before.record.serial] == "revoked" and revoke[before.record.serial] == 1
        assert env.audit.verify(None).ok
    finally:
        env.engine.dispose()


def test_disk_full_is_a_clear_cli_error(small_disk: Path) -> None:
    env = home_env()
    home = small_disk / "home"
    finished(child(env, "init", home))
    ballast = fill(small_disk)
    proc = govtrust(env, home, "crl", "generate")
    assert proc.returncode == 1, proc.stdout
    assert "cannot use the database, nothing was changed" in proc.stderr
    assert "Traceback" not in proc.stderr
    ballast.unlink()
    verified = govtrust(env, home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


# -- SIGKILL in the middle of issuing and revoking ------------------------------------

def test_sigkill_mid_issuance_and_revocation_loses_and_doubles_nothing(tmp_path: Path) -> None:
    env = home_env()
    home = tmp_path / "home"
    finished(child(env, "init", home))
    told: list[tuple[str, str]] = []
    lock = threading.Lock()

    def read(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.endswith("\n"):
                break  # cut by the SIGKILL mid-write: the client was not told
            what, serial = line.split()
            with lock:
                told.append((what, serial))

    def start(seed: str) -> tuple[subprocess.Popen[str], threading.Thread]:
        proc = child(env, "work", home, seed, "400")
        reader = threading.Thread(target=read, args=(proc,), daemon=True)
        reader.start()
        return proc, reader

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            with lock:
                if len(told) >= count:
                    return
            time.sleep(0.02)
        raise AssertionError(f"workers told {len(told)} results, not {count}")

    workers = [start(str(i)) for i in range(3)]
    wait_for(15)
    # One worker first, mid-way; the others go on; then everything at once.
    workers[0][0].send_signal(signal.SIGKILL)
    wait_for(len(told) + 15)
    for proc, _ in workers:
        proc.send_signal(signal.SIGKILL)
    for proc, reader in workers:
        proc.wait(10)
        reader.join(10)
        assert proc.returncode == -signal.SIGKILL

    engine = create_engine(f"sqlite:///{home / 'govtrust.db'}")
    try:
        status, issue, revoke = inventory(engine)
    finally:
        engine.dispose()
    issued = [s for what, s in told if what == "issued"]
    revoked = [s for what, s in told if what == "revoked"]
    assert len(issued) == len(set(issued))  # serial numbers unique
    for serial in issued:
        assert serial in status and issue.get(serial) == 1, serial
    for serial in revoked:
        assert status[serial] == "revoked" and revoke.get(serial) == 1, serial
    assert all(n == 1 for n in issue.values()) and all(n == 1 for n in revoke.values())
    # Nothing recorded without its audit record, nor the other way round.
    assert set(issue) >= {s for s in status if s in issued}
    assert set(revoke) == {s for s, st in status.items() if st == "revoked"}
    verified = govtrust(env, home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_key_status_names_every_key_of_a_healthy_ca(tmp_path: Path) -> None:
    env = build_env(tmp_path, f"sqlite:///{tmp_path / 'govtrust.db'}")
    try:
        status = env.ca.key_status()
        assert [(k.role.value, k.available) for k in status] == [
            ("root", True), ("issuing", True), ("ocsp", True)]
        (tmp_path / "keys" / "issuing.key.pem").unlink()
        env.ca.keys._cache.clear()  # type: ignore[attr-defined]  # as a fresh process
        broken = {k.role.value: k for k in env.ca.key_status()}
        assert not broken["issuing"].available and "does not exist" in broken["issuing"].reason
        with pytest.raises(KeyStoreError):
            env.ca.issue_from_csr(make_person(), "user-auth", make_csr()[0])
    finally:
        env.engine.dispose()
