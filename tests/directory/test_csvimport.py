"""The people CSV: one named test per kind of bad input (pure, no slapd)."""

from __future__ import annotations

import pytest

from directory.csvimport import MAX_FIELD, PersonRow, parse_csv
from directory.ldif import parse_ldif

HEADER = "uid,name,department,title,email,mobile,employee_number,clearance,groups\n"
GOOD = "zhangwei,张伟,市财政局/预算处,科员,zhangwei@beijing.gov.cn,13800000000,E001,2,staff;ops\n"


def csv(*rows: str, header: str = HEADER) -> bytes:
    return (header + "".join(rows)).encode("utf-8")


def only_error(data: bytes) -> tuple[int, str]:
    parsed = parse_csv(data)
    assert len(parsed.errors) == 1, parsed.errors
    return parsed.errors[0]


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


def test_wrong_encoding_gbk_names_the_line() -> None:
    data = (HEADER + "ascii,A,市财政局,t,a@b.cn,,,,\n").encode("utf-8") + GOOD.encode("gbk")
    line, reason = only_error(data)
    assert line == 3 and "UTF-8" in reason


def test_missing_column() -> None:
    data = csv("zhangwei,张伟,市财政局,科员\n", header="uid,name,department,title\n")
    line, reason = only_error(data)
    assert line == 1 and "email" in reason


def test_extra_column() -> None:
    line, reason = only_error(csv(header=HEADER.strip() + ",salary\n"))
    assert line == 1 and "salary" in reason


def test_row_with_too_many_fields() -> None:
    line, reason = only_error(csv(GOOD, GOOD.strip() + ",extra\n"))
    assert line == 3 and "fields" in reason


def test_duplicate_uid_names_both_lines() -> None:
    line, reason = only_error(csv(GOOD, GOOD))
    assert line == 3 and "duplicate uid zhangwei" in reason and "line 2" in reason


def test_empty_file() -> None:
    assert only_error(b"")[0] == 1


@pytest.mark.parametrize("uid", [
    pytest.param("*)(uid=*", id="filter-injection"),
    pytest.param("zhang\\wei", id="backslash"),
    pytest.param("zhang,wei", id="comma"),
    pytest.param("zhang+wei", id="plus"),
    pytest.param('zhang"wei', id="quote"),
    pytest.param("zhang<wei>", id="angle"),
    pytest.param("zhang;wei", id="semicolon"),
    pytest.param("zhang=wei", id="equals"),
    pytest.param("ZhangWei", id="upper-case"),
    pytest.param("张伟", id="chinese-uid"),
])
def test_ldap_metacharacters_in_uid(uid: str) -> None:
    row = GOOD.replace("zhangwei,", f'"{uid.replace(chr(34), chr(34) * 2)}",', 1)
    line, reason = only_error(csv(row))
    assert line == 2 and "uid" in reason


@pytest.mark.parametrize("name", [
    pytest.param("*)(cn=*", id="filter-injection"),
    pytest.param("张\\伟", id="backslash"),
    pytest.param("张,伟", id="comma"),
    pytest.param("张+伟", id="plus"),
    pytest.param('张"伟', id="quote"),
    pytest.param("张<伟>", id="angle"),
    pytest.param("张;伟", id="semicolon"),
    pytest.param("张=伟", id="equals"),
])
def test_ldap_metacharacters_in_name(name: str) -> None:
    row = GOOD.replace("张伟", '"' + name.replace('"', '""') + '"')
    line, reason = only_error(csv(row))
    assert line == 2 and "name" in reason


def test_nul_byte_in_uid() -> None:
    line, reason = only_error(csv(GOOD.replace("zhangwei,", "zhang\x00wei,", 1)))
    assert line == 2 and "NUL" in reason


def test_nul_byte_in_name() -> None:
    line, reason = only_error(csv(GOOD.replace("张伟", "张\x00伟")))
    assert line == 2 and "NUL" in reason


def test_oversized_name() -> None:
    line, reason = only_error(csv(GOOD.replace("张伟", "张" * 65)))
    assert line == 2 and "longer than 64" in reason


def test_oversized_field() -> None:
    line, reason = only_error(csv(GOOD.replace("科员", "科" * (MAX_FIELD + 1))))
    assert line == 2 and "longer than" in reason


