"""Demo data for ``govtrust init --demo``: Beijing municipal departments and people.

Names are deterministic (so the printed examples stay the same between runs);
passwords are generated at random for each home and returned, never stored in
the repository. A second call on a seeded directory does nothing.
"""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

from directory.errors import AlreadyExists
from directory.service import DirectoryService, ServiceAccount

ADMIN_GROUP = "security-admins"
# The KMC's recovery of someone else's key needs approvals from m of these n
# people ([kmc] approvals_required, default 2 of the 3 seeded here).
RECOVERY_AGENTS_GROUP = "key-recovery-agents"
RECOVERY_AGENTS = 3
ADMIN_UID = "secadmin"
SERVICE_ACCOUNT = "demo-app"
ACTOR = "demo"

DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "市信息化工作领导小组办公室": ("综合处", "网络安全处", "信息资源处"),
    "市财政局": ("预算处", "国库处", "综合处"),
    "市公安局": ("网络安全保卫总队", "户政处", "指挥中心"),
    "市卫生健康委员会": ("医政医管处", "疾病预防控制处"),
    "市规划和自然资源委员会": ("规划处", "测绘管理处"),
}
SURNAMES = (("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"),
            ("杨", "yang"), ("赵", "zhao"), ("黄", "huang"), ("周", "zhou"), ("吴", "wu"),
            ("徐", "xu"), ("孙", "sun"), ("胡", "hu"), ("朱", "zhu"), ("高", "gao"),
            ("林", "lin"), ("何", "he"), ("郭", "guo"), ("马", "ma"), ("欧阳", "ouyang"))
GIVEN = (("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"),
         ("秀英", "xiuying"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"),
         ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("建华", "jianhua"), ("涛", "tao"),
         ("明", "ming"), ("超", "chao"), ("海燕", "haiyan"), ("志强", "zhiqiang"),
         ("丽", "li"), ("晓东", "xiaodong"), ("桂英", "guiying"), ("文", "wen"))
TITLES = ("科员", "副主任科员", "主任科员", "副处长", "处长")
PEOPLE = 50


@dataclass(frozen=True)
class DemoPerson:
    uid: str
    name: str
    department: str
    password: str = field(repr=False)


@dataclass
class DemoAccounts:
    admin: DemoPerson
    people: list[DemoPerson]
    service: ServiceAccount
    agents: list[DemoPerson] = field(default_factory=list)

    def lines(self, base_dn: str, uri: str, examples: int = 3) -> list[str]:
        """What ``govtrust init --demo`` prints: accounts to try and an ldapsearch line."""
        out = [f"administrator ({ADMIN_GROUP}): {self.admin.uid} / {self.admin.password}"
               f"  ({self.admin.name}, {self.admin.department})"]
        for p in self.people[:examples]:
            out.append(f"civil servant: {p.uid} / {p.password}  ({p.name}, {p.department})")
        for p in self.agents:
            out.append(f"key recovery agent ({RECOVERY_AGENTS_GROUP}): {p.uid} / "
                       f"{p.password}  ({p.name})")
        out.append(f"service account (read-only): {self.service.dn} / {self.service.password}")
        sample = self.people[0].uid
        out.append(f"try: ldapsearch -x -H {uri} -D '{self.service.dn}' -w '<password>' "
                   f"-b '{base_dn}' '(uid={sample})'")
        return out


def demo_password() -> str:
    """A random password that meets the shipped policy (length 16, all four classes)."""
    alphabet = string.ascii_letters + string.digits + "-_.!@#%"
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(16))
        if (any(c.islower() for c in candidate) and any(c.isupper() for c in candidate)
                and any(c.isdigit() for c in candidate)
                and any(not c.isalnum() for c in candidate)):
            return candidate


def demo_people() -> list[tuple[str, str, str, str]]:
    """(uid, name, department path, title) for the demo, duplicates numbered like HR does."""
    units = [f"{top}/{unit}" for top, units in DEPARTMENTS.items() for unit in units]
    seen: dict[str, int] = {}
    out = []
    for i in range(PEOPLE):
        # Stride through the tables so neighbouring people get different names.
        surname, s_py = SURNAMES[i % len(SURNAMES)]
        given, g_py = GIVEN[(i * 7) % len(GIVEN)]
        if i >= PEOPLE - 2:  # two namesakes, as every large office has: zhangwei, zhangwei2
            surname, s_py, given, g_py = "张", "zhang", "伟", "wei"
        base = s_py + g_py
        seen[base] = seen.get(base, 0) + 1
        uid = base if seen[base] == 1 else f"{base}{seen[base]}"
        out.append((uid, surname + given, units[i % len(units)], TITLES[i % len(TITLES)]))
    return out


def is_seeded(service: DirectoryService) -> bool:
    return any(g.name == ADMIN_GROUP for g in service.list_groups())


def seed_demo(service: DirectoryService, *, service_password: str | None = None) -> DemoAccounts:
    """Load the demo departments, people, admin group and service account.

    ``service_password`` is the home's ``ldap-service-password`` secret, so the
    demo apps can read the directory with it; random when not given.
    """
    for top, units in DEPARTMENTS.items():
        service.ensure_department(top, actor=ACTOR)
        for unit in units:
            service.ensure_department(f"{top}/{unit}", actor=ACTOR)
    people = []
    for uid, name, dept, title in demo_people():
        password = demo_password()
        try:
            service.add_person(uid=uid, name=name, department=dept, title=title,
                               clearance=1, password=password, actor=ACTOR)
        except AlreadyExists:
            service.set_password(uid, password, actor=ACTOR, must_change=False)
        people.append(DemoPerson(uid, name, dept, password))
    admin_password = demo_password()
    admin_dept = "市信息化工作领导小组办公室/网络安全处"
    try:
        service.add_person(uid=ADMIN_UID, name="赵建国", department=admin_dept, title="处长",
                           clearance=3, password=admin_password, actor=ACTOR)
    except AlreadyExists:
        service.set_password(ADMIN_UID, admin_password, actor=ACTOR,
                             must_change=False)
    try:
        service.add_group(ADMIN_GROUP, description="安全管理员", actor=ACTOR)
    except AlreadyExists:
        pass
    service.add_member(ADMIN_GROUP, ADMIN_UID, actor=ACTOR)
    agents = [p for p in people if p.department.startswith("市信息化工作领导小组办公室")]
    try:
        service.add_group(RECOVERY_AGENTS_GROUP, description="密钥恢复员", actor=ACTOR)
    except AlreadyExists:
        pass
    for agent in agents[:RECOVERY_AGENTS]:
        service.add_member(RECOVERY_AGENTS_GROUP, agent.uid, actor=ACTOR)
    try:
        account = service.add_service_account(SERVICE_ACCOUNT, description="演示部门应用（只读）",
                                              password=service_password, actor=ACTOR)
    except AlreadyExists:  # a seed interrupted earlier: take the account over
        account = service.reset_service_account(SERVICE_ACCOUNT, password=service_password,
                                                actor=ACTOR)
    return DemoAccounts(DemoPerson(ADMIN_UID, "赵建国", admin_dept, admin_password),
                        people, account, agents[:RECOVERY_AGENTS])


def write_accounts(path: Path, accounts: DemoAccounts, base_dn: str, uri: str) -> None:
    """Every demo account and password, to a file only the owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to an existing file
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("# GovTrust demo accounts (generated at init; keep this file private)\n")
        for line in accounts.lines(base_dn, uri, examples=len(accounts.people)):
            handle.write(line + "\n")
