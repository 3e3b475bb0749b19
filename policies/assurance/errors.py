"""The assurance policy's errors: one tree, each naming the key that is wrong.

Raised while a policy file is loaded (never later), so a bad edit stops the
start-up instead of weakening a decision at run time.
"""

from __future__ import annotations

from policies.assurance.terms import KNOWN_METHODS, LEVELS


class PolicyError(ValueError):
    """The assurance policy file is missing or malformed (raised at load, never later)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"assurance policy {key}: {reason}")


class UnknownMethod(PolicyError):
    def __init__(self, key: str, method: object) -> None:
        self.method = method
        super().__init__(key, f"unknown method {method!r} (known: {sorted(KNOWN_METHODS)})")


class LevelOutOfRange(PolicyError):
    def __init__(self, key: str, level: object) -> None:
        self.level = level
        super().__init__(key, f"level {level!r} is not one of {list(LEVELS)}")


class MissingSetting(PolicyError):
    def __init__(self, key: str) -> None:
        super().__init__(key, "missing")


class BadValue(PolicyError):
    pass
