"""The vocabulary every assurance module shares: methods, levels and the enums.

``pwd``, ``otp``, ``swk`` and ``hwk`` are the RFC 8176 section 2 ``amr`` values a
session can have done; ``mfa`` is derived from them, never done. The levels are
GB/T 22239-2019's protection levels 1-4. Enums, not text: the web edge turns
them into words.
"""

from __future__ import annotations

import enum

LEVELS = (1, 2, 3, 4)
# RFC 8176 section 2: "mfa" says two or more factors were used; it is derived, never done.
MFA = "mfa"
# The order a stored amr is written in (SessionFacts.amr).
METHOD_ORDER = ("pwd", "otp", "swk", "hwk")
KNOWN_METHODS = frozenset(METHOD_ORDER)
PASSWORD = "pwd"


class InfoClass(enum.StrEnum):
    PUBLIC = "public"  # 社会公开类
    SHARED = "shared"  # 部门共享类
    RESTRICTED = "restricted"  # 依法专用类


class Needs(enum.StrEnum):
    NONE = "none"
    DEPARTMENTS = "departments"
    GROUP = "group"


class Contact(enum.StrEnum):
    SECURITY_ADMIN = "security_admin"
    PERSONNEL_OFFICE = "personnel_office"
    APP_OWNER = "app_owner"
    GROUP_ADMIN = "group_admin"

    @property
    def message_key(self) -> str:
        """The key of the words saying whom to ask (``contact.app_owner``)."""
        return f"contact.{self.value}"


class DenyReason(enum.StrEnum):
    SUSPENDED = "suspended"
    LEFT = "left"
    DEPARTMENT_NOT_ALLOWED = "department_not_allowed"
    NOT_IN_GROUP = "not_in_group"
    APP_MISCONFIGURED = "app_misconfigured"
    LEVEL_UNAVAILABLE = "level_unavailable"

    @property
    def message_key(self) -> str:
        """The key of the explanation in ``idp.web.catalog`` (``deny.suspended``)."""
        return f"deny.{self.value}"


class WithoutEstablishedFactor(enum.StrEnum):
    """What self-service issuance does when the session shows no established factor."""

    APPROVAL = "approval"  # an administrator approves the request (registration authority)
    DENY = "deny"


class IssuanceDenyReason(enum.StrEnum):
    NOT_SELF_SERVICE = "not_self_service"  # the profile is not offered in the console
    VERIFY_FIRST = "verify_first"  # the person holds an established factor: use it first
    NO_ESTABLISHED_FACTOR = "no_established_factor"  # and the policy offers no approval

    @property
    def message_key(self) -> str:
        return f"issuance.{self.value}"
