"""The audit sink the directory writes to (implemented by ``pki.audit``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class AuditSink(Protocol):
    def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, str] | None = None,
    ) -> None:
        """Append one record; raise if it could not be written durably."""
        ...
