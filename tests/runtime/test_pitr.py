"""Point-in-time recovery of GovTrust's PostgreSQL database with pgBackRest
(docs/backup.md), run once on a real cluster: WAL archived by ``archive-push``,
a full backup, audit records before and after a moment T, then a restore to T.
The restored audit chain verifies and ends exactly at the head it had at T."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from idp.runtime.db import make_engine, session_factory, upgrade
from pki.audit_store import AuditLog
from tests.fixtures.postgres import PG_BIN, free_port

PGBACKREST = shutil.which("pgbackrest")


class ArchivedCluster:
    """A PostgreSQL cluster whose WAL goes to a pgBackRest repository."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="govtrust-pitr-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.conf = self.dir / "pgbackrest.conf"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str) -> str:
        cmd = list(args)
        if os.geteuid() == 0:  # initdb and pgbackrest refuse root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def pgbackrest(self, *args: str) -> str:
        assert PGBACKREST is not None
        return self.run(PGBACKREST, f"--config={self.conf}", "--stanza=govtrust", *args)

    def start(self) -> None:
        archive = f"{PGBACKREST} --config={self.conf} --stanza=govtrust archive-push %p"
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "pg.log"),
                 "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                 f"-c wal_level=replica -c archive_mode=on -c archive_command='{archive}'",
                 "-w", "-t", "60", "start")

    def stop(self) -> None:
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create(self) -> None:
        self.conf.write_text(
            "[global]\n"
            f"repo1-path={self.dir / 'repo'}\nrepo1-retention-full=2\n"
            f"log-path={self.dir}\nlock-path={self.dir / 'lock'}\n"
            f"spool-path={self.dir / 'spool'}\nstart-fast=y\n\n"
            "[govtrust]\n"
            f"pg1-path={self.data}\npg1-port={self.port}\npg1-socket-path={self.dir}\n",
            encoding="utf-8")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.conf, "postgres", "postgres")
        self.run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                 "postgres", "-E", "UTF8", "--locale=C.UTF-8")
        self.start()
        self.pgbackrest("stanza-create")


@pytest.fixture
def cluster() -> Iterator[ArchivedCluster]:
    if PGBACKREST is None or not (PG_BIN / "initdb").exists():
        pytest.fail("pgbackrest or PostgreSQL is not installed: run scripts/setup")
    c = ArchivedCluster()
    try:
        c.create()
        yield c
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D",
                        str(c.data), "-m", "immediate", "-w", "stop"] if os.geteuid() == 0
                       else [str(PG_BIN / "pg_ctl"), "-D", str(c.data), "-m", "immediate",
                             "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(c.dir, ignore_errors=True)


def test_point_in_time_recovery_with_pgbackrest(cluster: ArchivedCluster) -> None:
    engine = make_engine(cluster.url)
    upgrade(engine)
    audit = AuditLog(session_factory(engine))
    audit.record(actor="admin", action="cert.issue", target="serial 01")
    started = time.monotonic()
    cluster.pgbackrest("backup", "--type=full")
    print(f"pgbackrest full backup: {time.monotonic() - started:.1f} s")
    # pgBackRest picks the backup whose stop time (whole seconds) is before the target.
    time.sleep(1.1)
    audit.record(actor="admin", action="cert.revoke", target="serial 01")
    head_at_t = audit.head()
    time.sleep(0.01)  # the target is cut to milliseconds: keep it after that commit
    with engine.connect() as conn:
        # pgBackRest's format: "YYYY-MM-DD HH:MM:SS.mmm+00".
        moment = conn.execute(text("SELECT to_char(now() AT TIME ZONE 'UTC', "
                                   "'YYYY-MM-DD HH24:MI:SS.MS') || '+00'")).scalar_one()
    time.sleep(1.1)  # the target is a timestamp; later commits must fall after it
    audit.record(actor="intruder", action="cert.issue", target="serial 02")
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_switch_wal()"))  # push the last segment to the repo
    engine.dispose()
    cluster.stop()

    cluster.pgbackrest("restore", "--delta", "--type=time", f"--target={moment}",
                       "--target-action=promote")
    cluster.start()
    engine = make_engine(cluster.url)
    try:
        restored = AuditLog(session_factory(engine))
        assert restored.head() == head_at_t
        report = restored.verify()
        assert report.ok and report.count == head_at_t[0]
    finally:
        engine.dispose()
