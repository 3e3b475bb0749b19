"""The directory's exception tree. Subclasses carry data; never match on text."""

from __future__ import annotations


class DirectoryError(Exception):
    """Base of every error the directory package raises."""


class DirectoryUnavailable(DirectoryError):
    """No configured directory server answered."""

    def __init__(self, uris: tuple[str, ...], cause: str = "") -> None:
        self.uris = uris
        self.cause = cause
        suffix = f": {cause}" if cause else ""
        super().__init__(f"no directory server answered ({', '.join(uris)}){suffix}")


class NotFound(DirectoryError):
    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} not found: {key}")


class AlreadyExists(DirectoryError):
    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} already exists: {key}")


class InvalidValue(DirectoryError):
    """A value that may not be stored: bad uid characters, oversized, empty."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class InvalidTransition(DirectoryError):
    """E.g. restoring a person who has left."""

    def __init__(self, uid: str, current: str, wanted: str) -> None:
        self.uid = uid
        self.current = current
        self.wanted = wanted
        super().__init__(f"{uid}: cannot go from {current} to {wanted}")


class ImportRejected(DirectoryError):
    """An import file had bad rows; nothing was imported."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        self.errors = errors  # (line number, reason)
        lines = "; ".join(f"line {n}: {r}" for n, r in errors[:20])
        super().__init__(f"{len(errors)} bad row(s), nothing imported: {lines}")


class WeakPassword(DirectoryError):
    """A new password breaks the password policy; ``reasons`` are the rules it breaks."""

    def __init__(self, uid: str, reasons: tuple[str, ...]) -> None:
        self.uid = uid
        self.reasons = reasons
        super().__init__(f"{uid}: password refused ({', '.join(reasons)})")


class WrongPassword(DirectoryError):
    """The current password given with a change is not the person's (or the account
    is locked: the caller is not told which)."""

    def __init__(self, target: str) -> None:
        self.target = target
        super().__init__(f"{target}: wrong current password")


class SlapdFailed(DirectoryError):
    """The managed slapd could not be configured, started or stopped."""

    def __init__(self, step: str, cause: str) -> None:
        self.step = step
        self.cause = cause
        super().__init__(f"managed slapd: {step} failed: {cause}")


class DirectoryRefused(DirectoryError):
    """slapd refused an operation (constraint, access, policy); ``code`` is its result name."""

    def __init__(self, operation: str, target: str, code: str, info: str = "") -> None:
        self.operation = operation
        self.target = target
        self.code = code
        self.info = info
        super().__init__(f"{operation} {target}: {code}{': ' + info if info else ''}")
