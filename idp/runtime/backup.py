"""``govtrust backup`` and ``govtrust restore``: one encrypted archive of a home.

What the archive holds (a gzip'd tar inside ``idp.runtime.archive``'s frames):

``database/govtrust.db``
    The SQLite database, copied with SQLite's online backup API (a consistent
    page-by-page copy while the server keeps writing); or
``database/govtrust.pgdump``
    ``pg_dump --format=custom`` of the PostgreSQL database, taken inside an
    exported snapshot so the audit head recorded in the manifest is the one in
    the dump.
``directory/data.ldif``
    ``slapcat`` of the managed slapd's suffix, with operational attributes
    (entryUUID, entryCSN, pwdHistory...): back-mdb allows it while slapd runs.
``directory/config.ldif``
    ``slapcat -n0`` (cn=config: schema, ppolicy, ACLs, overlays), for the
    record. Restore does not load it: it names the old home's absolute paths,
    and ``ManagedSlapd`` regenerates the same cn=config from the restored
    settings and secrets (the password policy itself is an entry in data.ldif).
    An operator who hand-edited cn=config finds those edits in this file.
``files/...``
    Everything else in the home: ``govtrust.toml``, ``secrets/``, the file key
    store ``pki/keys`` (the keys stay encrypted under the CA passphrase, exactly
    as they are on disk), chains, the IdP's TLS files.
``MANIFEST.json``
    Versions (archive format, GovTrust, database revision), the audit chain
    head at the time of the copy, and the size and SHA-256 of every member.

Not in it: CA keys held in a PKCS#11 token (non-extractable by design; back the
token up with its vendor's tools), secrets given through ``GOVTRUST_SECRET_*``
variables, and an external directory (back it up with its own slapcat).

Restore refuses a non-empty home and builds everything in a folder beside the
home, renaming it into place only when every step succeeded.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from idp.runtime.archive import FORMAT, ArchiveError, EncryptingWriter, decrypt
from idp.runtime.config import CONFIG_NAME, Config, write_config

MANIFEST = "MANIFEST.json"
SQLITE_MEMBER = "database/govtrust.db"
PGDUMP_MEMBER = "database/govtrust.pgdump"
DATA_LDIF = "directory/data.ldif"
CONFIG_LDIF = "directory/config.ldif"
FILES = "files/"
SLAPCAT = "/usr/sbin/slapcat"
SLAPADD = "/usr/sbin/slapadd"
# Parts of the home that are not copied as files: the directory (dumped as LDIF)
# and the database (copied through its own API).
_SKIPPED_DIRS = ("slapd",)
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

Echo = Callable[[str], None]


class BackupError(Exception):
    """Backup or restore refused or failed; nothing was changed."""


@dataclass
class BackupReport:
    path: Path
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)


# -- helpers ---------------------------------------------------------------------------

def read_passphrase(passphrase_file: Path | None, environ: dict[str, str] | os._Environ[str]
                    ) -> bytes:
    """From ``--passphrase-file`` (first line) or ``GOVTRUST_BACKUP_PASSPHRASE``."""
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise BackupError(f"cannot read the passphrase file: {exc.strerror}") from None
        value = text.splitlines()[0] if text.splitlines() else ""
    elif "GOVTRUST_BACKUP_PASSPHRASE" in environ:
        value = environ["GOVTRUST_BACKUP_PASSPHRASE"]
    else:
        raise BackupError("a passphrase is needed: --passphrase-file FILE or "
                          "GOVTRUST_BACKUP_PASSPHRASE")
    from idp.runtime.archive import check_passphrase

    try:
        check_passphrase(value.encode("utf-8"))
    except ValueError as exc:
        raise BackupError(str(exc)) from None
    return value.encode("utf-8")


def govtrust_version() -> str:
    try:
        return importlib_metadata.version("govtrust")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(parsed.database).resolve()


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI for pg_dump/pg_restore and an environment carrying the password
    (PGPASSWORD, so it never shows in a process list)."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain: URL = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def pg_tool(name: str) -> str:
    """The newest ``/usr/lib/postgresql/*/bin/<name>``, else one on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return str(found[-1])
    located = shutil.which(name)
    if located is None:
        raise BackupError(f"{name} is not installed (Debian: postgresql-client)")
    return located


def _run(cmd: list[str], what: str, *, env: dict[str, str] | None = None,
         stdin: bytes | None = None) -> None:
    done = subprocess.run(cmd, input=stdin, capture_output=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {done.stderr.decode('utf-8', 'replace')[-1500:]}")


def _audit_state(session: Session) -> dict[str, Any]:
    from pki.audit import verify_chain
    from pki.audit_store import audit_head, iter_records

    row = session.execute(select(audit_head.c.seq, audit_head.c.hash)
                          .where(audit_head.c.id == 1)).first()
    report = verify_chain(iter_records(session))
    return {"seq": int(row.seq) if row else 0, "hash": str(row.hash) if row else None,
            "records": report.count, "chain_ok": report.ok}


def _revision(session: Session) -> str | None:
    from sqlalchemy import text

    try:
        return session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # no alembic_version table: a database never migrated
        return None


# -- backup ----------------------------------------------------------------------------

def backup(config: Config, out: Path, passphrase: bytes, *, echo: Echo) -> BackupReport:
    """Write the home's encrypted archive to ``out`` (created; never overwritten)."""
    if not config.initialized:
        raise BackupError(f"{config.home} is not a GovTrust home (no {CONFIG_NAME})")
    out = out.resolve()
    if out.exists():
        raise BackupError(f"{out} exists; a backup never overwrites a file")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} is not a folder")
    notes: list[str] = []
    # Clear copies (the database, the directory) wait here until encrypted: a
    # private folder beside the output, removed whatever happens.
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    partial = out.with_name(out.name + ".partial")
    try:
        members: dict[str, Path] = {}
        manifest: dict[str, Any] = {
            "format": FORMAT, "govtrust_version": govtrust_version(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "home": str(config.home),
        }
        db_file = sqlite_path(config.database_url)
        if db_file is not None:
            manifest["database"] = _backup_sqlite(db_file, stage, members)
        else:
            manifest["database"] = _backup_postgres(config.database_url, stage, members)
        manifest["audit_head"] = manifest["database"].pop("audit")
        manifest["directory"] = _backup_directory(config, stage, members, notes)
        key_store = str(config.get("pki", "key_store"))
        manifest["key_store"] = key_store
        if key_store == "pkcs11":
            notes.append(f"the CA keys live in the PKCS#11 token "
                         f"{config.get('pki', 'pkcs11_token')!r} and are NOT in this archive: "
                         "back the token up with its vendor's tools (restore needs it)")
        env_secrets = sorted(k for k in config.environ if k.startswith("GOVTRUST_SECRET_"))
        if env_secrets:
            notes.append("secrets given by environment are not in the archive: "
                         + ", ".join(env_secrets))
        skip = {stage, out, partial}
        if db_file is not None:
            skip |= {db_file, *(Path(str(db_file) + s) for s in _SQLITE_SIDE_FILES)}
        for path in _home_files(config.home, skip):
            members[FILES + path.relative_to(config.home).as_posix()] = path
        # Folder modes too (secrets/ and pki/keys are 0700): tar members are files only.
        manifest["folders"] = [{"name": rel, "mode": mode}
                               for rel, mode in _home_folders(config.home, skip)]
        manifest["members"] = [{"name": name, "size": path.stat().st_size,
                                "sha256": _sha256_file(path)}
                               for name, path in sorted(members.items())]
        manifest["notes"] = notes
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            writer = EncryptingWriter(raw, passphrase)
            with tarfile.open(fileobj=writer, mode="w|gz") as tar:  # type: ignore[call-overload]
                for name, path in sorted(members.items()):
                    tar.add(str(path), arcname=name, recursive=False)
                body = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
                info = tarfile.TarInfo(MANIFEST)
                info.size = len(body)
                info.mode = 0o600
                tar.addfile(info, io.BytesIO(body))
            writer.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.rename(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for note in notes:
        echo("note: " + note)
    return BackupReport(out, manifest, notes)


def _home_files(home: Path, skip: set[Path]) -> Iterator[Path]:
    """Regular files of the home, less the directory's and the database's own."""
    for root, dirs, files in os.walk(home):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if (here / d) not in skip
                         and not (here == home and d in _SKIPPED_DIRS))
        for name in sorted(files):
            path = here / name
            if path in skip or path.is_symlink() or not path.is_file():
                continue
            yield path


def _home_folders(home: Path, skip: set[Path]) -> list[tuple[str, int]]:
    found = [(".", stat.S_IMODE(home.stat().st_mode))]
    for root, dirs, _files in os.walk(home):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if (here / d) not in skip
                         and not (here == home and d in _SKIPPED_DIRS))
        found.extend(((here / d).relative_to(home).as_posix(),
                      stat.S_IMODE((here / d).stat().st_mode)) for d in dirs)
    return found


def _apply_folder_modes(home: Path, folders: list[dict[str, Any]]) -> None:
    for entry in folders:
        rel = PurePosixPath(str(entry["name"]))
        if rel.is_absolute() or ".." in rel.parts:
            raise BackupError(f"the archive names an unsafe folder: {entry['name']!r}")
        path = home / rel
        path.mkdir(parents=True, exist_ok=True)
        # Never more than the owner's rwx and others' r-x: the modes come from the archive.
        os.chmod(path, int(entry["mode"]) & 0o755)


def _backup_sqlite(db_file: Path, stage: Path, members: dict[str, Path]) -> dict[str, Any]:
    if not db_file.exists():
        raise BackupError(f"the database {db_file} does not exist")
    copy = stage / "govtrust.db"
    source = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)  # SQLite's online backup API: a consistent snapshot
    finally:
        target.close()
        source.close()
    from idp.runtime.db import make_engine

    engine = make_engine(f"sqlite:///{copy}")
    try:
        with Session(engine) as session:
            revision = _revision(session)
            audit = _audit_state(session)
    finally:
        engine.dispose()
    # The copy is in WAL mode like its source; fold it into one file.
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    members[SQLITE_MEMBER] = copy
    return {"kind": "sqlite", "revision": revision, "member": SQLITE_MEMBER, "audit": audit}


def _backup_postgres(url: str, stage: Path, members: dict[str, Path]) -> dict[str, Any]:
    from sqlalchemy import text

    from idp.runtime.db import make_engine

    dump = stage / "govtrust.pgdump"
    uri, env = libpq(url)
    engine = make_engine(url)
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            # pg_dump reads inside the snapshot this transaction exports, so the
            # audit head below is exactly the one the dump holds.
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            with Session(bind=conn) as session:
                revision = _revision(session)
                audit = _audit_state(session)
            _run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                  f"--snapshot={snapshot}", f"--file={dump}", f"--dbname={uri}"],
                 "pg_dump", env=env)
            conn.rollback()
    finally:
        engine.dispose()
    members[PGDUMP_MEMBER] = dump
    return {"kind": "postgresql", "revision": revision, "member": PGDUMP_MEMBER,
            "audit": audit}


def _backup_directory(config: Config, stage: Path, members: dict[str, Path],
                      notes: list[str]) -> dict[str, Any]:
    settings = config.directory_settings()
    if not settings.managed:
        notes.append("the directory is external (" + ", ".join(settings.uris) + "): it is "
                     "not in this archive; back it up with slapcat on its server")
        return {"managed": False, "uris": list(settings.uris)}
    from directory.slapd import ManagedSlapd

    slapd = ManagedSlapd(settings)
    if not slapd.configured:
        raise BackupError(f"the managed directory under {slapd.data_dir} is not built")
    data = stage / "data.ldif"
    cfg = stage / "config.ldif"
    # back-mdb lets slapcat read while slapd runs (MVCC): no need to stop it.
    _run([SLAPCAT, "-F", str(slapd.config_dir), "-b", settings.base_dn, "-o", "ldif_wrap=no",
          "-l", str(data)], "slapcat")
    _run([SLAPCAT, "-F", str(slapd.config_dir), "-n", "0", "-o", "ldif_wrap=no",
          "-l", str(cfg)], "slapcat -n0")
    members[DATA_LDIF] = data
    members[CONFIG_LDIF] = cfg
    entries = sum(1 for line in data.read_bytes().splitlines() if line.startswith(b"dn:"))
    return {"managed": True, "suffix": settings.base_dn, "entries": entries,
            "members": [DATA_LDIF, CONFIG_LDIF]}


# -- restore ---------------------------------------------------------------------------

def restore(home: Path, archive: Path, passphrase: bytes, environ: dict[str, str],
            *, echo: Echo) -> dict[str, Any]:
    """Restore ``archive`` into ``home`` (absent or empty); all or nothing."""
    home = home.resolve()
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise BackupError(f"{home} is not empty; restore only into an empty or new home")
    if not archive.is_file():
        raise BackupError(f"{archive} is not a file")
    home.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{home.name}.restore-", dir=home.parent))
    pg_restored: str | None = None
    try:
        plain = stage / "archive.tar.gz"
        try:
            with open(archive, "rb") as source, open(plain, "wb") as sink:
                decrypt(source, passphrase, sink)
        except ArchiveError as exc:
            raise BackupError(str(exc)) from None
        new_home = stage / "home"
        new_home.mkdir(mode=0o700)
        extracted = stage / "parts"
        manifest = _extract(plain, extracted)
        plain.unlink()
        _check_versions(manifest)
        files = extracted / "files"
        if files.is_dir():
            for item in files.iterdir():
                shutil.move(str(item), new_home / item.name)
        _apply_folder_modes(new_home, list(manifest.get("folders", [])))
        if not (new_home / CONFIG_NAME).is_file():
            raise BackupError(f"the archive holds no {CONFIG_NAME}")
        old_home = Path(str(manifest.get("home", "")))
        _rewrite_sqlite_url(new_home, old_home, home)
        config = Config.load(new_home, environ)
        database = manifest.get("database", {})
        if database.get("kind") == "sqlite":
            target = sqlite_path(config.database_url)
            assert target is not None
            try:
                staged_db = new_home / target.relative_to(home)
            except ValueError:
                raise BackupError(f"the restored configuration keeps the database outside "
                                  f"the home ({target}); restore it by hand") from None
            staged_db.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(extracted / SQLITE_MEMBER), staged_db)
            _check_audit(f"sqlite:///{staged_db}", manifest)
        directory = manifest.get("directory", {})
        if directory.get("managed"):
            _restore_directory(config, home, extracted / DATA_LDIF)
        if database.get("kind") == "postgresql":
            if sqlite_path(config.database_url) is not None:
                raise BackupError("the archive holds a PostgreSQL dump but the restored "
                                  "configuration names SQLite")
            _restore_postgres(config.database_url, extracted / PGDUMP_MEMBER)
            pg_restored = config.database_url
            _check_audit(config.database_url, manifest)
        was_dir = home.exists()
        if was_dir:
            home.rmdir()  # empty, checked above; rename needs the name free
        os.rename(new_home, home)
        if directory.get("managed"):
            try:
                _configure_directory(Config.load(home, environ), home)
            except BaseException:
                os.rename(home, new_home)  # back out: the home is as it was
                if was_dir:
                    home.mkdir()
                raise
        pg_restored = None
    except BaseException:
        if pg_restored is not None:
            _empty_postgres(pg_restored)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for note in manifest.get("notes", []):
        echo("note (from the backup): " + str(note))
    return {"home": str(home), "created": manifest.get("created"),
            "database": database.get("kind"), "revision": database.get("revision"),
            "directory_entries": directory.get("entries"),
            "audit_head": manifest.get("audit_head")}


def _extract(plain: Path, into: Path) -> dict[str, Any]:
    """Extract every member, checking each against the manifest (size, SHA-256) and
    refusing members the manifest does not list, or listed ones that are missing."""
    into.mkdir(mode=0o700)
    try:
        with tarfile.open(plain, mode="r:gz") as tar:
            names = tar.getnames()
            if names.count(MANIFEST) != 1:
                raise BackupError("the archive has no manifest")
            handle = tar.extractfile(MANIFEST)
            assert handle is not None
            manifest = json.loads(handle.read().decode("utf-8"))
            listed = {m["name"]: m for m in manifest["members"]}
            if sorted(listed) != sorted(n for n in names if n != MANIFEST) \
                    or len(names) != len(set(names)):
                raise BackupError("the archive's members do not match its manifest")
            for name in listed:
                parts = PurePosixPath(name).parts
                if PurePosixPath(name).is_absolute() or ".." in parts:
                    raise BackupError(f"the archive names an unsafe path: {name!r}")
            tar.extractall(into, members=[m for m in tar.getmembers() if m.name != MANIFEST],
                           filter="data")
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, KeyError, TypeError,
            ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"the archive's contents are unreadable: {exc}") from None
    for name, entry in listed.items():
        path = into / name
        if not path.is_file() or path.stat().st_size != entry["size"] \
                or _sha256_file(path) != entry["sha256"]:
            raise BackupError(f"member {name} does not match its SHA-256 in the manifest")
    return dict(manifest)


def _check_versions(manifest: dict[str, Any]) -> None:
    if manifest.get("format") != FORMAT:
        raise BackupError(f"the archive's manifest has format {manifest.get('format')!r}; "
                          f"this GovTrust reads format {FORMAT}")
    revision = manifest.get("database", {}).get("revision")
    if revision is not None and revision not in _known_revisions():
        raise BackupError(f"the archive was made by a newer GovTrust "
                          f"({manifest.get('govtrust_version')}): its database is at "
                          f"revision {revision!r}, unknown to this version "
                          f"({govtrust_version()}); upgrade GovTrust first")


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from idp.runtime.db import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {rev.revision for rev in scripts.walk_revisions()}


def _rewrite_sqlite_url(new_home: Path, old_home: Path, home: Path) -> None:
    """A SQLite file inside the old home moves with it: point the URL at the new one."""
    path = new_home / CONFIG_NAME
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    url = str(data.get("database", {}).get("url", ""))
    db = sqlite_path(url) if url.startswith("sqlite") else None
    if db is None or not old_home.is_absolute():
        return
    try:
        relative = db.relative_to(old_home.resolve())
    except ValueError:
        return
    data["database"]["url"] = f"sqlite:///{home / relative}"
    write_config(new_home, data)


def _check_audit(url: str, manifest: dict[str, Any]) -> None:
    """The restored chain must verify (if it did when copied) and end at the head
    the manifest recorded."""
    from idp.runtime.db import make_engine

    expected = manifest.get("audit_head", {})
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            found = _audit_state(session)
    finally:
        engine.dispose()
    if (found["seq"], found["hash"]) != (expected.get("seq"), expected.get("hash")) \
            or found["chain_ok"] != expected.get("chain_ok"):
        raise BackupError(f"the restored audit log does not end at the recorded head "
                          f"(expected {expected.get('seq')}, found {found['seq']})")


def _restore_directory(config: Config, home: Path, data: Path) -> None:
    """slapadd the suffix into a freshly built cn=config.

    The cn=config built here names the staging folder; it only serves slapadd.
    """
    from directory.slapd import ManagedSlapd

    staged = config.directory_settings()
    loader = ManagedSlapd(staged)
    if loader.configured:
        raise BackupError("the archive unexpectedly holds a slapd configuration")
    loader.configure()
    _run([SLAPADD, "-q", "-F", str(loader.config_dir), "-b", staged.base_dn,
          "-l", str(data)], "slapadd")
    # cn=config names absolute paths (and slapadd -n0 insists the database folder
    # exists), so the one naming the final home is built after the rename, by
    # _configure_directory; the mdb files do not record where they live.
    shutil.rmtree(loader.config_dir)
    shutil.rmtree(loader.run_dir, ignore_errors=True)


def _configure_directory(config: Config, home: Path) -> None:
    from directory.errors import SlapdFailed
    from directory.slapd import ManagedSlapd

    try:
        ManagedSlapd(replace(config.directory_settings(), data_dir=home / "slapd")).configure()
    except SlapdFailed as exc:
        raise BackupError(f"building the directory's cn=config failed: {exc}") from None


def _postgres_tables(url: str) -> list[str]:
    from sqlalchemy import inspect

    from idp.runtime.db import make_engine

    engine = make_engine(url)
    try:
        return list(inspect(engine).get_table_names())
    except Exception as exc:
        raise BackupError(f"cannot reach the PostgreSQL database: {exc}") from None
    finally:
        engine.dispose()


def _restore_postgres(url: str, dump: Path) -> None:
    tables = _postgres_tables(url)
    if tables:
        raise BackupError(f"the PostgreSQL database {make_url(url).database} is not empty "
                          f"({len(tables)} tables); restore needs an empty database")
    uri, env = libpq(url)
    # One transaction: a failure leaves the database as empty as it was.
    _run([pg_tool("pg_restore"), "--single-transaction", "--exit-on-error", "--no-owner",
          "--no-privileges", f"--dbname={uri}", str(dump)], "pg_restore", env=env)


def _empty_postgres(url: str) -> None:
    """Undo a pg_restore when a later step failed: drop what it created."""
    from sqlalchemy import text

    from idp.runtime.db import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def open_manifest(archive: Path, passphrase: bytes) -> dict[str, Any]:
    """The manifest of an archive (decrypted to a scratch file that is then removed)."""
    with tempfile.TemporaryDirectory() as scratch:
        plain = Path(scratch) / "archive.tar.gz"
        try:
            with open(archive, "rb") as source, open(plain, "wb") as sink:
                decrypt(source, passphrase, sink)
        except ArchiveError as exc:
            raise BackupError(str(exc)) from None
        with tarfile.open(plain, mode="r:gz") as tar:
            handle: IO[bytes] | None = tar.extractfile(MANIFEST)
            assert handle is not None
            return dict(json.loads(handle.read().decode("utf-8")))
