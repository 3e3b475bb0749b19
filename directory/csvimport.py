"""The people CSV (DESIGN.md): parsing and checking, streamed.

UTF-8 only (a byte-order mark is accepted, as spreadsheets write one); a header
row naming the columns in any order; ``uid``, ``name``, ``department``,
``title``, ``email`` required, ``mobile``, ``employee_number``, ``clearance``,
``groups`` (``;``-separated) optional; any other column is refused. Every bad
row is reported with its line number so the whole file can be fixed in one go.
Numbers are ASCII digits only. Export neutralises formula-like cells (see
``directory.csvsafe``) and import takes that quote off, so files round-trip.
No I/O but reading the given file and a private temporary file of the uids seen
(``SeenUids``), which keeps memory flat in the file's length.
"""

from __future__ import annotations

import codecs
import csv
import io
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from directory import csvsafe, validate

REQUIRED = ("uid", "name", "department", "title", "email")
OPTIONAL = ("mobile", "employee_number", "clearance", "groups")
COLUMNS = REQUIRED + OPTIONAL
MAX_FILE_BYTES = 50 * 1024 * 1024  # a file parsed in memory (LDIF)
MAX_CSV_BYTES = 2 * 1024 * 1024 * 1024  # a CSV is streamed: bounded by time, not memory
MAX_ROWS = 2_000_000
MAX_FIELD = 1024
MAX_ERRORS = 1000  # a file that is wrong throughout is reported, not listed in full
BOM = b"\xef\xbb\xbf"
_CHUNK = 64 * 1024  # bytes read at a time: bounds memory, not speed


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


RowError = tuple[int, str]  # (line, reason); line 0 = the file as a whole


class SeenUids:
    """Which uids a scan has met, and on which line first: kept in a private
    temporary SQLite file, not a dict, so memory stays flat however long the file
    (a million-entry dict of uids is ~130 MB). SQLite's page cache is bounded."""

    def __init__(self) -> None:
        # "" = a private on-disk database, deleted when closed (sqlite3_open docs).
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.execute("PRAGMA cache_size=-4096")  # KiB: 4 MB of pages at most
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (uid TEXT PRIMARY KEY, line INTEGER) WITHOUT ROWID")
        self._db.execute("BEGIN")

    def first_line(self, uid: str, line: int) -> int | None:
        """None when ``uid`` is new (it is remembered), else the line it was first on."""
        cur = self._db.execute("INSERT INTO seen VALUES (?, ?) ON CONFLICT DO NOTHING",
                               (uid, line))
        if cur.rowcount == 1:
            return None
        found = self._db.execute("SELECT line FROM seen WHERE uid = ?", (uid,)).fetchone()
        return int(found[0])

    def close(self) -> None:
        self._db.close()


def _encoding_errors(f: BinaryIO) -> list[RowError]:
    """Check the whole file is UTF-8 in bounded chunks (C speed); when it is not,
    name the lines, so the person fixing the file knows where to look."""
    f.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
        return []
    except UnicodeDecodeError:
        pass
    f.seek(0)
    errors: list[RowError] = []
    for number, raw in enumerate(f, start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            errors.append((number, "not UTF-8 (saved as GBK or another encoding?); "
                                   "save the file as UTF-8"))
            if len(errors) >= 20:
                break
    return errors


def scan_csv(f: BinaryIO) -> Iterator[PersonRow | RowError]:
    """The rows of the people CSV in file order, each checked: a ``PersonRow`` or a
    ``(line, reason)``. Streams: ``f`` (binary, seekable) is read from the start
    in bounded pieces and nothing per row is kept but the uid (on disk, see
    ``SeenUids``), so a caller can walk a file of any length twice (check, then
    write) in flat memory. A file-level problem (size, encoding, header) is the
    only thing yielded."""
    size = f.seek(0, io.SEEK_END)
    if size > MAX_CSV_BYTES:
        yield (0, f"file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB")
        return
    encoding = _encoding_errors(f)
    if encoding:
        yield from encoding
        return
    f.seek(0)
    # utf-8-sig drops a byte-order mark, as spreadsheets write one.
    text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
    seen = SeenUids()
    try:
        yield from _scan_rows(csv.reader(text, strict=True), seen)
    finally:
        seen.close()
        text.detach()  # the caller's file stays open for the next pass


def _scan_rows(reader: Any, seen: SeenUids) -> Iterator[PersonRow | RowError]:
    try:
        header = next(reader, None)
    except csv.Error as exc:
        yield (1, f"header is not valid CSV: {exc}")
        return
    if header is None or not any(h.strip() for h in header):
        yield (1, "the file is empty; a header row is required")
        return
    columns = [h.strip() for h in header]
    problem = _header_problem(columns)
    if problem:
        yield (1, problem)
        return
    count = errors = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The CSV structure is broken from here on; what follows cannot be trusted.
            yield (reader.line_num, f"not valid CSV: {exc}")
            break
        line = reader.line_num
        if not record or all(not v.strip() for v in record):
            continue
        count += 1
        if count > MAX_ROWS:
            yield (line, f"more than {MAX_ROWS} rows")
            break
        error: RowError | None = None
        if len(record) != len(columns):
            error = (line, f"expected {len(columns)} fields, found {len(record)}")
        else:
            # A quote GovTrust's export put before a formula-like cell comes off again.
            values = [csvsafe.restore(v) for v in record]
            row, problems = check_row(line, dict(zip(columns, values, strict=True)))
            if row is None:
                error = (line, "; ".join(problems))
            else:
                first = seen.first_line(row.uid, line)
                if first is None:
                    yield row
                    continue
                error = (line, f"duplicate uid {row.uid} (first on line {first})")
        yield error
        errors += 1
        if errors >= MAX_ERRORS:
            yield (line, "too many errors; stopped reading")
            break


def parse_csv(data: bytes) -> Parsed:
    """Parse and check the people CSV held in memory; rows that pass and (line,
    reason) for the rest (``scan_csv`` without holding the file is the import's way)."""
    out = Parsed()
    for item in scan_csv(io.BytesIO(data)):
        if isinstance(item, PersonRow):
            out.rows.append(item)
        else:
            out.errors.append(item)
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
