"""Writing CSV that a spreadsheet opens safely: the one CSV writer of GovTrust.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
is read by Excel, LibreOffice and WPS as a formula ("CSV injection"): a title
``=cmd|' /C calc'!A0`` typed into the directory would run when an administrator
opens the export. As the OWASP CSV Injection page recommends, such a cell is
written with a single quote in front, which spreadsheets show as text; every
CSV GovTrust exports goes through ``write_table``. Import (``restore``) takes
that one quote off again, so an export re-imports unchanged.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

# OWASP, CSV Injection: the characters that start a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """``value`` as a cell no spreadsheet evaluates."""
    return "'" + value if value.startswith(FORMULA_START) else value


def restore(value: str) -> str:
    """Undo ``neutralise`` on a cell read back from an exported file."""
    if value.startswith("'") and value[1:].startswith(FORMULA_START):
        return value[1:]
    return value


def write_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    """CSV bytes (UTF-8, ``\\n`` line ends, header first), every cell neutralised."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([neutralise(h) for h in header])
    for row in rows:
        writer.writerow([neutralise(v) for v in row])
    return buf.getvalue().encode("utf-8")
