"""The people CSV (DESIGN.md): parsing and checking, pure.

UTF-8 only (a byte-order mark is accepted, as spreadsheets write one); a header
row naming the columns in any order; ``uid``, ``name``, ``department``,
``title``, ``email`` required, ``mobile``, ``employee_number``, ``clearance``,
``groups`` (``;``-separated) optional; any other column is refused. Every bad
row is reported with its line number so the whole file can be fixed in one go.
Numbers are ASCII digits only. Export neutralises formula-like cells (see
``directory.csvsafe``) and import takes that quote off, so files round-trip.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from directory import csvsafe, validate

REQUIRED = ("uid", "name", "department", "title", "email")
OPTIONAL = ("mobile", "employee_number", "clearance", "groups")
COLUMNS = REQUIRED + OPTIONAL
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ROWS = 200_000
MAX_FIELD = 1024
MAX_ERRORS = 1000  # a file that is wrong throughout is reported, not listed in full
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class PersonRow:
    """One person to import, already checked; ``line`` is where it was in the file."""

    line: int
    uid: str
    name: str
    department: tuple[str, ...]
    title: str
    email: str
    mobile: str = ""
    employee_number: str = ""
    clearance: int = 0
    groups: tuple[str, ...] = ()


@dataclass
class Parsed:
    rows: list[PersonRow] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason); 0 = file

    @property
    def ok(self) -> bool:
        return not self.errors


def check_row(line: int, values: dict[str, str]) -> tuple[PersonRow | None, list[str]]:
    """Check one row's values (by column name); the row or the reasons it is bad."""
    problems: list[str] = []
    for key, value in values.items():
        if "\x00" in value:
            problems.append(f"{key} contains a NUL byte")
        elif len(value) > MAX_FIELD:
            problems.append(f"{key} is longer than {MAX_FIELD} characters")
    if problems:
        return None, problems
    uid = values.get("uid", "").strip()
    name = values.get("name", "").strip()
    department, dept_problem = validate.parse_department(values.get("department", ""))
    title = values.get("title", "").strip()
    email = values.get("email", "").strip()
    mobile = values.get("mobile", "").strip()
    employee = values.get("employee_number", "").strip()
    clearance, clearance_problem = validate.parse_clearance(values.get("clearance", "").strip())
    groups = tuple(g.strip() for g in values.get("groups", "").split(";") if g.strip())
    for problem in (
        validate.uid_problem(uid), validate.name_problem(name), dept_problem,
        validate.title_problem(title), validate.email_problem(email),
        validate.mobile_problem(mobile), validate.employee_number_problem(employee),
        clearance_problem, *(validate.group_problem(g) for g in groups),
    ):
        if problem:
            problems.append(problem)
    if problems:
        return None, problems
    return PersonRow(line, uid, name, department, title, email, mobile, employee,
                     clearance, groups), []


def _decode(data: bytes) -> tuple[str | None, list[tuple[int, str]]]:
    if data.startswith(BOM):
        data = data[len(BOM):]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    # Name the lines, so the person fixing the file knows where to look.
    errors = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            errors.append((number, "not UTF-8 (saved as GBK or another encoding?); "
                                   "save the file as UTF-8"))
            if len(errors) >= 20:
                break
    return None, errors


def parse_csv(data: bytes) -> Parsed:
    """Parse and check the people CSV; rows that pass and (line, reason) for the rest."""
    out = Parsed()
    if len(data) > MAX_FILE_BYTES:
        out.errors.append((0, f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB"))
        return out
    text, errors = _decode(data)
    if text is None:
        out.errors.extend(errors)
        return out
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        out.errors.append((1, f"header is not valid CSV: {exc}"))
        return out
    if header is None or not any(h.strip() for h in header):
        out.errors.append((1, "the file is empty; a header row is required"))
        return out
    columns = [h.strip() for h in header]
    problem = _header_problem(columns)
    if problem:
        out.errors.append((1, problem))
        return out
    seen: dict[str, int] = {}
    count = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The CSV structure is broken from here on; what follows cannot be trusted.
            out.errors.append((reader.line_num, f"not valid CSV: {exc}"))
            break
        line = reader.line_num
        if not record or all(not v.strip() for v in record):
            continue
        count += 1
        if count > MAX_ROWS:
            out.errors.append((line, f"more than {MAX_ROWS} rows"))
            break
        if len(record) != len(columns):
            out.errors.append((line, f"expected {len(columns)} fields, found {len(record)}"))
        else:
            # A quote GovTrust's export put before a formula-like cell comes off again.
            values = [csvsafe.restore(v) for v in record]
            row, problems = check_row(line, dict(zip(columns, values, strict=True)))
            if row is None:
                out.errors.append((line, "; ".join(problems)))
            elif row.uid in seen:
                out.errors.append((line, f"duplicate uid {row.uid} (first on line "
                                         f"{seen[row.uid]})"))
            else:
                seen[row.uid] = line
                out.rows.append(row)
        if len(out.errors) >= MAX_ERRORS:
            out.errors.append((line, "too many errors; stopped reading"))
            break
    return out


def _header_problem(columns: Sequence[str]) -> str | None:
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        return (f"unknown column(s) {', '.join(repr(c[:40]) for c in unknown)}; "
                f"allowed: {', '.join(COLUMNS)}")
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        return f"column(s) given twice: {', '.join(dupes)}"
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        return f"missing required column(s): {', '.join(missing)}"
    return None


def write_csv(rows: Iterable[Sequence[str]]) -> bytes:
    """CSV bytes (UTF-8, header first) for export; ``rows`` follow ``COLUMNS``.
    Cells that a spreadsheet would run as a formula are neutralised (``csvsafe``)."""
    return csvsafe.write_table(COLUMNS, rows)
