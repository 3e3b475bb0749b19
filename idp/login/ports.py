"""The small interfaces the IdP needs from the layers below it.

The composition root (``idp.runtime.services``) wires the directory service into these;
unit tests of pure logic may pass a fake. Nothing here imports python-ldap.
"""

from __future__ import annotations

from typing import Protocol

from directory.model import AuthOutcome, Person


class Authenticator(Protocol):
    """Checks a password with the directory (a bind under ppolicy)."""

    def authenticate(self, uid: str, password: str) -> AuthOutcome: ...


class PersonLookup(Protocol):
    """Finds a person by the stable ``entryUUID`` (the token ``sub``)."""

    def person_by_uuid(self, entry_uuid: str) -> Person | None: ...


class AuditSink(Protocol):
    def record(self, *, actor: str, action: str, target: str,
               details: dict[str, str] | None = None) -> None: ...
