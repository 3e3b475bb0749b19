"""The demo directory: departments, about 50 people, an administrator, a service account."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import ldap.filter
import pytest

from directory.demo import (
    ADMIN_GROUP,
    DEPARTMENTS,
    RECOVERY_AGENTS_GROUP,
    is_seeded,
    seed_demo,
    write_accounts,
)
from directory.service import DirectoryService

pytestmark = pytest.mark.slapd


def test_seed_demo(directory_service: DirectoryService, tmp_path: Path) -> None:
    svc = directory_service
    assert not is_seeded(svc)
    accounts = seed_demo(svc)
    assert is_seeded(svc)
    assert len(accounts.people) == 50 and len(svc.search()) == 51
    assert {"zhangwei", "zhangwei2"} <= {p.uid for p in accounts.people}
    assert {d.path[0] for d in svc.list_departments()} == set(DEPARTMENTS)
    assert svc.show(accounts.admin.uid).groups == (ADMIN_GROUP,)
    # the KMC's m-of-n recovery needs agents: three, in their own group
    assert len(accounts.agents) == 3
    assert all(svc.show(a.uid).groups == (RECOVERY_AGENTS_GROUP,) for a in accounts.agents)
    first = accounts.people[0]
    outcome = svc.authenticate(first.uid, first.password)
    assert outcome.ok and outcome.person is not None
    assert outcome.person.display_name == first.name

    found = subprocess.run(
        ["ldapsearch", "-x", "-LLL", "-H", svc.settings.uris[0], "-D", accounts.service.dn,
         "-w", accounts.service.password, "-b", svc.settings.base_dn,
         ldap.filter.filter_format("(uid=%s)", [first.uid]),
         "displayName"], capture_output=True, text=True, timeout=30)
    assert found.returncode == 0 and f"uid={first.uid}," in found.stdout

    path = tmp_path / "demo-accounts.txt"
    write_accounts(path, accounts, svc.settings.base_dn, svc.settings.uris[0])
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert accounts.admin.password in path.read_text(encoding="utf-8")
