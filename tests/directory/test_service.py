"""People, departments, groups and lifecycle against a real slapd."""

from __future__ import annotations

import pytest

from directory.errors import (
    AlreadyExists,
    DirectoryUnavailable,
    InvalidTransition,
    InvalidValue,
    NotFound,
    WeakPassword,
    WrongPassword,
)
from directory.gateway import LdapGateway
from directory.model import AuthResult, PersonStatus
from directory.service import DirectoryService
from directory.settings import DirectorySettings
from directory.slapd import ManagedSlapd
from tests.fixtures.postgres import free_port

pytestmark = pytest.mark.slapd
PASSWORD = "Bj-Gov-2024-Secure!"


def departments(svc: DirectoryService) -> None:
    for path in ("市财政局/预算处", "市财政局/国库处", "市公安局/网安总队"):
        svc.ensure_department(path)


def audit_actions(svc: DirectoryService) -> list[str]:
    from pki.audit_store import iter_records

    with svc.audit._sessions() as s:  # type: ignore[attr-defined]
        return [r.action for r in iter_records(s)]


def test_add_show_search_keep_chinese_names(directory_service: DirectoryService) -> None:
    svc = directory_service
    departments(svc)
    p = svc.add_person(uid="zhangwei", name="张伟", department="市财政局/预算处", title="处长",
                       email="zhangwei@beijing.gov.cn", clearance=2, actor="admin")
    svc.add_person(uid="ouyangxiu", name="欧阳修", department="市公安局/网安总队", title="科员")
    assert p.display_name == "张伟" and p.department == ("市财政局", "预算处")
    assert p.entry_uuid and p.status is PersonStatus.ACTIVE and p.clearance == 2
    assert svc.show("zhangwei") == p
    assert [x.uid for x in svc.search(name="欧阳")] == ["ouyangxiu"]
    assert [x.uid for x in svc.search(department="市财政局")] == ["zhangwei"]
    assert [x.uid for x in svc.search(uid="zhangwei")] == ["zhangwei"]
    assert svc.search(name="*") == []  # a star is a character to look for, not a wildcard
    assert "directory.add" in audit_actions(svc)


def test_add_refuses_bad_values_and_unknown_department(
        directory_service: DirectoryService) -> None:
    svc = directory_service
    departments(svc)
    with pytest.raises(InvalidValue):
        svc.add_person(uid="*)(uid=*", name="x", department="市财政局")
    with pytest.raises(InvalidValue):
        svc.add_person(uid="liuyang", name="刘,洋", department="市财政局")
    with pytest.raises(NotFound) as err:
        svc.add_person(uid="liuyang", name="刘洋", department="市不存在局")
    assert err.value.kind == "department"
    with pytest.raises(WeakPassword):
        svc.add_person(uid="liuyang", name="刘洋", department="市财政局", password="short")
    assert svc.search() == []
    svc.add_person(uid="liuyang", name="刘洋", department="市财政局")
    with pytest.raises(AlreadyExists):
        svc.add_person(uid="liuyang", name="刘洋", department="市财政局")


def test_lifecycle_state_machine_and_events(directory_service: DirectoryService) -> None:
    svc = directory_service
    departments(svc)
    svc.add_person(uid="wangfang", name="王芳", department="市财政局/预算处", password=PASSWORD)
    gw = svc.gateway
    assert gw.authenticate("wangfang", PASSWORD).result is AuthResult.OK

    suspended = svc.suspend("wangfang", actor="admin", reason="调查")
    assert suspended.status is PersonStatus.SUSPENDED
    assert gw.authenticate("wangfang", PASSWORD).result is AuthResult.SUSPENDED
    # A wrong password is not told the status.
    assert gw.authenticate("wangfang", "Wrong-password-1").result is AuthResult.BAD_CREDENTIALS
    with pytest.raises(InvalidTransition):
        svc.suspend("wangfang")

    assert svc.restore("wangfang").status is PersonStatus.ACTIVE
    assert gw.authenticate("wangfang", PASSWORD).result is AuthResult.OK

    moved = svc.move("wangfang", "市公安局/网安总队")
    assert moved.department == ("市公安局", "网安总队")

    assert svc.leave("wangfang").status is PersonStatus.LEFT
    assert gw.authenticate("wangfang", PASSWORD).result is AuthResult.LEFT
    for step in (svc.restore, svc.suspend, svc.leave):
        with pytest.raises(InvalidTransition):
            step("wangfang")
    with pytest.raises(InvalidTransition):
        svc.move("wangfang", "市财政局")
    assert [a for a in audit_actions(svc) if a.split(".")[1] in
            ("suspend", "restore", "move", "leave")] == [
        "directory.suspend", "directory.restore", "directory.move", "directory.leave"]