def test_oversized_uid() -> None:
    line, reason = only_error(csv(GOOD.replace("zhangwei,", "z" * 65 + ",", 1)))
    assert line == 2 and "uid" in reason


def test_bad_email() -> None:
    line, reason = only_error(csv(GOOD.replace("zhangwei@beijing.gov.cn", "not-an-address")))
    assert line == 2 and "email" in reason


def test_bad_clearance() -> None:
    line, reason = only_error(csv(GOOD.replace(",2,", ",5,")))
    assert line == 2 and "clearance" in reason


def test_all_bad_rows_are_reported_with_their_lines() -> None:
    bad_uid = GOOD.replace("zhangwei,", "bad uid,", 1)
    rows = [GOOD.replace("zhangwei", f"user{i}") for i in range(6)]
    rows[1], rows[3], rows[5] = bad_uid, bad_uid.replace("bad uid", "*"), "x,,,,,,,,\n"
    parsed = parse_csv(csv(*rows))
    assert [n for n, _ in parsed.errors] == [3, 5, 7]
    assert len(parsed.rows) == 3


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


PERSON_LDIF = (b"dn: uid=liuyang,ou=people,dc=x\nuid: liuyang\ndisplayName:: 5YiY5rSL\n"
               b"govDepartmentPath:: 5biC6LSi5pS/5bGA\ntitle: t\nmail: liuyang@beijing.gov.cn\n\n")


@pytest.mark.parametrize(("name", "data", "says"), [
    ("garbage", b"\x00\x01\x02 not ldif at all\n:::\n", "not valid LDIF"),
    ("url_value_never_fetched",
     PERSON_LDIF.replace(b"title: t", b"title:< file:///etc/passwd"), "URL values"),
    ("gbk_bytes", PERSON_LDIF.replace(b"displayName:: 5YiY5rSL",
                                      b"displayName: " + "刘洋".encode("gbk")), "not valid LDIF"),
    ("bad_base64", PERSON_LDIF.replace(b"5YiY5rSL", b"!!!notbase64"), "not valid LDIF"),
    ("not_a_person", b"dn: ou=x,dc=x\nou: x\n\n", "not a person"),
    ("change_record", b"dn: uid=a,ou=people,dc=x\nchangetype: delete\n\n", "not a person"),
    ("duplicate_uid", PERSON_LDIF + PERSON_LDIF, "duplicate uid"),
])
def test_bad_ldif_is_named_and_yields_no_row(name: str, data: bytes, says: str) -> None:
    parsed = parse_ldif(data)
    assert parsed.errors and says in parsed.errors[-1][1], (name, parsed.errors)
    if name != "duplicate_uid":
        assert parsed.rows == []


def test_oversized_ldif_is_refused_before_parsing() -> None:
    from directory.csvimport import MAX_FILE_BYTES

    parsed = parse_ldif(PERSON_LDIF * (MAX_FILE_BYTES // len(PERSON_LDIF) + 1))
    assert parsed.rows == [] and "larger than" in parsed.errors[0][1]


# -- numbers are ASCII digits only ------------------------------------------------
@pytest.mark.parametrize("clearance", [
    pytest.param("²", id="superscript-two"),
    pytest.param("٣", id="arabic-indic-three"),
    pytest.param("３", id="fullwidth-three"),
    pytest.param("+3", id="plus-sign"),
    pytest.param("-0", id="minus-zero"),
    pytest.param("9" * 40, id="forty-digits"),
])
def test_non_ascii_clearance_names_the_row(clearance: str) -> None:
    row = GOOD.replace(",2,", f',"{clearance}",')
    line, reason = only_error(csv(row))
    assert line == 2 and "clearance" in reason


def test_non_ascii_clearance_in_ldif_names_the_entry() -> None:
    data = ("dn: uid=li,ou=people,dc=x\nuid: li\ncn: 李娜\ngovDepartmentPath: 市公安局\n"
            "title: t\nmail: li@beijing.gov.cn\ngovClearance: ²\n").encode()
    parsed = parse_ldif(data)
    assert parsed.rows == [] and len(parsed.errors) == 1
    assert "clearance" in parsed.errors[0][1]


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
