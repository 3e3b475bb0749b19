"""The composition root: builds every service from one ``Config``, lazily.

Nothing here runs at import time. The ``govtrust`` command and ``govtrust serve``
make one ``Services`` and pass it (or what it builds) down.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from idp.runtime.config import Config

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from directory.gateway import LdapGateway
    from directory.service import DirectoryService
    from directory.slapd import ManagedSlapd
    from idp.login.certificate import CertificateValidator
    from idp.login.ports import Authenticator
    from idp.login.signature import NonceStore
    from idp.login.stepup import StrongAuth
    from idp.login.totp import TotpService
    from idp.oidc.lifecycle import SessionTerminator
    from idp.oidc.provider import Provider
    from idp.runtime.changes import Change
    from idp.runtime.duties import Duties
    from idp.runtime.outbox import Outbox
    from idp.runtime.pglisten import ChangeListener
    from pki.audit import ChainReport
    from pki.audit_store import AuditLog
    from pki.authority import CertificateAuthority
    from pki.keys import KeyStore
    from pki.kmc import KeyManagementCentre
    from pki.lifecycle import CertificateLifecycle
    from pki.publish import CertificatePublisher
    from policies.assurance import AssurancePolicy


class Services:
    def __init__(self, config: Config, *, json_output: bool = False) -> None:
        self.config = config
        self.json = json_output
        self._own_slapd = False  # True when this process started the managed slapd
        self._listener: ChangeListener | None = None
        # False in served workers: only the supervisor starts the managed slapd.
        self.may_start_slapd = True

    @cached_property
    def engine(self) -> Engine:
        from idp.runtime.db import make_engine

        return make_engine(self.config.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        from idp.runtime.db import session_factory

        return session_factory(self.engine)

    @cached_property
    def audit(self) -> AuditLog:
        from pki.audit_store import AuditLog

        return AuditLog(self.sessions)

    @cached_property
    def outbox(self) -> Outbox:
        from idp.runtime.outbox import Outbox

        return Outbox(self.sessions)

    # -- the directory ---------------------------------------------------------------
    @cached_property
    def directory_gateway(self) -> LdapGateway:
        """The LDAP gateway. With a managed directory that is not running (a CLI
        command while `govtrust serve` is down), slapd runs for this process."""
        from directory.gateway import LdapGateway

        settings = self.config.directory_settings()
        if settings.managed and self.may_start_slapd and self.config.initialized \
                and self.slapd.configured:
            self._own_slapd = self.slapd.start()
        return LdapGateway(settings)

    @cached_property
    def directory(self) -> DirectoryService:
        from directory.service import DirectoryService

        return DirectoryService(self.config.directory_settings(), self.directory_gateway,
                                self.audit, self.outbox)

    @cached_property
    def slapd(self) -> ManagedSlapd:
        """The managed slapd under ``home/slapd`` (used when ``[directory] managed``)."""
        from directory.slapd import ManagedSlapd

        return ManagedSlapd(self.config.directory_settings())

    # -- the OpenID provider (idp) -------------------------------------------------
    @cached_property
    def authenticator(self) -> Authenticator:
        """Password checks: the directory's ``authenticate`` (a bind under ppolicy)."""
        return self.directory

    @cached_property
    def provider(self) -> Provider:
        """Every IdP service (keys, clients, tokens, SSO sessions, logout, throttle)."""
        from idp.login.sessions import SessionStore
        from idp.login.throttle import Throttle
        from idp.oidc.clients import ClientRepository
        from idp.oidc.keys import KeyStore, derive_passphrase
        from idp.oidc.logout import Logout
        from idp.oidc.provider import Provider
        from idp.oidc.tokens import TokenService

        idp = self.config.sections["idp"]
        issuer = str(idp["issuer"]).rstrip("/")
        cookie_key = self.config.secret_bytes("cookie-key")
        keys = KeyStore(self.sessions, derive_passphrase(cookie_key))
        clients = ClientRepository(self.sessions, self.config.secret_bytes("client-secret-key"))
        from idp.runtime.metrics import token_issued

        tokens = TokenService(self.sessions, keys, issuer, on_issued=token_issued)
        store = SessionStore(self.sessions, float(idp["session_hours"]),
                             policy=self.assurance_policy)
        # Department apps' back-channel endpoints may carry certificates from our CA.
        ca_file = self.config.home / "idp" / "tls" / "ca.pem"
        from idp.oidc.logout import make_poster

        logout = Logout(self.sessions, store, tokens, keys, clients, issuer,
                        poster=make_poster(str(ca_file) if ca_file.exists() else None))
        from directory.service import DirectoryService

        auth = self.authenticator
        return Provider(issuer=issuer, db=self.sessions, keys=keys, clients=clients,
                        tokens=tokens, sessions=store, logout=logout,
                        throttle=Throttle(self.sessions), authenticator=auth,
                        audit=self.audit, cookie_key=cookie_key,
                        trusted_proxies=self.config.trusted_proxies,
                        strong=self.strong_auth,
                        # the directory changes passwords when it checks them
                        passwords=auth if isinstance(auth, DirectoryService) else None)

    @cached_property
    def strong_auth(self) -> StrongAuth:
        """Certificates and one-time codes for the login flow, built on first use.
        People are looked up in the directory when it is the authenticator (a unit
        test's stand-in authenticator leaves the login snapshot as the only source)."""
        from directory.gateway import LdapGateway
        from directory.service import DirectoryService
        from idp.login.stepup import DirectoryPeople, StrongAuth

        auth = self.authenticator
        gateway = auth.gateway if isinstance(auth, DirectoryService) else auth
        people = DirectoryPeople(gateway) if isinstance(gateway, LdapGateway) else None
        return StrongAuth(totp=lambda: self.totp,
                          certificates=lambda: self.certificate_validator, people=people,
                          realm=str(self.config.get("directory", "realm")),
                          policy=self.assurance_policy, records=lambda: self.ca,
                          nonces=lambda: self.login_nonces)

    @cached_property
    def login_nonces(self) -> NonceStore:
        """The single-use challenges of certificate signature login, in the database."""
        from idp.login.signature import NonceStore

        return NonceStore(self.sessions)

    @cached_property
    def assurance_policy(self) -> AssurancePolicy:
        """``policies/assurance.yaml``, read once: levels, and self-service issuance."""
        from policies.assurance import load_policy

        return load_policy()

    @cached_property
    def session_terminator(self) -> SessionTerminator:
        """Subscribe this to the outbox: ends sessions of suspended/departed people."""
        from idp.oidc.lifecycle import SessionTerminator

        return SessionTerminator(self.provider.logout)

    # -- the certificate authority (pki) ---------------------------------------------
    @cached_property
    def key_store(self) -> KeyStore:
        """CA keys: encrypted PKCS#8 under home/pki/keys, or a PKCS#11 token."""
        pki = self.config.sections["pki"]
        if str(pki["key_store"]) == "pkcs11":
            from pki.pkcs11 import Pkcs11KeyStore

            return Pkcs11KeyStore(str(pki["pkcs11_module"]), str(pki["pkcs11_token"]),
                                  self.config.secret("pkcs11-pin"))
        from pki.keys import FileKeyStore

        return FileKeyStore(self.config.home / "pki" / "keys",
                            self.config.secret_bytes("ca-passphrase"))

    @cached_property
    def certificate_publisher(self) -> CertificatePublisher:
        """Certificates to ``userCertificate;binary``, CRLs under ``ou=pki``."""
        from directory.publish import DirectoryPublisher

        return DirectoryPublisher(self.directory_gateway)

    @cached_property
    def ca(self) -> CertificateAuthority:
        from pki.authority import CertificateAuthority
        from pki.model import CASettings
        from pki.store import SqlCertificateStore

        settings = CASettings.from_mapping(self.config.sections["pki"],
                                           realm=str(self.config.get("directory", "realm")))
        if settings.sm2 and str(self.config.get("pki", "key_store")) != "file":
            from idp.runtime.config import ConfigError

            # pki.pkcs11 signs ECDSA/RSA/EdDSA mechanisms only; see the README on
            # what an SM2-capable token would need.
            raise ConfigError("[pki] sm2", "the SM2 hierarchy keeps its keys in the file "
                              "key store; key_store = \"pkcs11\" has no SM2 mechanism")
        return CertificateAuthority(SqlCertificateStore(self.sessions), self.key_store,
                                    settings, publisher=self.certificate_publisher,
                                    audit=self.audit)

    @cached_property
    def kmc(self) -> KeyManagementCentre:
        """Escrowed encryption keys, sealed under a KEK beside the CA keys."""
        from pki.errors import KeyStoreError
        from pki.kek import FileKeyEncryptionKey
        from pki.kmc import KeyManagementCentre, KmcSettings
        from pki.kmc_store import SqlEscrowStore

        settings = KmcSettings.from_mapping(self.config.sections.get("kmc", {}))
        if str(self.config.get("pki", "key_store")) != "file":
            # A token KEK (CKK_AES, non-extractable, CKM_AES_GCM) is not built yet.
            raise KeyStoreError(settings.kek_label, "the KMC needs key_store = file for now")
        kek = FileKeyEncryptionKey(self.config.home / "pki" / "keys",
                                   self.config.secret_bytes("ca-passphrase"),
                                   settings.kek_label)
        return KeyManagementCentre(SqlEscrowStore(self.sessions), kek, self.ca, settings)

    @cached_property
    def certificate_lifecycle(self) -> CertificateLifecycle:
        """Subscribe this to the outbox: revokes/holds/releases on lifecycle events."""
        from pki.lifecycle import CertificateLifecycle

        return CertificateLifecycle(self.ca)

    # -- strong authentication ------------------------------------------------------
    @cached_property
    def totp(self) -> TotpService:
        """One-time codes: secrets encrypted under a key derived from ``otp-key``."""
        from idp.login.otp_store import SqlOtpStore
        from idp.login.totp import TotpService
        from policies.passwords import load_policy

        lockout = load_policy()
        return TotpService(SqlOtpStore(self.sessions), self.config.secret_bytes("otp-key"),
                           max_failures=lockout.max_failures,
                           lockout_seconds=lockout.lockout_seconds)

    @cached_property
    def certificate_validator(self) -> CertificateValidator:
        """Client-certificate login: our CA plus ``[certauth]`` external CAs (if any)."""
        from idp.login.certificate import CertificateValidator
        from idp.login.certsettings import CertAuthSettings

        section = self.config.sections.get("certauth", {})
        return CertificateValidator(self.ca, CertAuthSettings.from_mapping(section,
                                                                           self.config.home))

    # -- serving ---------------------------------------------------------------------
    def tls_server_files(self) -> tuple[Path, Path, Path]:
        """(certificate chain, key, CA bundle) for the IdP's HTTPS front."""
        from idp.runtime.tls import ensure_server_certificate

        return ensure_server_certificate(self.ca, self.config.home / "idp" / "tls",
                                         str(self.config.get("idp", "issuer")))

    @cached_property
    def event_dispatcher(self) -> Outbox:
        """The outbox with every lifecycle subscriber attached, for delivery."""
        from idp.runtime.outbox import Outbox

        return Outbox(self.sessions, [self.certificate_lifecycle, self.session_terminator])

    def deliver_events(self) -> int:
        """Settle events a crash left pending, then deliver what is owed."""
        dispatcher = self.event_dispatcher
        dispatcher.recover(self.directory.happened)
        return dispatcher.deliver()

    def background_tick(self) -> None:
        """One round of every duty, here and now (tests; ``duties`` is the runner)."""
        self.deliver_events()
        self.ca.refresh_if_due()
        self.export_public_files()
        self.provider.logout.deliver_pending()
        self.rotate_keys_if_due()

    def rotate_keys_if_due(self) -> bool:
        """Rotate the IdP signing keys once the active one is older than
        ``[idp] key_rotation_days`` (0: only by hand, ``govtrust keys rotate``)."""
        from datetime import UTC, datetime, timedelta

        days = float(self.config.get("idp", "key_rotation_days"))
        keys = self.provider.keys
        if days <= 0:
            return False
        now = datetime.now(UTC)
        for info in keys.list():
            made = info.created_at if info.created_at.tzinfo else \
                info.created_at.replace(tzinfo=UTC)
            if info.state == "active" and now - made >= timedelta(days=days):
                keys.rotate()
                return True
        return False

    @cached_property
    def duties(self) -> Duties:
        """The background duties, each run by exactly one node: the holder of its
        PostgreSQL advisory lock (on SQLite, this process). ``govtrust serve``
        ticks it in its loop; a node without a loop calls ``duties.start()``."""
        from idp.runtime.duties import Duties, Duty, LocalLocks, Locks

        locks: Locks = LocalLocks()
        if self.engine.dialect.name == "postgresql":
            from idp.runtime.pglisten import AdvisoryLocks

            locks = AdvisoryLocks(self.engine)
        from idp.runtime.metrics import duty_held

        return Duties([
            Duty("outbox", self.deliver_events, 1.0),
            Duty("pki-refresh", lambda: self.ca.refresh_if_due(), 5.0),
            Duty("logout-retries", lambda: self.provider.logout.deliver_pending(), 1.0),
            Duty("key-rotation", self.rotate_keys_if_due, 60.0),
            Duty("token-cleanup", lambda: self.provider.tokens.purge_expired(), 60.0),
        ], locks, on_change=duty_held)

    # -- changes seen everywhere at once ------------------------------------------------
    def apply_change(self, change: Change | None) -> None:
        """Drop what this process caches of ``change`` (of everything with None).
        Only services already built are touched: nothing is built for it."""
        from idp.runtime.changes import Topic

        topic = None if change is None else change.topic
        built = self.__dict__
        if "provider" in built:
            if topic in (None, Topic.CLIENT):
                self.provider.clients.invalidate(None if change is None else change.key)
            if topic in (None, Topic.SIGNING_KEY):
                self.provider.keys.invalidate()
        if "ca" in built and topic in (None, Topic.CA):
            for authority in self.ca.authorities():
                authority.reload_ocsp_credentials()

    def start_change_listener(self) -> ChangeListener | None:
        """On PostgreSQL, listen for other nodes' changes in a daemon thread (one
        per process); on SQLite there is nothing to listen to (None)."""
        if self.engine.dialect.name != "postgresql":
            return None
        if self._listener is None:
            from idp.runtime.pglisten import ChangeListener

            self._listener = ChangeListener(self.engine, self.apply_change)
            self._listener.start()
        return self._listener

    @property
    def public_folder(self) -> Path:
        """Where the PKI's public objects are written for nginx (``pki.public_files``)."""
        return self.config.home / "pki" / "public"

    def export_public_files(self, *, force: bool = False) -> bool:
        """Write CA certificates, CRLs and pre-signed OCSP responses under
        :attr:`public_folder` when a CRL changed (every status change makes one) or
        a quarter of the OCSP response lifetime passed; True when written."""
        from pki import public_files
        from pki.model import CARole

        folder = self.public_folder
        ca = self.ca
        authorities = ca.authorities()
        now = ca.now()
        # The CRL numbers name the state: every status change makes a new CRL, and
        # reading numbers each tick costs nothing next to reading the CRLs.
        numbers = []
        for authority in authorities:
            for role, delta in ((CARole.ISSUING, False), (CARole.ISSUING, True),
                                (CARole.ROOT, False)):
                rec = ca.store.latest_crl(authority.settings.name(role), delta)
                numbers.append(str(rec.number) if rec else "-")
        version = ",".join(numbers)
        last = None if force else public_files.last_export(folder)
        if last is not None:
            at, exported = last
            if exported == version and now - at < ca.settings.ocsp_response_lifetime / 4:
                return False
        public_files.export([(a, a.responder) for a in authorities],
                            ca.store.find(limit=10_000_000), folder, now, version)
        return True

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if "duties" in self.__dict__:
            self.duties.stop()
        if "directory_gateway" in self.__dict__:
            self.directory_gateway.close()
        if self._own_slapd:
            self.slapd.stop()
            self._own_slapd = False
        if "engine" in self.__dict__:
            self.engine.dispose()

    def verify_audit(self, *, sign: bool = True) -> ChainReport:
        """Verify the chain against the last head the CA signed (if any).

        The head's signature is checked with the issuing CA's key first; a head
        that does not verify is reported as such. With ``sign``, an intact log gets
        a fresh signed head, so a later truncation shows (a page that only shows
        the status passes ``sign=False``: a GET changes nothing).
        """
        from pki.audit import ChainReport, Problem

        signed = self.audit.signed_head_record()
        ca = self.ca if signed is not None or self._ca_ready() else None
        if signed is not None and ca is not None and not ca.verify_audit_head(signed):
            return ChainReport(False, 0, signed.hash, signed.seq, Problem.BAD_HEAD_SIGNATURE)
        report = self.audit.verify((signed.seq, signed.hash) if signed else None)
        if sign and report.ok and ca is not None:
            ca.sign_audit_head()
        return report

    def _ca_ready(self) -> bool:
        try:
            return self.ca.initialized
        except Exception:  # no CA (or no database) yet: verify the chain alone
            return False
