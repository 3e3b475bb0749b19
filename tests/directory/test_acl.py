"""What a department app's service account may see, checked with the real ldapsearch."""

from __future__ import annotations

import base64
import subprocess

import pytest

from directory.service import DirectoryService

pytestmark = pytest.mark.slapd


def ldapsearch(uri: str, dn: str | None, password: str | None, base: str, filt: str,
               *attrs: str) -> subprocess.CompletedProcess[str]:
    cmd = ["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", uri, "-b", base]
    if dn:
        cmd += ["-D", dn, "-w", password or ""]
    return subprocess.run([*cmd, filt, *attrs], capture_output=True, text=True, timeout=30)


def values(output: str, attr: str) -> list[str]:
    out = []
    for line in output.splitlines():
        if line.startswith(attr + ":: "):
            out.append(base64.b64decode(line[len(attr) + 3:]).decode("utf-8"))
        elif line.startswith(attr + ": "):
            out.append(line[len(attr) + 2:])
    return out


def test_service_account_reads_people_but_not_passwords(
        directory_service: DirectoryService) -> None:
    svc = directory_service
    svc.ensure_department("市财政局/预算处")
    svc.add_person(uid="zhangwei", name="张伟", department="市财政局/预算处",
                   password="Bj-Gov-2024-Secure!")
    svc.gateway.modify(svc.gateway.person_dn("zhangwei"),
                       [("replace", "govNationalIdHash", ["sha256$salt$digest"])])
    account = svc.add_service_account("oa-app", description="办公自动化")
    base = svc.settings.base_dn
    uri = svc.settings.uris[0]

    found = ldapsearch(uri, account.dn, account.password, base, "(uid=zhangwei)")
    assert found.returncode == 0, found.stderr
    assert values(found.stdout, "displayName") == ["张伟"]
    assert values(found.stdout, "govDepartmentPath") == ["市财政局/预算处"]
    assert values(found.stdout, "userPassword") == []
    assert values(found.stdout, "govNationalIdHash") == []

    # Asking for the hashes by name does not reveal them either; old password
    # hashes (ppolicy's pwdHistory, which the rootdn does see) included.
    svc.set_password("zhangwei", "Bj-Gov-2025-Secure!")
    admin = ldapsearch(uri, svc.settings.bind_dn, svc.settings.bind_password, base,
                       "(uid=zhangwei)", "pwdHistory")
    assert values(admin.stdout, "pwdHistory"), admin.stdout
    asked = ldapsearch(uri, account.dn, account.password, base, "(uid=zhangwei)",
                       "userPassword", "govNationalIdHash", "pwdHistory", "+")
    assert asked.returncode == 0 and "uid=zhangwei," in asked.stdout
    for secret in ("userPassword", "govNationalIdHash", "pwdHistory"):
        assert secret not in asked.stdout

    # Read-only: a write is refused with insufficient access (LDAP result 50).
    modify = subprocess.run(
        ["ldapmodify", "-x", "-H", uri, "-D", account.dn, "-w", account.password],
        input=f"dn: {svc.gateway.person_dn('zhangwei')}\nchangetype: modify\n"
              "replace: title\ntitle: x\n",
        capture_output=True, text=True, timeout=30)
    assert modify.returncode == 50, modify.stderr

    # Anonymous clients may only authenticate.
    anon = ldapsearch(uri, None, None, base, "(uid=zhangwei)")
    assert "zhangwei" not in anon.stdout

    # A wrong service password is refused.
    assert ldapsearch(uri, account.dn, "wrong", base, "(uid=*)").returncode == 49


def test_person_sees_only_own_entry(directory_service: DirectoryService) -> None:
    svc = directory_service
    svc.ensure_department("市财政局")
    for uid, name in (("lina", "李娜"), ("liuyang", "刘洋")):
        svc.add_person(uid=uid, name=name, department="市财政局", password="Bj-Gov-2024-Secure!")
    found = ldapsearch(svc.settings.uris[0], svc.gateway.person_dn("lina"), "Bj-Gov-2024-Secure!",
                       svc.settings.base_dn, "(objectClass=inetOrgPerson)")
    assert found.returncode == 0, found.stderr
    assert values(found.stdout, "uid") == ["lina"]


def test_person_changes_own_password_under_slapds_policy(
        directory_service: DirectoryService) -> None:
    """slapd itself enforces the pushed policy (length, history) on a self-service change."""
    svc = directory_service
    svc.ensure_department("市财政局")
    first, second = "Bj-Gov-2024-Secure!", "Bj-Gov-2025-Secure!"
    svc.add_person(uid="guojing", name="郭静", department="市财政局", password=first)
    dn, uri = svc.gateway.person_dn("guojing"), svc.settings.uris[0]

    def ldappasswd(old: str, new: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ldappasswd", "-x", "-H", uri, "-D", dn, "-w", old, "-a", old,
                               "-s", new], capture_output=True, text=True, timeout=30)

    short = ldappasswd(first, "Sh0rt!")
    assert short.returncode != 0 and "quality" in short.stderr.lower() + short.stdout.lower()
    assert ldappasswd(first, second).returncode == 0, "a good change is accepted"
    assert svc.authenticate("guojing", second).ok
    again = ldappasswd(second, first)
    assert again.returncode != 0 and "history" in again.stderr.lower() + again.stdout.lower()
