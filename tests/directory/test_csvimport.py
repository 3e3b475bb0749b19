"""The people CSV and LDIF: good rows and export (pure, no slapd). The bad inputs
are in tests/hostile/test_cli_import.py."""

from __future__ import annotations

import pytest

from directory.csvimport import PersonRow, parse_csv
from directory.ldif import parse_ldif

HEADER = "uid,name,department,title,email,mobile,employee_number,clearance,groups\n"
GOOD = "zhangwei,张伟,市财政局/预算处,科员,zhangwei@beijing.gov.cn,13800000000,E001,2,staff;ops\n"


def csv(*rows: str, header: str = HEADER) -> bytes:
    return (header + "".join(rows)).encode("utf-8")


def test_good_row_with_chinese_names() -> None:
    parsed = parse_csv(csv(GOOD))
    assert parsed.errors == []
    assert parsed.rows == [PersonRow(2, "zhangwei", "张伟", ("市财政局", "预算处"), "科员",
                                     "zhangwei@beijing.gov.cn", "13800000000", "E001", 2,
                                     ("staff", "ops"))]


def test_bom_is_accepted_and_columns_may_be_reordered() -> None:
    text = "email,uid,title,department,name\nz@b.cn,li,处长,市公安局,李娜\n"
    data = b"\xef\xbb\xbf" + text.encode()
    parsed = parse_csv(data)
    assert parsed.errors == [] and parsed.rows[0].name == "李娜"


def test_ldif_people_are_checked_like_csv() -> None:
    data = (
        b"dn: uid=liuyang,ou=people,dc=x\nuid: liuyang\ndisplayName:: 5YiY5rSL\n"
        b"govDepartmentPath:: 5biC6LSi5pS/5bGA\ntitle: t\nmail: liuyang@beijing.gov.cn\n\n"
        b"dn: uid=x,ou=people,dc=x\nuid: *)(uid=*\ncn: x\ntitle: t\nmail: a@b.cn\n"
        b"govDepartmentPath: a\n\n"
    )
    parsed = parse_ldif(data)
    assert [r.name for r in parsed.rows] == ["刘洋"] and parsed.rows[0].department == ("市财政局",)
    assert len(parsed.errors) == 1 and "uid" in parsed.errors[0][1]


# -- numbers are ASCII digits only ------------------------------------------------


def test_stored_non_ascii_clearance_reads_as_zero() -> None:
    from directory.entries import person_from_attributes

    person = person_from_attributes("uid=x", {"uid": ["x"], "govClearance": ["²"]})
    assert person.clearance == 0


@pytest.mark.parametrize("arc", [
    pytest.param("1.3.6.²", id="superscript"),
    pytest.param("1.3..6", id="empty-arc"),
    pytest.param("1.3.6.", id="trailing-dot"),
    pytest.param("", id="empty"),
])
def test_schema_oid_arc_must_be_ascii_digits(arc: str) -> None:
    from directory.errors import SlapdFailed
    from directory.slapd import render_schema

    with pytest.raises(SlapdFailed):
        render_schema(arc)


# -- CSV formula injection (OWASP): neutralised on export, restored on import ----------
@pytest.mark.parametrize("value", ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)",
                                   "\t=1", "\r=1"])
def test_formula_cells_are_neutralised_on_export(value: str) -> None:
    from directory.csvimport import write_csv

    row = ["zhangwei", "张伟", "市财政局", value, "z@beijing.gov.cn", "", "", "0", ""]
    data = write_csv([row]).decode()
    assert f"'{value}" in data
    assert not any(line.split(",")[3].lstrip('"').startswith(("=", "+", "-", "@"))
                   for line in data.splitlines()[1:])


def test_plain_cells_are_written_as_they_are() -> None:
    from directory.csvsafe import neutralise

    assert neutralise("科员") == "科员" and neutralise("a=b") == "a=b"
    assert neutralise("'quoted") == "'quoted"


def test_neutralised_cell_is_restored_on_import() -> None:
    row = GOOD.replace(",科员,", ",'=cmd|' /C calc'!A0,")
    parsed = parse_csv(csv(row))
    assert parsed.errors == [] and parsed.rows[0].title == "=cmd|' /C calc'!A0"


def test_quote_before_plain_text_is_kept_on_import() -> None:
    parsed = parse_csv(csv(GOOD.replace(",科员,", ",'科员,")))
    assert parsed.rows[0].title == "'科员"


# -- streaming: memory flat in the file's length ------------------------------------
def _people(n: int) -> bytes:
    return (HEADER + "".join(
        f"user{i:07d},张伟,市财政局/预算处,科员,user{i:07d}@beijing.gov.cn,,,,staff\n"
        for i in range(n))).encode()


def _scan_peak(data: bytes) -> int:
    """tracemalloc peak of checking every row of ``data`` (the file itself, the
    caller's, is allocated before tracing starts)."""
    import io
    import tracemalloc

    from directory.csvimport import scan_csv

    f = io.BytesIO(data)
    tracemalloc.start()
    try:
        rows = sum(1 for item in scan_csv(f) if isinstance(item, PersonRow))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == data.count(b"\n") - 1
    return peak


def test_checking_rows_takes_memory_flat_in_the_number_of_rows() -> None:
    small, large = _scan_peak(_people(2_000)), _scan_peak(_people(20_000))
    # Ten times the rows: the same bounded buffers (a row kept per line would be
    # ~1 KB x 18,000 = 18 MB more). tracemalloc sees Python's allocations; the
    # uids seen live in a temporary SQLite file with a 4 MB page cache.
    assert large < small * 1.5 + 256 * 1024, (small, large)


def test_duplicate_uid_far_apart_is_named_with_its_first_line() -> None:
    data = _people(3_000) + _people(1)[len(HEADER):]
    parsed = parse_csv(data)
    assert parsed.errors == [(3002, "duplicate uid user0000000 (first on line 2)")]
