"""Values of the directory: people, departments, groups and login outcomes."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PersonStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    LEFT = "left"


@dataclass(frozen=True)
class Person:
    """A civil servant as the directory holds them.

    ``entry_uuid`` is slapd's ``entryUUID``: stable for the entry's life, so it
    is what tokens use as ``sub`` and what certificates are recorded against.
    ``department`` is the path from the top, e.g. ``("市财政局", "预算处")``.
    """

    uid: str
    dn: str
    entry_uuid: str
    display_name: str
    department: tuple[str, ...]
    title: str = ""
    email: str = ""
    mobile: str = ""
    employee_number: str = ""
    clearance: int = 0
    status: PersonStatus = PersonStatus.ACTIVE
    preferred_language: str = "zh-CN"
    groups: tuple[str, ...] = ()

    @property
    def department_path(self) -> str:
        return "/".join(self.department)

    @property
    def is_active(self) -> bool:
        return self.status is PersonStatus.ACTIVE


@dataclass(frozen=True)
class Department:
    path: tuple[str, ...]
    dn: str
    description: str = ""

    @property
    def name(self) -> str:
        return self.path[-1]


@dataclass(frozen=True)
class Group:
    name: str
    dn: str
    members: tuple[str, ...] = ()  # uids
    description: str = ""


class AuthResult(enum.StrEnum):
    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"
    LOCKED = "locked"
    PASSWORD_EXPIRED = "password_expired"
    # An administrator set the password (ppolicy pwdReset): its owner must change it.
    MUST_CHANGE = "must_change"
    SUSPENDED = "suspended"
    LEFT = "left"
    UNAVAILABLE = "directory_unavailable"


@dataclass(frozen=True)
class AuthOutcome:
    """What ``authenticate`` found. ``person`` is set only when ``result`` is OK
    (and, for SUSPENDED/LEFT, so the caller can audit whom it refused)."""

    result: AuthResult
    person: Person | None = None
    # ppolicy's grace logins / seconds before expiration, when slapd sent them.
    grace_logins_left: int | None = None
    expires_in: int | None = None

    @property
    def ok(self) -> bool:
        return self.result is AuthResult.OK
