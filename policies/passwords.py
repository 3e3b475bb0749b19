"""Password and lockout policy: loaded from ``passwords.yaml``, checked in Python.

Pure: no I/O but reading its own YAML. The same values are pushed by the
directory into OpenLDAP's ppolicy overlay (draft-behera-ldap-password-policy),
so slapd enforces history and lockout even for applications that bind to it
directly; :func:`check_password` gives the friendly per-rule reasons first.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_FILE = Path(__file__).with_name("passwords.yaml")


class PasswordPolicyError(ValueError):
    """The policy file is missing a setting or has a bad value."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"password policy {key}: {reason}")


class Weakness(enum.StrEnum):
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    TOO_FEW_CLASSES = "too_few_classes"
    CONTROL_CHARACTER = "control_character"
    CONTAINS_UID = "contains_uid"


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 12
    max_length: int = 128
    min_classes: int = 3
    history: int = 5
    max_failures: int = 5
    lockout_seconds: int = 900
    failure_count_interval_seconds: int = 900
    max_age_days: int = 180
    expire_warning_days: int = 14
    grace_logins: int = 0

    def check_password(self, candidate: str, uid: str = "") -> list[Weakness]:
        """Every rule ``candidate`` breaks (empty when it is acceptable)."""
        found: list[Weakness] = []
        if len(candidate) < self.min_length:
            found.append(Weakness.TOO_SHORT)
        if len(candidate) > self.max_length:
            found.append(Weakness.TOO_LONG)
        if character_classes(candidate) < self.min_classes:
            found.append(Weakness.TOO_FEW_CLASSES)
        # Control characters break LDAP tooling and terminals; NUL truncates in C.
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in candidate):
            found.append(Weakness.CONTROL_CHARACTER)
        if uid and len(uid) >= 3 and uid.lower() in candidate.lower():
            found.append(Weakness.CONTAINS_UID)
        return found


def character_classes(candidate: str) -> int:
    classes = [
        any(c.islower() for c in candidate),
        any(c.isupper() for c in candidate),
        any(c.isdigit() for c in candidate),
        any(not c.isalnum() for c in candidate),
    ]
    return sum(classes)


_INT_FIELDS = {
    "min_length": (1, 1024),
    "max_length": (1, 4096),
    "min_classes": (1, 4),
    "history": (0, 64),
    "max_failures": (0, 1000),
    "lockout_seconds": (0, 10 * 365 * 86400),
    "failure_count_interval_seconds": (0, 10 * 365 * 86400),
    "max_age_days": (0, 3650),
    "expire_warning_days": (0, 3650),
    "grace_logins": (0, 100),
}


def parse_policy(data: Mapping[str, Any]) -> PasswordPolicy:
    """Validate a mapping (the YAML's top level) into a :class:`PasswordPolicy`."""
    if not isinstance(data, Mapping):
        raise PasswordPolicyError("<file>", "must be a mapping")
    unknown = set(data) - set(_INT_FIELDS)
    if unknown:
        raise PasswordPolicyError(sorted(unknown)[0], "unknown setting")
    values: dict[str, int] = {}
    for key, (low, high) in _INT_FIELDS.items():
        if key not in data:
            raise PasswordPolicyError(key, "missing")
        value = data[key]
        # bool is an int subclass; "true" for a length is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise PasswordPolicyError(key, f"must be an integer, got {value!r}")
        if not low <= value <= high:
            raise PasswordPolicyError(key, f"must be between {low} and {high}, got {value}")
        values[key] = value
    if values["max_length"] < values["min_length"]:
        raise PasswordPolicyError("max_length", "is below min_length")
    return PasswordPolicy(**values)


def load_policy(path: Path = DEFAULT_FILE) -> PasswordPolicy:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PasswordPolicyError(str(path), "file not found") from None
    except yaml.YAMLError as exc:
        raise PasswordPolicyError(str(path), f"not valid YAML: {exc}") from None
    return parse_policy(data)


def check_password(candidate: str, uid: str = "", policy: PasswordPolicy | None = None,
                   ) -> list[Weakness]:
    """Reasons ``candidate`` is refused under ``policy`` (default: the shipped file)."""
    return (policy or load_policy()).check_password(candidate, uid)
