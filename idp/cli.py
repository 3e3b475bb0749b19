"""The ``govtrust`` command: the one entry point of the product.

Every subcommand takes ``--home`` (default ``$GOVTRUST_HOME``, else
``./govtrust-home``) and ``--json``. Errors go to stderr with a non-zero exit.
Package command groups (``directory``, ``ca``, ``cert``, ``crl``, ``client``,
``keys``, ``otp``) live in their packages' ``cli`` modules and are attached here;
``ctx.obj`` is the ``idp.services.Services`` they draw their services from.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from idp.config import Config, ConfigError
from idp.services import Services


def emit(services: Services, data: Any, text: str) -> None:
    """Print ``data`` as JSON under ``--json``, else ``text``."""
    if services.json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(text)


@click.group()
@click.option("--home", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: os.environ.get("GOVTRUST_HOME", "govtrust-home"),
              show_default="$GOVTRUST_HOME or ./govtrust-home", help="The GovTrust home folder.")
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
@click.pass_context
def cli(ctx: click.Context, home: Path, json_output: bool) -> None:
    """GovTrust: certificate authority, civil-servant directory and single sign-on."""
    try:
        config = Config.load(home)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    services = Services(config, json_output=json_output)
    ctx.obj = services
    ctx.call_on_close(lambda: _finish(services))


def _finish(services: Services) -> None:
    """Deliver lifecycle events a command just published (certificates revoked or
    held, sessions ended) right away; ``govtrust serve`` retries what fails."""
    try:
        if "outbox" in services.__dict__:
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
@click.pass_obj
def init(services: Services, demo: bool) -> None:
    """Create a home: config, secrets, database, CA hierarchy, directory."""
    from idp.home import initialize

    report = initialize(services, demo=demo, echo=click.echo)
    emit(services, report, "\n".join(f"{k}: {v}" for k, v in report.items()))


@cli.group()
def db() -> None:
    """The database."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(services: Services) -> None:
    """Apply the database migrations."""
    from idp.db import current_revision, upgrade

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


# Package command groups, attached when their module exists.
_GROUPS = (
    ("directory.cli", "directory"),
    ("pki.cli", "ca"),
    ("pki.cli", "cert"),
    ("pki.cli", "crl"),
    ("idp.oidc_cli", "client"),
    ("idp.oidc_cli", "keys"),
    ("idp.otp_cli", "otp"),
    ("idp.serve", "serve"),
    ("idp.serve", "demo"),
)
for _module, _name in _GROUPS:
    try:
        _mod = importlib.import_module(_module)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise
        continue
    _cmd = getattr(_mod, _name, None)
    if isinstance(_cmd, click.Command):
        cli.add_command(_cmd, _name)


def main() -> None:
    cli(prog_name="govtrust")
