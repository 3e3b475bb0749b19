"""How directory values map onto LDAP attributes (pure; no python-ldap here).

A person is an ``inetOrgPerson`` (RFC 2798) with our auxiliary ``govPerson``
class. Attribute values are handled as ``dict[str, list[str]]`` (decoded UTF-8);
the gateway does the bytes and the DNs. Import compares the attributes listed in
``MANAGED`` only, so operational and policy attributes never count as changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from directory.model import Person, PersonStatus
from directory.validate import parse_clearance
from policies.passwords import PasswordPolicy

Attrs = dict[str, list[str]]
Change = tuple[str, str, list[str] | None]  # ("add"|"delete"|"replace", attribute, values)

PERSON_CLASSES = ["top", "person", "organizationalPerson", "inetOrgPerson", "govPerson"]
# What GovTrust owns on a person entry, and so what an import may change.
MANAGED = ("cn", "sn", "givenName", "displayName", "mail", "mobile", "title",
           "employeeNumber", "govClearance", "govStatus", "govDepartmentPath", "ou",
           "preferredLanguage")
# What a lookup reads: the managed values plus identity and state.
READ = [*MANAGED, "uid", "entryUUID", "memberOf", "pwdAccountLockedTime"]

# Two-character surnames, so 欧阳修 gets sn 欧阳 and givenName 修.
_COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 "
    "宇文 司徒 令狐 夏侯 轩辕 端木 独孤 南宫 西门 万俟".split())
# A "LOCKED" time that never expires: ppolicy's administrative lock.
ADMIN_LOCK = "000001010000Z"


def split_name(name: str) -> tuple[str, str]:
    """(surname, given name) of a Chinese name; the whole name as surname otherwise."""
    if len(name) >= 2 and all("\u4e00" <= c <= "\u9fff" for c in name):
        n = 2 if name[:2] in _COMPOUND_SURNAMES and len(name) > 2 else 1
        return name[:n], name[n:]
    return name, ""


def person_attributes(*, uid: str, name: str, department: Sequence[str], title: str = "",
                      email: str = "", mobile: str = "", employee_number: str = "",
                      clearance: int = 0, status: PersonStatus = PersonStatus.ACTIVE,
                      language: str = "zh-CN") -> Attrs:
    """The managed attributes of a person; empty values are left out (LDAP has no "")."""
    sn, given = split_name(name)
    attrs: Attrs = {
        "cn": [name], "sn": [sn], "givenName": [given], "displayName": [name],
        "mail": [email], "mobile": [mobile], "title": [title],
        "employeeNumber": [employee_number], "govClearance": [str(clearance)],
        "govStatus": [status.value], "govDepartmentPath": ["/".join(department)],
        "ou": [department[-1] if department else ""], "preferredLanguage": [language],
    }
    return {k: v for k, v in attrs.items() if v and v[0] != ""}


def person_from_attributes(dn: str, attrs: Mapping[str, Sequence[str]],
                           groups: tuple[str, ...] = ()) -> Person:
    def one(name: str, default: str = "") -> str:
        values = attrs.get(name) or ()
        return values[0] if values else default

    path = one("govDepartmentPath")
    try:
        status = PersonStatus(one("govStatus", "active").lower())
    except ValueError:
        status = PersonStatus.ACTIVE
    # Written by anyone with write access to the directory: read it as strictly as import.
    clearance, _problem = parse_clearance(one("govClearance", "0"))
    return Person(
        uid=one("uid"), dn=dn, entry_uuid=one("entryUUID"),
        display_name=one("displayName") or one("cn"),
        department=tuple(path.split("/")) if path else (),
        title=one("title"), email=one("mail"), mobile=one("mobile"),
        employee_number=one("employeeNumber"), clearance=clearance, status=status,
        preferred_language=one("preferredLanguage", "zh-CN"), groups=groups,
    )


def changes(existing: Mapping[str, Sequence[str]], desired: Mapping[str, Sequence[str]],
            attributes: Sequence[str] = MANAGED) -> list[Change]:
    """The modifications that turn ``existing`` into ``desired`` on ``attributes``."""
    # LDAP attribute names are case-insensitive; results may spell them differently.
    have = {k.lower(): list(v) for k, v in existing.items()}
    want = {k.lower(): list(v) for k, v in desired.items()}
    out: list[Change] = []
    for attr in attributes:
        old, new = have.get(attr.lower(), []), want.get(attr.lower(), [])
        if sorted(old) == sorted(new):
            continue
        out.append(("replace", attr, new) if new else ("delete", attr, None))
    return out


def policy_attributes(policy: PasswordPolicy) -> dict[str, str]:
    """The ppolicy entry's attributes (draft-behera-ldap-password-policy-10 §5.2)."""
    values: dict[str, object] = {
        "pwdAttribute": "userPassword",
        "pwdMinLength": policy.min_length,
        "pwdMaxLength": policy.max_length,
        # 1: check quality when slapd sees the cleartext; an admin may set a hash.
        "pwdCheckQuality": 1,
        "pwdInHistory": policy.history,
        "pwdMaxFailure": policy.max_failures,
        "pwdLockout": "TRUE" if policy.max_failures else "FALSE",
        "pwdLockoutDuration": policy.lockout_seconds,
        "pwdFailureCountInterval": policy.failure_count_interval_seconds,
        "pwdMaxAge": policy.max_age_days * 86400,
        "pwdExpireWarning": policy.expire_warning_days * 86400,
        "pwdGraceAuthNLimit": policy.grace_logins,
        "pwdAllowUserChange": "TRUE",
        # TRUE: a password an administrator sets (pwdReset) must be changed by its
        # owner before the bind is good for anything else (changeAfterReset); the
        # writes that must not ask for a change clear pwdReset in the same modify.
        "pwdMustChange": "TRUE",
        "pwdSafeModify": "FALSE",
    }
    return {k: str(v) for k, v in values.items()}

