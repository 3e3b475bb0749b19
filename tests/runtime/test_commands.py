"""The static command table: every entry loads, and ``--help`` imports none of them."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from idp.runtime.cli import COMMANDS, cli


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_of_the_table_loads(name: str) -> None:
    ctx = click.Context(cli)
    command = cli.get_command(ctx, name)
    assert isinstance(command, click.Command)


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output


def test_help_imports_no_package_command() -> None:
    code = ("import sys\nfrom idp.runtime.cli import main\nsys.argv = ['govtrust', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pki', 'directory', 'policies', 'sqlalchemy', 'ldap'))\n"
            "print('LOADED', loaded)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "LOADED []" in out, out


def test_an_unknown_command_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code != 0 and "No such command" in result.output


def test_cert_issue_help_imports_neither_the_authority_nor_sqlalchemy() -> None:
    # What ``cert issue`` needs to run (the authority, the database) loads when it
    # runs; building its options must not pay for it (scripts/bench/cli.py times it).
    code = ("import sys\nfrom idp.runtime.cli import main\n"
            "sys.argv = ['govtrust', 'cert', 'issue', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sqlalchemy', 'ldap', 'authlib', 'flask') or m in ('pki.authority', "
            "'pki.issuance', 'idp.oidc.provider'))\n"
            "print('LOADED', loaded)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "LOADED []" in out, out