def test_groups_and_memberof(directory_service: DirectoryService) -> None:
    svc = directory_service
    departments(svc)
    svc.add_person(uid="lina", name="李娜", department="市财政局")
    svc.add_group("security-admins", description="安全管理员")
    svc.add_member("security-admins", "lina")
    svc.add_member("security-admins", "lina")  # idempotent
    assert svc.show("lina").groups == ("security-admins",)
    assert [p.uid for p in svc.search(group="security-admins")] == ["lina"]
    assert svc.list_groups()[0].members == ("lina",)
    svc.remove_member("security-admins", "lina")
    assert svc.show("lina").groups == ()
    assert svc.list_groups()[0].members == ()
    with pytest.raises(NotFound):
        svc.add_member("nope", "lina")


def test_departments_tree(directory_service: DirectoryService) -> None:
    svc = directory_service
    svc.add_department("市卫生健康委员会")
    svc.add_department("市卫生健康委员会/医政医管处")
    with pytest.raises(NotFound):
        svc.add_department("市不存在局/某处")
    paths = [d.path for d in svc.list_departments()]
    assert paths == [("市卫生健康委员会",), ("市卫生健康委员会", "医政医管处")]


def test_set_password_checks_policy_first(directory_service: DirectoryService) -> None:
    svc = directory_service
    departments(svc)
    svc.add_person(uid="chenjing", name="陈静", department="市财政局")
    with pytest.raises(WeakPassword) as err:
        svc.set_password("chenjing", "password")
    assert "too_short" in err.value.reasons
    svc.set_password("chenjing", PASSWORD)
    # an administrator's reset: the owner must change it at the next login
    assert svc.gateway.authenticate("chenjing", PASSWORD).result is AuthResult.MUST_CHANGE
    svc.set_password("chenjing", PASSWORD + "x", must_change=False)
    assert svc.gateway.authenticate("chenjing", PASSWORD + "x").ok


def test_empty_password_and_bad_uid_are_refused_before_any_bind(
        directory_service: DirectoryService) -> None:
    gw = directory_service.gateway
    assert gw.authenticate("zhangwei", "").result is AuthResult.BAD_CREDENTIALS
    assert gw.authenticate("*)(uid=*", "x").result is AuthResult.BAD_CREDENTIALS
    assert gw.authenticate("nobody", PASSWORD).result is AuthResult.BAD_CREDENTIALS


def test_slapd_not_running_is_a_clear_error(slapd: object) -> None:
    settings = DirectorySettings(uris=(f"ldap://127.0.0.1:{free_port()}",),
                                 base_dn="dc=x", bind_dn="cn=admin,dc=x", bind_password="x",
                                 timeout=1.0)
    gw = LdapGateway(settings)
    with pytest.raises(DirectoryUnavailable) as err:
        gw.find_person("zhangwei")
    assert err.value.uris == settings.uris
    assert gw.authenticate("zhangwei", PASSWORD).result is AuthResult.UNAVAILABLE


def test_export_reimports_as_unchanged(directory_service: DirectoryService) -> None:
    svc = directory_service
    departments(svc)
    svc.add_group("staff")
    svc.add_person(uid="zhaolei", name="赵磊", department="市财政局/国库处", title="科员",
                   mobile="13900000000", employee_number="E9", clearance=1)
    svc.add_member("staff", "zhaolei")
    for fmt in ("csv", "ldif"):
        data = svc.export_people(fmt)
        # LDIF carries non-ASCII values base64-encoded (RFC 2849), CSV as UTF-8.
        assert ("赵磊".encode() if fmt == "csv" else b"displayName:: 6LW156OK") in data
        report = svc.import_people(data)
        assert (report.added, report.updated, report.unchanged) == (0, 0, 1), fmt


