"""Import against a real slapd: all-or-nothing, --continue, idempotence, 10,000 rows."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from directory.bulk import TXN_BATCH
from directory.errors import ImportRejected, InvalidValue
from directory.events import RecordingPublisher
from directory.gateway import LdapGateway
from directory.service import DirectoryService
from tests.fixtures.slapd import make_slapd

pytestmark = pytest.mark.slapd
HEADER = "uid,name,department,title,email,groups\n"
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


def row(i: int, dept: str = "市财政局/预算处", groups: str = "") -> str:
    name = SURNAMES[i % 20] + GIVEN[(i // 20) % len(GIVEN)] + GIVEN[(i // 480) % len(GIVEN)]
    return f"user{i:05d},{name},{dept},科员,user{i:05d}@beijing.gov.cn,{groups}\n"


def people_csv(n: int, start: int = 0) -> bytes:
    return (HEADER + "".join(row(i) for i in range(start, start + n))).encode("utf-8")


def prepare(svc: DirectoryService) -> None:
    svc.ensure_department("市财政局/预算处")
    svc.add_group("staff")


def test_three_bad_rows_are_named_and_nothing_is_imported(
        directory_service: DirectoryService) -> None:
    svc = directory_service
    prepare(svc)
    lines = [row(i) for i in range(10)]
    lines[2] = row(2).replace("user00002", "*)(uid=*")       # file line 4
    lines[5] = row(5, dept="市不存在局/某处")                   # file line 7
    lines[8] = row(8).replace("user00008@beijing.gov.cn", "no-at-sign")  # file line 10
    data = (HEADER + "".join(lines)).encode()
    with pytest.raises(ImportRejected) as err:
        svc.import_people(data)
    assert [n for n, _ in err.value.errors] == [4, 7, 10]
    assert "市不存在局" in err.value.errors[1][1]
    assert svc.search() == []

    report = svc.import_people(data, dry_run=True, keep_going=True)
    assert report.added == 7 and svc.search() == []

    report = svc.import_people(data, keep_going=True)
    assert report.added == 7 and [n for n, _ in report.errors] == [4, 7, 10]
    assert len(svc.search()) == 7


def test_reimport_updates_only_differences(directory_service: DirectoryService) -> None:
    svc = directory_service
    prepare(svc)
    first = (HEADER + row(1, groups="staff") + row(2)).encode()
    assert svc.import_people(first).added == 2
    assert svc.show("user00001").groups == ("staff",)
    again = svc.import_people(first)
    assert (again.added, again.updated, again.unchanged, again.memberships_added) == (0, 0, 2, 0)
    changed = (HEADER + row(1, groups="staff") + row(2).replace("科员", "副处长")).encode()
    report = svc.import_people(changed)
    assert (report.updated, report.unchanged) == (1, 1)
    assert svc.show("user00002").title == "副处长"


def test_reimport_does_not_bring_back_someone_who_left(
        directory_service: DirectoryService) -> None:
    svc = directory_service
    prepare(svc)
    data = (HEADER + row(3)).encode()
    svc.import_people(data)
    svc.leave("user00003")
    assert svc.import_people(data).unchanged == 1
    assert svc.show("user00003").status.value == "left"


def test_wrong_encoding_imports_nothing(directory_service: DirectoryService) -> None:
    svc = directory_service
    prepare(svc)
    with pytest.raises(ImportRejected) as err:
        svc.import_people((HEADER + row(1)).encode("gbk"))
    assert err.value.errors[0][0] == 2
    assert svc.search() == []


@pytest.fixture(scope="module")
def own_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DirectoryService]:
    """A service over a slapd of its own, so thousands of people do not slow other tests."""
    server = make_slapd(Path(tmp_path_factory.mktemp("bulk")))
    server.start()
    server.ensure_base()
    gateway = LdapGateway(server.settings)

    class NullAudit:
        def record(self, **_: object) -> None:
            pass

    svc = DirectoryService(server.settings, gateway, NullAudit(), RecordingPublisher())
    try:
        yield svc
    finally:
        gateway.close()
        server.stop()


def test_many_batches_then_reimport_changes_nothing(own_service: DirectoryService) -> None:
    """Four write batches, then the same file again: nothing is written the second
    time. (How fast a city-sized import runs is a benchmark's figure:
    ``scripts/bench/directory.py``, not a timed test.)"""
    svc = own_service
    prepare(svc)
    n = 4 * TXN_BATCH
    data = people_csv(n)
    report = svc.import_people(data)
    assert report.added == n
    again = svc.import_people(data)
    assert (again.added, again.updated, again.unchanged) == (0, 0, n)
    assert svc.show(f"user{n - 1:05d}").display_name == row(n - 1).split(",")[1]


def test_a_refused_op_in_a_bulk_batch_is_named_and_the_rest_applied(
        directory_service: DirectoryService) -> None:
    """A transaction slapd refuses as a whole is replayed op by op, naming the bad one."""
    from directory import entries

    svc = directory_service
    gw = svc.gateway
    prepare(svc)
    svc.add_person(uid="taken", name="占用", department="市财政局/预算处")

    def add(uid: str) -> tuple[str, str, object]:
        return ("add", gw.person_dn(uid), {
            "objectClass": entries.PERSON_CLASSES, "uid": [uid],
            **entries.person_attributes(uid=uid, name="新人", department=("市财政局",))})

    results = gw.apply_many([add("fresh1"), add("taken"), add("fresh2")])
    assert results[0] is None and results[2] is None
    assert results[1] is not None and results[1].code == "ALREADY_EXISTS"
    assert {p.uid for p in svc.search()} == {"taken", "fresh1", "fresh2"}


def test_bad_row_at_the_end_of_a_large_file_changes_nothing(
        directory_service: DirectoryService, tmp_path: Path) -> None:
    svc = directory_service
    prepare(svc)
    n = 3_000  # six write batches: the bad row is met long after the first could be written
    path = tmp_path / "people.csv"
    path.write_bytes(people_csv(n - 1) + row(n - 1, dept="市不存在局/某处").encode())
    with path.open("rb") as f, pytest.raises(ImportRejected) as err:
        svc.import_people(f)
    assert err.value.errors == [(n + 1, "department 市不存在局/某处 does not exist")]
    assert svc.search(limit=10) == []

    with path.open("rb") as f:  # --continue: the good rows, streamed from the file
        report = svc.import_people(f, keep_going=True)
    assert report.added == n - 1 and [line for line, _ in report.errors] == [n + 1]
    assert len(svc.search(limit=n + 10)) == n - 1


class _RewrittenBetweenPasses(io.RawIOBase):
    """A file another program rewrites while the import runs: ``second`` is what a
    read sees from the second time the file's end is sought (the second pass)."""

    def __init__(self, first: bytes, second: bytes) -> None:
        self.content, self.second, self.pos, self.ends = first, second, 0, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self.content[self.pos:self.pos + len(buffer)]
        buffer[:len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            self.ends += 1
            if self.ends == 2:
                self.content = self.second
            self.pos = len(self.content) + offset
        else:
            self.pos = offset if whence == io.SEEK_SET else self.pos + offset
        return self.pos


def test_file_changed_between_the_passes_is_reported(
        directory_service: DirectoryService) -> None:
    svc = directory_service
    prepare(svc)
    f = io.BufferedReader(_RewrittenBetweenPasses(people_csv(3), people_csv(4)))
    with pytest.raises(ImportRejected) as err:
        svc.import_people(f)  # type: ignore[arg-type]
    assert [line for line, _ in err.value.errors] == [0]
    assert "changed while it was being imported" in err.value.errors[0][1]


def test_a_pipe_is_refused_before_anything_is_read(directory_service: DirectoryService) -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as w:
        w.write(people_csv(1))
    with os.fdopen(read_end, "rb") as f, pytest.raises(InvalidValue) as err:
        directory_service.import_people(f)
    assert err.value.field == "file"
