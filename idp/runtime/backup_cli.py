"""``govtrust backup OUT`` and ``govtrust restore IN`` (see ``idp.runtime.backup``)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from idp.runtime.backup import BackupError, backup, read_passphrase, restore
from idp.runtime.output import emit
from idp.runtime.services import Services

_PASSPHRASE_HELP = ("File whose first line is the archive passphrase (at least 12 "
                    "characters); else $GOVTRUST_BACKUP_PASSPHRASE.")


@click.command("backup")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help=_PASSPHRASE_HELP)
@click.pass_obj
def backup_command(services: Services, out: Path, passphrase_file: Path | None) -> None:
    """Write one encrypted archive of the home: database, directory, keys, config."""
    def note(line: str) -> None:
        click.echo(line, err=True)

    try:
        passphrase = read_passphrase(passphrase_file, os.environ)
        report = backup(services.config, out, passphrase, echo=note)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    m = report.manifest
    head = m["audit_head"]
    emit(services, {"archive": str(report.path), "size": report.path.stat().st_size,
                    "database": m["database"], "directory": m["directory"],
                    "key_store": m["key_store"], "audit_head": head,
                    "members": len(m["members"]), "notes": report.notes},
         f"backup written to {report.path} ({report.path.stat().st_size} bytes, "
         f"{len(m['members'])} members; database {m['database']['kind']} at revision "
         f"{m['database']['revision']}; audit head {head['seq']})")


@click.command("restore")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help=_PASSPHRASE_HELP)
@click.pass_obj
def restore_command(services: Services, archive: Path, passphrase_file: Path | None) -> None:
    """Restore an archive into an empty (or new) home; all or nothing."""
    def note(line: str) -> None:
        click.echo(line, err=True)

    try:
        passphrase = read_passphrase(passphrase_file, os.environ)
        report = restore(services.config.home, archive, passphrase,
                         dict(services.config.environ), echo=note)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    emit(services, report,
         f"restored into {report['home']} (backup of {report['created']}; database "
         f"{report['database']} at revision {report['revision']}; "
         f"{report['directory_entries']} directory entries); "
         "run `govtrust audit verify` to check the chain and its signed head")
