"""People as LDIF (RFC 2849): import and export, with python-ldap's ``ldif`` module.

Import reads person entries (those with a ``uid``) and turns them into the same
checked rows as the CSV, so both formats share one import path and its checks;
DNs in the file are ignored (GovTrust places people itself), and other entries
(departments, groups) are refused with their line. Export writes each person's
managed attributes, so an export re-imports as "unchanged".
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from ldif import LDIFParser, LDIFWriter

from directory import csvimport
from directory.csvimport import Parsed
from directory.model import Person


class _Collector(LDIFParser):
    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), process_url_schemes=[])
        self.records: list[tuple[int, str, dict[str, list[bytes]]]] = []

    def handle(self, dn: str, entry: dict[str, list[bytes]]) -> None:
        self.records.append((self.line_counter, dn, entry))


def _one(entry: dict[str, list[str]], *names: str) -> str:
    for name in names:
        for key, values in entry.items():
            if key.lower() == name.lower() and values:
                return values[0]
    return ""


def parse_ldif(data: bytes) -> Parsed:
    out = Parsed()
    if len(data) > csvimport.MAX_FILE_BYTES:
        out.errors.append((0, "file is larger than 50 MB"))
        return out
    collector: _Collector | None = None
    try:
        # The parser reads its first line in the constructor: a file that is not
        # UTF-8 from byte one fails there, before parse().
        collector = _Collector(data)
        collector.parse()
    except (ValueError, UnicodeDecodeError, EOFError, AttributeError) as exc:
        # EOFError: python-ldap's reader for a file that ends inside a folded line.
        # AttributeError: "dn:< URL" (RFC 2849 allows no URL for a DN): the parser
        # leaves the unfetched value None and then decodes it.
        line = collector.line_counter if collector is not None else 1
        detail = ("a DN given as a URL (dn:<) is not accepted"
                  if isinstance(exc, AttributeError) else str(exc))
        out.errors.append((line, f"not valid LDIF: {detail}"))
        return out
    seen: dict[str, int] = {}
    for line, dn, raw in collector.records:
        if any(v is None for vs in raw.values() for v in vs):
            # "attr:< URL" (RFC 2849): never fetched, so the value would be missing.
            out.errors.append((line, f"{dn}: URL values (:<) are not accepted"))
            continue
        try:
            entry = {k: [v.decode("utf-8") for v in vs] for k, vs in raw.items()}
        except UnicodeDecodeError:
            out.errors.append((line, f"{dn}: a value is not UTF-8"))
            continue
        if not _one(entry, "uid"):
            out.errors.append((line, f"{dn}: not a person (no uid)"))
            continue
        values = {
            "uid": _one(entry, "uid"),
            "name": _one(entry, "displayName", "cn"),
            "department": _one(entry, "govDepartmentPath"),
            "title": _one(entry, "title"),
            "email": _one(entry, "mail"),
            "mobile": _one(entry, "mobile"),
            "employee_number": _one(entry, "employeeNumber"),
            "clearance": _one(entry, "govClearance"),
        }
        row, problems = csvimport.check_row(line, values)
        if row is None:
            out.errors.append((line, "; ".join(problems)))
        elif row.uid in seen:
            out.errors.append((line, f"duplicate uid {row.uid} (first on line {seen[row.uid]})"))
        else:
            seen[row.uid] = line
            out.rows.append(row)
    return out


def write_ldif(people: Iterable[tuple[str, dict[str, list[str]]]]) -> bytes:
    """LDIF bytes of ``(dn, attributes)`` pairs; non-ASCII values base64 as RFC 2849 says."""
    buf = io.StringIO()
    writer = LDIFWriter(buf, cols=76)
    for dn, attrs in people:
        writer.unparse(dn, {k: [v.encode("utf-8") for v in vs] for k, vs in attrs.items() if vs})
    return buf.getvalue().encode("utf-8")


def person_row(person: Person) -> list[str]:
    """A person as a CSV row in ``csvimport.COLUMNS`` order."""
    return [person.uid, person.display_name, person.department_path, person.title,
            person.email, person.mobile, person.employee_number, str(person.clearance),
            ";".join(person.groups)]
