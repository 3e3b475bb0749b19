"""The IdP's own error tree (protocol errors are authlib's ``OAuth2Error`` classes)."""

from __future__ import annotations


class IdPError(Exception):
    """Base of every IdP error that is not an OAuth 2.0 protocol error."""


class InvalidClientMetadata(IdPError, ValueError):
    """A client registration value is refused; ``field`` names which one."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class UnknownClient(IdPError, LookupError):
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        super().__init__(f"no client {client_id!r}")


class NoSigningKey(IdPError, LookupError):
    def __init__(self, alg: str) -> None:
        self.alg = alg
        super().__init__(f"no active {alg} signing key (run govtrust init)")
