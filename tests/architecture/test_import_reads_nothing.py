"""Importing the product reads no file and builds nothing: policies are loaded once,
when the composition root asks, and injected (DESIGN.md, "No module-level app,
engine, LDAP connection or secret")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.architecture.layering import modules

ROOT = Path(__file__).resolve().parents[2]


def test_importing_every_module_reads_no_policy_or_config_file() -> None:
    names = sorted(modules(ROOT))
    probe = (
        "import builtins, io, pathlib, sys\n"
        "seen = []\n"
        "real_open = builtins.open\n"
        "def spy_open(file, *a, **k):\n"
        "    if str(file).endswith(('.yaml', '.yml', '.toml')):\n"
        "        seen.append(str(file))\n"
        "    return real_open(file, *a, **k)\n"
        "builtins.open = spy_open\n"
        "io.open = spy_open\n"
        "real_read = pathlib.Path.read_text\n"
        "def spy_read(self, *a, **k):\n"
        "    if self.suffix in ('.yaml', '.yml', '.toml'):\n"
        "        seen.append(str(self))\n"
        "    return real_read(self, *a, **k)\n"
        "pathlib.Path.read_text = spy_read\n"
        "import importlib\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print('SEEN', seen)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert "SEEN []" in out, out
