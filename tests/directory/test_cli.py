"""``govtrust directory`` commands over a real slapd (the group invoked with a stand-in ctx.obj)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from directory.cli import directory
from directory.model import AuthResult
from directory.service import DirectoryService

pytestmark = pytest.mark.slapd


@dataclass
class Obj:
    directory: DirectoryService
    json: bool = False


def run(svc: DirectoryService, *args: str, as_json: bool = False, input: str | None = None,
        ) -> tuple[int, str]:
    result = CliRunner().invoke(directory, list(args), obj=Obj(svc, as_json), input=input)
    return result.exit_code, result.output


def test_add_show_search_move_as_json(directory_service: DirectoryService) -> None:
    svc = directory_service
    assert run(svc, "department", "add", "市财政局")[0] == 0
    assert run(svc, "department", "add", "市财政局/预算处")[0] == 0
    code, out = run(svc, "add", "zhangwei", "--name", "张伟", "--department", "市财政局/预算处",
                    "--title", "科员", as_json=True)
    assert code == 0 and json.loads(out)["display_name"] == "张伟"
    code, out = run(svc, "search", "--name", "张", as_json=True)
    assert [p["uid"] for p in json.loads(out)] == ["zhangwei"]
    code, out = run(svc, "move", "zhangwei", "市财政局")
    assert code == 0 and "市财政局" in out


def test_errors_are_clear_and_exit_non_zero(directory_service: DirectoryService) -> None:
    svc = directory_service
    code, out = run(svc, "add", "*)(uid=*", "--name", "x", "--department", "市财政局")
    assert code == 1 and "uid" in out
    code, out = run(svc, "show", "nobody")
    assert code == 1 and "not found" in out
    code, out = run(svc, "add", "liuyang", "--name", "刘洋", "--department", "市不存在局")
    assert code == 1 and "市不存在局" in out


def test_import_names_bad_lines_and_continue(directory_service: DirectoryService,
                                            tmp_path: Path) -> None:
    svc = directory_service
    svc.ensure_department("市财政局")
    path = tmp_path / "people.csv"
    path.write_text("uid,name,department,title,email\n"
                    "ok1,好人,市财政局,科员,ok1@beijing.gov.cn\n"
                    "bad\\uid,坏人,市财政局,科员,a@beijing.gov.cn\n", encoding="utf-8")
    code, out = run(svc, "import", str(path))
    assert code == 1 and "line 3" in out and "nothing was imported" in out
    assert svc.search() == []
    code, out = run(svc, "import", "--dry-run", "--continue", str(path))
    assert code == 0 and "would add 1" in out and svc.search() == []
    code, out = run(svc, "import", "--continue", str(path))
    assert code == 0 and "added 1" in out
    code, out = run(svc, "export")
    assert code == 0 and "ok1,好人,市财政局" in out


def test_passwd_refuses_weak_password(directory_service: DirectoryService) -> None:
    svc = directory_service
    svc.ensure_department("市财政局")
    svc.add_person(uid="lina", name="李娜", department="市财政局")
    code, out = run(svc, "passwd", "lina", "--password-stdin", input="weak\n")
    assert code == 1 and "too_short" in out
    code, _ = run(svc, "passwd", "lina", "--password-stdin", input="Bj-Gov-2024-Secure!\n")
    assert code == 0
    assert svc.authenticate("lina", "Bj-Gov-2024-Secure!").result is AuthResult.MUST_CHANGE
    code, _ = run(svc, "passwd", "lina", "--no-change-required", "--password-stdin",
                  input="Bj-Gov-2025-Secure!\n")
    assert code == 0 and svc.authenticate("lina", "Bj-Gov-2025-Secure!").ok


def test_groups_and_service_accounts(directory_service: DirectoryService) -> None:
    svc = directory_service
    svc.ensure_department("市财政局")
    svc.add_person(uid="lina", name="李娜", department="市财政局")
    assert run(svc, "group", "add", "security-admins")[0] == 0
    assert run(svc, "group", "add-member", "security-admins", "lina")[0] == 0
    code, out = run(svc, "group", "list")
    assert code == 0 and "security-admins: lina" in out
    assert run(svc, "group", "remove-member", "security-admins", "lina")[0] == 0
    code, out = run(svc, "service-account", "add", "oa-app", as_json=True)
    assert code == 0 and json.loads(out)["dn"].startswith("uid=oa-app,ou=services,")


def test_search_takes_a_free_text_query(directory_service: DirectoryService) -> None:
    svc = directory_service
    svc.ensure_department("市财政局")
    svc.add_person(uid="wangfang", name="王芳", department="市财政局")
    svc.add_person(uid="lina", name="李娜", department="市财政局")
    code, out = run(svc, "search", "王", as_json=True)
    assert code == 0 and [p["uid"] for p in json.loads(out)] == ["wangfang"]
    code, out = run(svc, "search", "*)(uid=*")
    assert code == 0 and out.strip() == "(nobody)"


def test_import_with_non_ascii_clearance_names_the_line(directory_service: DirectoryService,
                                                        tmp_path: Path) -> None:
    svc = directory_service
    svc.ensure_department("市财政局")
    f = tmp_path / "people.csv"
    f.write_text("uid,name,department,title,email,clearance\n"
                 "wangfang,王芳,市财政局,科员,wangfang@beijing.gov.cn,²\n", encoding="utf-8")
    code, out = run(svc, "import", str(f))
    assert code == 1 and "line 2" in out and "clearance" in out
    assert "Traceback" not in out and svc.search("王") == []
