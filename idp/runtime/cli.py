"""The ``govtrust`` command: the one entry point of the product.

The global options ``--home`` (default ``$GOVTRUST_HOME``, else ``./govtrust-home``)
and ``--json`` are accepted before or after the subcommand, as people type them
(``govtrust cert list --json``). Errors go to stderr with a non-zero exit.
Package command groups (``directory``, ``ca``, ``cert``, ``crl``, ``client``,
``keys``, ``otp``, ``kmc``, ``serve``, ``demo``) live in their packages' ``cli``
modules and are registered here in one static table (``COMMANDS``); each module
is imported only when its command runs, so ``govtrust --help`` and a scripted
``govtrust cert issue`` do not pay for importing every package. A command whose
module fails to import fails loudly: nothing is swallowed. ``ctx.obj`` is the
``idp.runtime.services.Services`` they draw their services from.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from idp.runtime.output import emit

if TYPE_CHECKING:
    from idp.runtime.services import Services

GLOBAL_FLAGS = ("--json",)
GLOBAL_OPTIONS = ("--home",)

# name -> ("module:attribute", the one-line help ``govtrust --help`` shows)
COMMANDS: dict[str, tuple[str, str]] = {
    "directory": ("directory.cli:directory",
                  "The civil-servant directory (OpenLDAP): people, departments, groups, import."),
    "ca": ("pki.cli:ca", "The CA hierarchies: fingerprints, CRL and OCSP URLs."),
    "cert": ("pki.cli:cert", "Issue, list, revoke, hold and release certificates."),
    "crl": ("pki.cli:crl", "Certificate revocation lists."),
    "kmc": ("pki.kmc_cli:kmc", "The key management centre: escrowed encryption keys."),
    "client": ("idp.runtime.oidc_cli:client", "Department applications (OIDC clients)."),
    "keys": ("idp.runtime.oidc_cli:keys", "The IdP's token signing keys."),
    "otp": ("idp.runtime.otp_cli:otp", "One-time-code authenticators (TOTP)."),
    "serve": ("idp.runtime.serve:serve", "Run everything on this machine; Ctrl-C stops all."),
    "demo": ("idp.runtime.serve:demo", "Initialize the demo home if needed, then serve."),
    "node": ("idp.runtime.node:node",
             "Run one stateless web node (IdP + PKI, plain HTTP) behind nginx."),
    "backup": ("idp.runtime.backup_cli:backup_command",
               "Write one consistent, encrypted archive of this home."),
    "restore": ("idp.runtime.backup_cli:restore_command",
                "Restore an archive into an empty home."),
    "deploy": ("idp.runtime.deploy_cli:deploy",
               "Write deployment files from the home (nginx configuration, public files)."),
}

class Commands(click.Group):
    """A group whose package commands come from ``COMMANDS``, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, _, attr = COMMANDS[cmd_name][0].partition(":")
            command = getattr(importlib.import_module(module), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{COMMANDS[cmd_name][0]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in COMMANDS and name not in self.commands:
                rows.append((name, COMMANDS[name][1]))
            elif (command := self.commands.get(name)) is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

@click.group(cls=Commands)
@click.option("--home", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: os.environ.get("GOVTRUST_HOME", "govtrust-home"),
              show_default="$GOVTRUST_HOME or ./govtrust-home", help="The GovTrust home folder.")
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
@click.pass_context
def cli(ctx: click.Context, home: Path, json_output: bool) -> None:
    """GovTrust: certificate authority, civil-servant directory and single sign-on."""
    from idp.runtime.config import Config, ConfigError
    from idp.runtime.services import Services

    try:
        config = Config.load(home)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    services = Services(config, json_output=json_output)
    ctx.obj = services
    ctx.call_on_close(lambda: _finish(services))

def _finish(services: Services) -> None:
    """Deliver lifecycle events a command just published (certificates revoked or
    held, sessions ended) right away; ``govtrust serve`` retries what fails. A
    command that published none (``cert issue``) does not build the subscribers,
    which would import the whole OpenID provider for nothing."""
    try:
        if "outbox" in services.__dict__ and services.outbox.published:
            delivered = services.deliver_events()
            if delivered and not services.json:
                click.echo(f"lifecycle: {delivered} subscriber action(s) done", err=True)
    except Exception as exc:  # the events stay in the outbox; nothing is lost
        click.echo(f"warning: lifecycle events queued, not yet delivered ({exc}); "
                   "`govtrust serve` will deliver them", err=True)
    finally:
        services.close()

@cli.command()
@click.option("--demo", is_flag=True, help="Also load the demo departments, people and apps.")
@click.option("--offline-root", type=click.Path(file_okay=False, path_type=Path),
              metavar="MEDIUM", help="Write the root CA key (encrypted) to this folder on a "
              "removable medium, never to the home.")
@click.option("--root-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help="--offline-root: the root key's passphrase (not the home's).")
@click.pass_obj
def init(services: Services, demo: bool, offline_root: Path | None,
         root_passphrase_file: Path | None) -> None:
    """Create a home: config, secrets, database, CA hierarchy, directory."""
    from idp.runtime.home import OfflineRoot, initialize
    from pki.errors import PKIError

    medium = None
    if offline_root is not None or root_passphrase_file is not None:
        if offline_root is None or root_passphrase_file is None:
            raise click.UsageError("--offline-root and --root-passphrase-file go together")
        from pki.ceremony_cli import read_passphrase

        medium = OfflineRoot(offline_root, read_passphrase(root_passphrase_file))
    # Under --json, stdout is the one JSON document; progress goes to stderr.
    def progress(line: str) -> None:
        click.echo(line, err=services.json)

    try:
        report = initialize(services, demo=demo, echo=progress, offline_root=medium)
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    emit(services, report, "\n".join(f"{k}: {v}" for k, v in report.items()))

@cli.group()
def db() -> None:
    """The database."""

@db.command("upgrade")
@click.pass_obj
def db_upgrade(services: Services) -> None:
    """Apply the database migrations."""
    from idp.runtime.db import current_revision, upgrade

    upgrade(services.engine)
    rev = current_revision(services.engine)
    emit(services, {"revision": rev}, f"database at revision {rev}")

@cli.group()
def audit() -> None:
    """The hash-chained audit log."""

@audit.command("verify")
@click.pass_obj
def audit_verify(services: Services) -> None:
    """Check the hash chain; name the first changed, removed or reordered record."""
    report = services.verify_audit()
    emit(services, {"ok": report.ok, "records": report.count, "head": report.head_hash,
                    "first_bad_seq": report.first_bad_seq,
                    "problem": report.problem.value if report.problem else None},
         report.describe())
    if not report.ok:
        sys.exit(1)


def hoist_global_options(args: list[str]) -> list[str]:
    """Move ``--home DIR``, ``--home=DIR`` and ``--json`` found after the
    subcommand to the front, where click's group reads them. Arguments after
    ``--`` are left alone."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in GLOBAL_FLAGS or arg.startswith(tuple(o + "=" for o in GLOBAL_OPTIONS)):
            front.append(arg)
        elif arg in GLOBAL_OPTIONS and i + 1 < len(args):
            front.extend(args[i:i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest

def main() -> None:
    try:
        cli(args=hoist_global_options(sys.argv[1:]), prog_name="govtrust")
    except Exception as exc:
        # A wrong password in the URL, a server down, no primary: say which, once,
        # instead of a traceback (the URL, which may hold the password, is not shown).
        # Imported only here, so that ``govtrust --help`` loads no database code.
        from sqlalchemy.exc import OperationalError

        from idp.runtime.db_faults import describe

        if not isinstance(exc, OperationalError):
            raise
        click.echo(f"Error: cannot use the database: {describe(exc)}", err=True)
        sys.exit(1)