def test_stopped_slapd_gives_directory_unavailable_and_changes_nothing(
        directory_service: DirectoryService, slapd: ManagedSlapd) -> None:
    svc = directory_service
    departments(svc)
    slapd.stop()
    try:
        with pytest.raises(DirectoryUnavailable) as err:
            svc.add_person(uid="liuyang", name="刘洋", department="市财政局")
        assert slapd.uri in str(err.value)
        with pytest.raises(DirectoryUnavailable):
            svc.import_people(b"uid,name,department,title,email\n"
                              b"liuyang,x,a,t,liuyang@beijing.gov.cn\n")
        with pytest.raises(DirectoryUnavailable):
            svc.suspend("zhangwei")
        assert svc.gateway.authenticate("zhangwei", PASSWORD).result is AuthResult.UNAVAILABLE
    finally:
        slapd.start()
    assert svc.search() == []  # and the pool recovers once slapd is back


def test_change_own_password_enforces_history(directory_service: DirectoryService) -> None:
    svc = directory_service
    departments(svc)
    svc.add_person(uid="yangyan", name="杨艳", department="市财政局", password=PASSWORD)
    new = "Bj-Gov-2030-Secure!"
    with pytest.raises(WrongPassword):
        svc.change_password("yangyan", "Wrong-password-123", new)
    with pytest.raises(WeakPassword):
        svc.change_password("yangyan", PASSWORD, "weak")
    svc.change_password("yangyan", PASSWORD, new)
    assert svc.authenticate("yangyan", new).ok
    with pytest.raises(WeakPassword) as reused:
        svc.change_password("yangyan", new, PASSWORD)
    assert reused.value.reasons == ("passwordInHistory",)


def test_formula_values_export_neutralised_and_reimport_unchanged(
        directory_service: DirectoryService) -> None:
    svc = directory_service
    departments(svc)
    svc.add_person(uid="zhaolei", name="@赵磊", department="市财政局/国库处",
                   title="=cmd|' /C calc'!A0", mobile="+8613900000000")
    data = svc.export_people("csv").decode()
    assert "'=cmd|' /C calc'!A0" in data and "'@赵磊" in data and "'+8613900000000" in data
    report = svc.import_people(data.encode())
    assert (report.added, report.updated, report.unchanged) == (0, 0, 1)
    assert svc.show("zhaolei").title == "=cmd|' /C calc'!A0"


def _search_people(svc: DirectoryService) -> None:
    departments(svc)
    svc.add_person(uid="wangfang", name="王芳", department="市财政局/预算处")
    svc.add_person(uid="wangwei", name="王伟", department="市公安局/网安总队")
    svc.add_person(uid="lina", name="李娜", department="市财政局/国库处")


def test_free_text_search_matches_chinese_name(directory_service: DirectoryService) -> None:
    svc = directory_service
    _search_people(svc)
    assert [p.uid for p in svc.search("王")] == ["wangfang", "wangwei"]
    assert [p.uid for p in svc.search("李娜")] == ["lina"]


def test_free_text_search_matches_uid_substring(directory_service: DirectoryService) -> None:
    svc = directory_service
    _search_people(svc)
    assert [p.uid for p in svc.search("ngfa")] == ["wangfang"]


def test_free_text_search_combines_with_options(directory_service: DirectoryService) -> None:
    svc = directory_service
    _search_people(svc)
    assert [p.uid for p in svc.search("王", department="市公安局")] == ["wangwei"]


@pytest.mark.parametrize("query", ["*)(uid=*", "*", ")(", "\\", "王*)(|(uid=*"])
def test_free_text_search_with_filter_metacharacters_finds_nobody(
        directory_service: DirectoryService, query: str) -> None:
    svc = directory_service
    _search_people(svc)
    assert svc.search(query) == []


def test_free_text_search_with_nul_is_refused(directory_service: DirectoryService) -> None:
    with pytest.raises(InvalidValue) as err:
        directory_service.search("王\x00")
    assert err.value.field == "query"
