"""The OpenID provider assembled: every IdP service the web edge uses, in one value.

Built by ``idp.runtime.services.Services.provider`` from the configuration (or directly
by tests). Holds no per-request state; everything it remembers is in the database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from idp.login.forwarded import TrustedProxies
from idp.login.passwords import PasswordChanger
from idp.login.ports import AuditSink, Authenticator
from idp.login.sessions import SessionStore
from idp.login.stepup import StrongAuth
from idp.login.throttle import Throttle
from idp.oidc.clients import ClientRepository
from idp.oidc.keys import KeyStore
from idp.oidc.logout import Logout
from idp.oidc.server import Core, Server
from idp.oidc.tables import consents
from idp.oidc.tokens import TokenService


@dataclass
class Provider:
    issuer: str
    db: sessionmaker[Session]
    keys: KeyStore
    clients: ClientRepository
    tokens: TokenService
    sessions: SessionStore
    logout: Logout
    throttle: Throttle
    authenticator: Authenticator
    audit: AuditSink | None
    cookie_key: bytes
    # Whose X-Forwarded-For and certificate header are believed (idp.login.forwarded).
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    strong: StrongAuth | None = None  # certificates, one-time codes (idp.login.stepup)
    passwords: PasswordChanger | None = None  # changes at login (idp.login.passwords)
    server: Server = field(init=False)

    def __post_init__(self) -> None:
        self.server = Server(Core(self.db, self.clients, self.tokens, self.sessions))

    def has_consent(self, subject: str, client_id: str, scope: str) -> bool:
        with self.db() as s:
            row = s.execute(select(consents.c.scope).where(
                consents.c.subject == subject, consents.c.client_id == client_id)).first()
        return row is not None and set(scope.split()) <= set(row.scope.split())

    def remember_consent(self, subject: str, client_id: str, scope: str) -> None:
        with self.db.begin() as s:
            s.execute(delete(consents).where(consents.c.subject == subject,
                                             consents.c.client_id == client_id))
            s.execute(insert(consents).values(subject=subject, client_id=client_id,
                                              scope=scope, granted_at=int(time.time())))

    def audit_login(self, uid: str, result: str, address: str) -> None:
        if self.audit is not None:
            self.audit.record(actor=uid[:256], action="idp.login", target=uid[:256],
                              details={"result": result, "address": address})
