"""``--home`` and ``--json`` are accepted after the subcommand, as people type them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from idp.runtime.cli import cli, hoist_global_options


@pytest.mark.parametrize(("argv", "expected"), [
    (["cert", "list", "--json"], ["--json", "cert", "list"]),
    (["init", "--home", "X"], ["--home", "X", "init"]),
    (["init", "--home=X", "--demo"], ["--home=X", "init", "--demo"]),
    (["--json", "ca", "show"], ["--json", "ca", "show"]),
    (["directory", "show", "--", "--json"], ["directory", "show", "--", "--json"]),
    (["cert", "list", "--home"], ["cert", "list", "--home"]),  # no value: click says so
])
def test_hoisting(argv: list[str], expected: list[str]) -> None:
    assert hoist_global_options(argv) == expected


def test_home_after_the_subcommand_is_used(tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    home.mkdir()
    result = CliRunner().invoke(cli, hoist_global_options(["db", "upgrade", "--home",
                                                           str(home), "--json"]))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["revision"]  # --json was honoured
    assert any(home.glob("*.db")), list(home.iterdir())  # and the database is in --home


def test_a_missing_home_value_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, hoist_global_options(["cert", "list", "--home"]))
    assert result.exit_code != 0
