"""``govtrust backup`` / ``govtrust restore`` as an operator runs them, on real
servers: the managed slapd, SQLite, PostgreSQL (tests.fixtures.postgres), and
``openssl verify`` as the independent check of the restored CA."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idp.runtime.archive import EncryptingWriter, decrypt
from idp.runtime.cli import cli
from tests.fixtures.postgres import PostgresCluster, free_port

PASSPHRASE = "correct horse battery staple 正确"
PERSON = "zhangwei"


@dataclass
class Source:
    """A demo home, stopped, and its archive."""

    home: Path
    archive: Path
    passphrase_file: Path
    env: dict[str, str]


def govtrust(env: dict[str, str], *args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def ok(env: dict[str, str], *args: str | Path) -> Any:
    result = govtrust(env, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def make_source(folder: Path, env: dict[str, str]) -> Source:
    home = folder / "source"
    initialized = govtrust(env, "--json", "--home", home, "init", "--demo")
    assert initialized.exit_code == 0, initialized.output
    # stdout is one JSON document under --json; the demo accounts go to stderr
    assert json.loads(initialized.stdout)["home"] == str(home)
    assert "Demo accounts" in initialized.stderr
    secret = folder / "passphrase"
    secret.write_text(PASSPHRASE + "\n", encoding="utf-8")
    archive = folder / "govtrust.backup"
    made = ok(env, "--home", home, "backup", archive, "--passphrase-file", secret)
    assert made["audit_head"]["chain_ok"] and made["directory"]["entries"] > 10
    return Source(home, archive, secret, env)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVTRUST_")}
    env["GOVTRUST_DIRECTORY_URIS"] = f"ldap://127.0.0.1:{free_port()}"
    return env


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_source(tmp_path_factory.mktemp("backup"), base_env())


def restore(src: Source, home: Path, archive: Path | None = None,
            env: dict[str, str] | None = None) -> Result:
    return govtrust(env or src.env, "--home", home, "restore", archive or src.archive,
                    "--passphrase-file", src.passphrase_file)


def refused(src: Source, home: Path, archive: Path, expected: str,
            env: dict[str, str] | None = None) -> None:
    """The restore fails with ``expected`` in its message and leaves no trace."""
    before = sorted(p.name for p in home.parent.iterdir())
    result = restore(src, home, archive, env)
    assert result.exit_code != 0
    assert expected in result.output, result.output
    assert sorted(p.name for p in home.parent.iterdir()) == before  # no staging left


def people(env: dict[str, str], home: Path) -> list[tuple[str, str]]:
    found = ok(env, "--home", home, "directory", "search", "--name", "张")
    return sorted((p["uid"], p["display_name"]) for p in found)


def issue_and_verify(env: dict[str, str], home: Path, folder: Path) -> None:
    """A certificate from the (restored) CA that openssl accepts with chain.pem."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
           .sign(key, hashes.SHA256()))
    csr_file = folder / "leaf.csr"
    csr_file.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    leaf = folder / "leaf.pem"
    ok(env, "--home", home, "cert", "issue", "--uid", PERSON, "--profile", "user-auth",
       "--csr", csr_file, "--out", leaf)
    done = subprocess.run(["openssl", "verify", "-CAfile", str(home / "pki" / "chain.pem"),
                           str(leaf)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr


def plaintext(src: Source) -> bytes:
    out = io.BytesIO()
    with open(src.archive, "rb") as handle:
        decrypt(handle, PASSPHRASE.encode(), out)
    return out.getvalue()


def reseal(tar_gz: bytes, path: Path, change: dict[str, Any]) -> Path:
    """The archive's tar with its manifest changed, encrypted again (a valid archive)."""
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(tar_gz), mode="r:gz") as tar:
        for info in tar.getmembers():
            handle = tar.extractfile(info)
            assert handle is not None
            members.append((info, handle.read()))
    rebuilt = io.BytesIO()
    with tarfile.open(fileobj=rebuilt, mode="w:gz") as tar:
        for info, body in members:
            if info.name == "MANIFEST.json":
                manifest = json.loads(body)
                manifest["database"].update(change)
                body = json.dumps(manifest).encode()
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    with open(path, "wb") as handle:
        writer = EncryptingWriter(handle, PASSPHRASE.encode(), n=1 << 14)
        writer.write(rebuilt.getvalue())
        writer.close()
    return path


# -- the round trip --------------------------------------------------------------------

def test_backup_then_restore_into_a_fresh_home_on_sqlite(source: Source, tmp_path: Path) -> None:
    home = tmp_path / "restored"
    result = restore(source, home)
    assert result.exit_code == 0, result.output
    verified = ok(source.env, "--home", home, "audit", "verify")
    assert verified["ok"] and verified["records"] > 0
    assert (home / "secrets").stat().st_mode & 0o077 == 0
    assert (home / "pki" / "keys").stat().st_mode & 0o077 == 0
    restored_people = people(source.env, home)
    assert (PERSON, "张伟") in restored_people
    assert restored_people == people(source.env, source.home)
    issue_and_verify(source.env, home, tmp_path)
    # The restored home's database is its own file, not the source's.
    assert str(home / "govtrust.db") in (home / "govtrust.toml").read_text(encoding="utf-8")


def test_restore_into_an_existing_empty_folder(source: Source, tmp_path: Path) -> None:
    home = tmp_path / "empty"
    home.mkdir()
    result = restore(source, home)
    assert result.exit_code == 0, result.output
    assert (home / "govtrust.toml").is_file() and (home / "slapd" / "slapd.d").is_dir()


# -- bad input: each a clear error, nothing changed --------------------------------------

def test_restore_refuses_a_non_empty_home(source: Source, tmp_path: Path) -> None:
    home = tmp_path / "busy"
    home.mkdir()
    (home / "notes.txt").write_text("keep me", encoding="utf-8")
    refused(source, home, source.archive, "is not empty")
    assert [p.name for p in home.iterdir()] == ["notes.txt"]


def test_restore_refuses_a_wrong_passphrase(source: Source, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all\n", encoding="utf-8")
    result = govtrust(source.env, "--home", tmp_path / "home", "restore", source.archive,
                      "--passphrase-file", wrong)
    assert result.exit_code != 0 and "wrong passphrase" in result.output
    assert not (tmp_path / "home").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["wrong"]


def test_restore_refuses_a_truncated_archive(source: Source, tmp_path: Path) -> None:
    cut = tmp_path / "cut.backup"
    data = source.archive.read_bytes()
    cut.write_bytes(data[:len(data) - 100])
    refused(source, tmp_path / "home", cut, "truncated")


def test_restore_refuses_an_archive_cut_at_a_frame_boundary(source: Source,
                                                            tmp_path: Path) -> None:
    """Only the header is left: no frame marked last, so still truncated."""
    header_end = 16 + 4 + int.from_bytes(source.archive.read_bytes()[16:20], "big")
    cut = tmp_path / "cut.backup"
    cut.write_bytes(source.archive.read_bytes()[:header_end])
    refused(source, tmp_path / "home", cut, "truncated")


def test_restore_refuses_a_tampered_archive(source: Source, tmp_path: Path) -> None:
    data = bytearray(source.archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered = tmp_path / "tampered.backup"
    tampered.write_bytes(bytes(data))
    refused(source, tmp_path / "home", tampered, "failed authentication")


def test_restore_refuses_a_file_that_is_not_an_archive(source: Source, tmp_path: Path) -> None:
    junk = tmp_path / "junk.backup"
    junk.write_bytes(b"PK\x03\x04 a zip file, perhaps" + os.urandom(200))
    refused(source, tmp_path / "home", junk, "not a GovTrust backup archive")


def test_restore_refuses_an_archive_from_a_newer_version(source: Source, tmp_path: Path) -> None:
    newer = reseal(plaintext(source), tmp_path / "newer.backup", {"revision": "9999"})
    refused(source, tmp_path / "home", newer, "newer GovTrust")


def test_restore_refuses_a_newer_archive_format(source: Source, tmp_path: Path) -> None:
    data = source.archive.read_bytes()
    length = int.from_bytes(data[16:20], "big")
    header = json.loads(data[20:20 + length])
    header["format"] = 2
    raw = json.dumps(header).encode()
    newer = tmp_path / "format2.backup"
    newer.write_bytes(data[:16] + len(raw).to_bytes(4, "big") + raw + data[20 + length:])
    refused(source, tmp_path / "home", newer, "newer GovTrust")


def test_restore_refuses_a_member_that_does_not_match_the_manifest(source: Source,
                                                                   tmp_path: Path) -> None:
    """Re-encrypted by someone with the passphrase, but a member's hash is off."""
    plain = plaintext(source)
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:gz") as tar:
        for info in tar.getmembers():
            handle = tar.extractfile(info)
            assert handle is not None
            body = handle.read()
            if info.name == "files/govtrust.toml":
                body = body.replace(b"beijing", b"shanghai")
                info.size = len(body)
            members.append((info, body))
    rebuilt = io.BytesIO()
    with tarfile.open(fileobj=rebuilt, mode="w:gz") as tar:
        for info, body in members:
            tar.addfile(info, io.BytesIO(body))
    path = tmp_path / "edited.backup"
    with open(path, "wb") as handle:
        writer = EncryptingWriter(handle, PASSPHRASE.encode(), n=1 << 14)
        writer.write(rebuilt.getvalue())
        writer.close()
    refused(source, tmp_path / "home", path, "does not match its SHA-256")


def test_backup_refuses_an_existing_output(source: Source) -> None:
    before = source.archive.read_bytes()
    result = govtrust(source.env, "--home", source.home, "backup", source.archive,
                      "--passphrase-file", source.passphrase_file)
    assert result.exit_code != 0 and "never overwrites" in result.output
    assert source.archive.read_bytes() == before


def test_backup_refuses_a_short_passphrase(source: Source, tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("short\n", encoding="utf-8")
    out = tmp_path / "out.backup"
    result = govtrust(source.env, "--home", source.home, "backup", out,
                      "--passphrase-file", short)
    assert result.exit_code != 0 and "at least 12" in result.output
    assert list(tmp_path.iterdir()) == [short]


# -- PostgreSQL --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg_source(tmp_path_factory: pytest.TempPathFactory,
              postgres: PostgresCluster) -> Iterator[Source]:
    env = base_env()
    env["GOVTRUST_DATABASE_URL"] = postgres.create_database()
    yield make_source(tmp_path_factory.mktemp("pg-backup"), env)


def test_backup_then_restore_into_an_empty_postgres_database(
        pg_source: Source, postgres: PostgresCluster, tmp_path: Path) -> None:
    home = tmp_path / "restored"
    env = dict(pg_source.env, GOVTRUST_DATABASE_URL=postgres.create_database())
    result = restore(pg_source, home, env=env)
    assert result.exit_code == 0, result.output
    assert ok(env, "--home", home, "audit", "verify")["ok"]
    assert people(env, home) == people(pg_source.env, pg_source.home)
    issue_and_verify(env, home, tmp_path)


def test_restore_refuses_a_non_empty_postgres_database(pg_source: Source,
                                                       tmp_path: Path) -> None:
    # The source's own database: full, so restoring over it must be refused.
    refused(pg_source, tmp_path / "home", pg_source.archive, "is not empty",
            env=pg_source.env)
    assert ok(pg_source.env, "--home", pg_source.home, "audit", "verify")["ok"]
