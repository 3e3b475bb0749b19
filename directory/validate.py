"""Checks on values before they reach the directory (pure).

Each check returns a reason (a short English phrase) or None. The uid is held to
a strict syntax because it ends up in DNs, filters, certificate subjects and
URLs; names may hold any printable text except the characters that carry
meaning in LDAP filters and DNs (RFC 4515 §3, RFC 4514 §2.4), which no real
name needs and which are refused outright rather than escaped.
"""

from __future__ import annotations

import re

UID_RE = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$")
MOBILE_RE = re.compile(r"^\+?[0-9][0-9 -]{4,19}$")
EMPLOYEE_RE = re.compile(r"^[A-Za-z0-9-]{1,32}$")
# ASCII digits only: str.isdigit() accepts "²" and int() accepts "٣" and " 3".
_ASCII_INT = re.compile(r"[0-9]{1,9}")
LDAP_SPECIAL = frozenset('*()\\,+"<>;=/#')

MAX_NAME = 64
MAX_TITLE = 128
MAX_EMAIL = 254
MAX_DEPARTMENT_DEPTH = 8
MAX_CLEARANCE = 4
MAX_QUERY = 128  # free-text search


def _control(value: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)


def uid_problem(uid: str) -> str | None:
    if "\x00" in uid:
        return "uid contains a NUL character"
    if not UID_RE.match(uid):
        return (f"uid {uid!r} is not allowed: 1-64 characters a-z 0-9 . _ -, "
                "starting with a letter")
    return None


def name_problem(name: str, field: str = "name", limit: int = MAX_NAME) -> str | None:
    if "\x00" in name:
        return f"{field} contains a NUL character"
    if not name.strip():
        return f"{field} is empty"
    if len(name) > limit:
        return f"{field} is longer than {limit} characters"
    if _control(name):
        return f"{field} contains a control character"
    bad = sorted(set(name) & LDAP_SPECIAL)
    if bad:
        return f"{field} {name!r} contains LDAP special character(s) {''.join(bad)}"
    if name != name.strip():
        return f"{field} has leading or trailing spaces"
    return None


def title_problem(title: str) -> str | None:
    if "\x00" in title:
        return "title contains a NUL character"
    if len(title) > MAX_TITLE:
        return f"title is longer than {MAX_TITLE} characters"
    if _control(title):
        return "title contains a control character"
    return None


def email_problem(email: str) -> str | None:
    if "\x00" in email:
        return "email contains a NUL character"
    if len(email) > MAX_EMAIL or not EMAIL_RE.match(email):
        return f"email {email[:80]!r} is not a valid address"
    return None


def mobile_problem(mobile: str) -> str | None:
    if mobile and not MOBILE_RE.match(mobile):
        return f"mobile {mobile[:40]!r} is not a phone number"
    return None


def employee_number_problem(value: str) -> str | None:
    if value and not EMPLOYEE_RE.match(value):
        return f"employee_number {value[:40]!r} must be 1-32 letters, digits or -"
    return None


def group_problem(name: str) -> str | None:
    if not GROUP_RE.match(name):
        return f"group {name[:80]!r} is not allowed: 1-64 characters A-Z a-z 0-9 . _ -"
    return None


def parse_department(path: str) -> tuple[tuple[str, ...], str | None]:
    """``"市财政局/预算处"`` → ``("市财政局", "预算处")``, or a reason."""
    if "\x00" in path:
        return (), "department contains a NUL character"
    parts = tuple(p.strip() for p in path.strip().strip("/").split("/"))
    if not parts or parts == ("",):
        return (), "department is empty"
    if len(parts) > MAX_DEPARTMENT_DEPTH:
        return (), f"department is deeper than {MAX_DEPARTMENT_DEPTH} levels"
    for part in parts:
        problem = name_problem(part, "department")
        if problem:
            return (), problem
    return parts, None


def parse_ascii_int(value: str) -> int | None:
    """A non-negative integer written in ASCII digits (at most 9), else None."""
    return int(value) if _ASCII_INT.fullmatch(value) else None


def parse_clearance(value: str) -> tuple[int, str | None]:
    if value == "":
        return 0, None
    number = parse_ascii_int(value)
    if number is None or not 0 <= number <= MAX_CLEARANCE:
        return 0, f"clearance {value[:20]!r} must be an integer 0-{MAX_CLEARANCE}"
    return number, None
