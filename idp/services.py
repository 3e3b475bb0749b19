"""The composition root: builds every service from one ``Config``, lazily.

Nothing here runs at import time. The ``govtrust`` command and ``govtrust serve``
make one ``Services`` and pass it (or what it builds) down.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from idp.config import Config

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from idp.outbox import Outbox
    from pki.audit import ChainReport
    from pki.audit_store import AuditLog


class Services:
    def __init__(self, config: Config, *, json_output: bool = False) -> None:
        self.config = config
        self.json = json_output

    @cached_property
    def engine(self) -> Engine:
        from idp.db import make_engine

        return make_engine(self.config.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        from idp.db import session_factory

        return session_factory(self.engine)

    @cached_property
    def audit(self) -> AuditLog:
        from pki.audit_store import AuditLog

        return AuditLog(self.sessions)

    @cached_property
    def outbox(self) -> Outbox:
        from idp.outbox import Outbox

        return Outbox(self.sessions)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()

    def verify_audit(self) -> ChainReport:
        """Verify the chain against the last head the CA signed (if any)."""
        return self.audit.verify(self.audit.signed_head())
