"""The certificate authority service: hierarchy, issuance, revocation, CRLs, OCSP.

:class:`CertificateAuthority` is framework-free: it takes a record store, a key
store, settings and a publisher, and returns values or raises ``PKIError``.
Everything it issues or changes is recorded (with its audit record, in one
transaction) before it is returned, published or reflected in a CRL or OCSP.

One authority, a module per concern: ``pki.hierarchy`` (root and issuing CA),
``pki.issuance`` (certificates), ``pki.revocation`` (status changes and CRLs);
this module adds what needs all three: initialisation, the delegated OCSP
responder and the scheduled refresh.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from pki import offline
from pki.assemble import sign_certificate
from pki.audit import SignedHead
from pki.certs import issuing_builder
from pki.csr import check_key
from pki.errors import KeyStoreError, PKIError, RootKeyError, RootKeyProblem
from pki.hierarchy import ISSUING, ROOT, CAInfo, utc_now
from pki.interfaces import AuditHead, CertificateStore
from pki.issuance import Issuance, IssuedCertificate, IssuedKeyPair
from pki.keys import KeyStore, Signer
from pki.model import (
    AuditEntry,
    CACertificate,
    CARole,
    CASettings,
    CRLRecord,
    HierarchyName,
    OwnerKind,
)
from pki.ocsp import OCSPResponder
from pki.publish import CertificatePublisher
from pki.revocation import Revocation

__all__ = ["ISSUING", "ROOT", "CAInfo", "CertificateAuthority", "IssuedCertificate",
           "IssuedKeyPair", "KeyStatus"]


@dataclass(frozen=True)
class KeyStatus:
    """Whether one CA key can be reached in the key store (for ``/readyz``).

    ``reason`` is empty when ``available``; otherwise it says what is wrong
    (the :class:`pki.errors.KeyStoreError` reason, or that no CA is recorded).
    """

    hierarchy: HierarchyName
    role: CARole
    label: str
    available: bool
    reason: str = ""

    def as_dict(self) -> dict[str, str | bool]:
        return {"hierarchy": self.hierarchy.value, "role": self.role.value,
                "label": self.label, "available": self.available, "reason": self.reason}


class CertificateAuthority(Issuance, Revocation):
    """One root, one issuing CA and its delegated OCSP responder.

    With ``settings.sm2`` the authority of the default hierarchy also holds the
    SM2 one (:attr:`sm2`), over the same record store, key store, publisher and
    audit log: a status change by serial goes to the certificate's own hierarchy.
    """

    def __init__(self, store: CertificateStore, keys: KeyStore, settings: CASettings, *,
                 publisher: CertificatePublisher | None = None,
                 audit: AuditHead | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(store, keys, settings, publisher=publisher, audit=audit, clock=clock)
        self._ocsp: tuple[x509.Certificate, Signer, datetime] | None = None
        self._responder: OCSPResponder | None = None
        self.peers: dict[HierarchyName, Revocation] = {}
        self._sm2: CertificateAuthority | None = None
        if settings.sm2 and settings.hierarchy is HierarchyName.ECDSA:
            peer = CertificateAuthority(store, keys, settings.for_sm2(),
                                        publisher=self.publisher, audit=audit, clock=clock)
            self._sm2 = peer
            self.peers[HierarchyName.SM2] = peer
            peer.peers[HierarchyName.ECDSA] = self

    @property
    def sm2(self) -> CertificateAuthority:
        """The SM2 hierarchy beside this one (``[pki] sm2 = true``)."""
        if self.settings.hierarchy is HierarchyName.SM2:
            return self
        if self._sm2 is None:
            raise PKIError("the SM2 hierarchy is not configured ([pki] sm2 = true)")
        return self._sm2

    def sign_audit_head(self) -> SignedHead | None:
        # One signer for the audit head: the default hierarchy's issuing CA, which
        # `govtrust audit verify` checks it against (an SM2 CRL also moves the head).
        default = self.peers.get(HierarchyName.ECDSA)
        if self.name is HierarchyName.SM2 and isinstance(default, CertificateAuthority):
            return default.sign_audit_head()
        return super().sign_audit_head()

    def hierarchy_of(self, name: HierarchyName) -> CertificateAuthority:
        """This authority or its SM2 peer, by hierarchy name."""
        return self.sm2 if name is HierarchyName.SM2 else self

    def authorities(self) -> list[CertificateAuthority]:
        """Every configured hierarchy's authority, the default one first."""
        return [self] + ([self._sm2] if self._sm2 is not None else [])

    def initialize(self, actor: str = "init", root_keys: KeyStore | None = None
                   ) -> list[CAInfo]:
        """Create what is missing of root, issuing CA, OCSP responder and first CRLs
        (of every configured hierarchy).

        With ``root_keys`` (``pki.offline.medium_store``) each root key is created
        there, never in the home, and signs the issuing CA and the root's first CRL
        (``root_crl_lifetime`` long) before it leaves with its medium.
        """
        out: list[CAInfo] = []
        for authority in self.authorities():
            with authority._lock:
                authority._create_ca_certificates(actor, root_keys)
                root_name = authority.settings.name(CARole.ROOT)
                if root_keys is not None and authority.store.latest_crl(root_name,
                                                                        False) is None:
                    authority.generate_root_crl(actor, root_keys.get(root_name))
                authority.ocsp_credentials(actor)
                authority._refresh_own(actor)
                out += authority.hierarchy()
        return out

    # -- the root ceremony (the root key brought from its offline medium) ---------
    def authority_of_root(self, root: Signer) -> CertificateAuthority:
        """The hierarchy whose root certificate ``root`` is the key of; refused
        (``OTHER_CA``) when none is: a medium of another CA, or another key."""
        for authority in self.authorities():
            if offline.matches(root, authority.root_certificate):
                return authority
        raise RootKeyError(RootKeyProblem.OTHER_CA, "this key is not the key of this home's "
                           "root CA certificate (a medium of another CA?)")

    def ceremony_issue_ca(self, root: Signer, actor: str) -> CAInfo:
        """A new issuing CA signed by ``root``: its key made in the home's key store,
        its certificate recorded (and audited) as the current issuing CA; the OCSP
        responder and the issuing CRLs are renewed under it right away."""
        authority = self.authority_of_root(root)
        with authority._lock:
            settings = authority.settings
            now = authority.now()
            label = f"{settings.name(CARole.ISSUING)}-{now:%Y%m%d%H%M%S}-" \
                    f"{secrets.token_hex(3)}"
            signer = authority.keys.create(label, settings.key_algorithm)
            root_cert = authority.root_certificate
            cert = sign_certificate(issuing_builder(signer.public_key(), root_cert, settings,
                                                    now), root, root_cert)
            role = settings.role(CARole.ISSUING)
            authority._save_ca(role, label, cert, actor, action="ca.ceremony.issue_ca")
            # The responder was certified by the previous issuing CA: certify a new one.
            authority._ocsp = None
            authority._responder = None
            authority._renew_ocsp(actor)
            authority.generate_crl(delta=False, actor=actor)
            authority.generate_crl(delta=True, actor=actor)
            return next(i for i in authority.hierarchy() if i.role is role)

    def ceremony_root_crl(self, root: Signer, actor: str) -> CRLRecord:
        """The root's CRL signed by ``root`` (valid ``[pki] root_crl_days``)."""
        return self.authority_of_root(root).generate_root_crl(actor, root)

    def hierarchies(self) -> list[tuple[HierarchyName, list[CAInfo], dict[str, str]]]:
        """Each configured hierarchy with its CA certificates and URLs."""
        return [(a.name, a.hierarchy(), a.urls()) for a in self.authorities()]

    def key_status(self) -> list[KeyStatus]:
        """Each CA key of every configured hierarchy (root, issuing CA, OCSP
        responder), and whether the key store can reach it now.

        A readiness check calls this: it names the missing key instead of failing
        the first issuance. It asks the key store (a PKCS#11 store looks the key
        up in the token); a database error propagates, the database being a
        readiness check of its own.
        """
        out: list[KeyStatus] = []
        for authority in self.authorities():
            for kind in (CARole.ROOT, CARole.ISSUING, CARole.OCSP):
                role = authority.settings.role(kind)
                ca = authority.store.current_ca(role)
                if ca is None:
                    out.append(KeyStatus(authority.name, role, "", False,
                                         "no CA certificate recorded: run govtrust init"))
                    continue
                try:
                    authority.keys.get(ca.key_label)
                except KeyStoreError as exc:
                    out.append(KeyStatus(authority.name, role, ca.key_label, False, exc.reason))
                else:
                    out.append(KeyStatus(authority.name, role, ca.key_label, True))
        return out

    # -- the delegated OCSP responder (RFC 6960 §4.2.2.2) ----------------------
    def ocsp_credentials(self, actor: str = "system") -> tuple[x509.Certificate, Signer]:
        """The current responder certificate and key, renewed within 1/3 of its end."""
        with self._lock:
            now = self.now()
            cached = self._ocsp
            if cached is not None and now < cached[2]:
                return cached[0], cached[1]
            role = self.settings.role(CARole.OCSP)
            ca = self.store.current_ca(role)
            if ca is None or now >= ca.not_after - (ca.not_after - ca.not_before) / 3:
                self._renew_ocsp(actor)
                ca = self.store.current_ca(role)
                assert ca is not None
            cert = x509.load_der_x509_certificate(ca.der)
            renew_at = ca.not_after - (ca.not_after - ca.not_before) / 3
            try:
                signer = self.keys.get(ca.key_label)
            except KeyStoreError:
                # The token went away: keep the signer in hand while it is the same
                # responder (a later sign fails with KeyStoreError, and the responder
                # keeps serving what it has pre-signed).
                if cached is None or cached[0].serial_number != int(ca.serial, 16):
                    raise
                signer = cached[1]
            # Re-read at most every minute so other nodes' renewals are picked up.
            self._ocsp = (cert, signer, min(now + timedelta(minutes=1), renew_at))
            return cert, signer

    def reload_ocsp_credentials(self) -> None:
        """Re-read the responder certificate on next use (another node renewed it)."""
        with self._lock:
            self._ocsp = None

    def _renew_ocsp(self, actor: str) -> None:
        profile = self.profile("ocsp-signing")
        label = f"{self.settings.name(CARole.OCSP)}-{self.now():%Y%m%d%H%M%S}-" \
                f"{secrets.token_hex(3)}"
        signer = self.keys.create(label, self.settings.key_algorithm)
        key_kind, _ = check_key(signer.public_key(), profile)
        issued = self._issue(profile, signer.public_key(), key_kind,
                             owner=(OwnerKind.CA, self.settings.name(CARole.OCSP), ""),
                             person=None, dns_names=(), actor=actor, hardware_key=False)
        cert = issued.certificate
        role = self.settings.role(CARole.OCSP)
        ca = CACertificate(role, label, issued.record.serial, issued.record.der,
                           cert.not_valid_before_utc, cert.not_valid_after_utc)
        self.store.add_ca(ca, AuditEntry(actor, "ca.ocsp_renew", f"ca:{role.value}", {
            "serial": ca.serial, "key_label": label, "hierarchy": self.name.value}),
            self.now())

    @property
    def responder(self) -> OCSPResponder:
        with self._lock:
            if self._responder is None:
                name = self.name
                self._responder = OCSPResponder(
                    self.issuing_certificate, lambda serial: self.store.status(serial, name),
                    self.ocsp_credentials,
                    lifetime=self.settings.ocsp_response_lifetime,
                    cache_size=self.settings.ocsp_cache_size, clock=self._clock,
                    generation=self.store.status_generation)
            return self._responder

    # -- the scheduler's round ---------------------------------------------------
    def refresh_if_due(self, actor: str = "scheduler") -> list[str]:
        """Renew what is due in every hierarchy: the OCSP responder, full, delta and
        root CRLs (the SM2 hierarchy's named ``sm2-...``)."""
        done: list[str] = []
        for authority in self.authorities():
            prefix = "sm2-" if authority.name is HierarchyName.SM2 else ""
            done += [prefix + item for item in authority._refresh_own(actor)]
        return done

    def _refresh_own(self, actor: str) -> list[str]:
        done = []
        role = self.settings.role(CARole.OCSP)
        before = self.store.current_ca(role)
        self.ocsp_credentials(actor)
        after = self.store.current_ca(role)
        if after is not None and (before is None or before.serial != after.serial):
            done.append("ocsp-responder")
        return done + self._refresh_crls(actor)
