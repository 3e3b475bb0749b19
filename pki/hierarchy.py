"""The CA hierarchy: the root and issuing CA certificates, their keys, the audit head.

:class:`CAHierarchy` holds what every part of the authority shares (record store,
key store, settings, clock) and answers which CA certificate and key are current.
Issuance (``pki.issuance``) and revocation with CRLs (``pki.revocation``) build on
it; ``pki.authority.CertificateAuthority`` puts them together, as step-ca keeps
one authority with a file per concern.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from pki import sm2
from pki.assemble import sign_certificate
from pki.audit import SignedHead, head_message
from pki.certs import issuing_builder, root_builder
from pki.errors import NotInitialized, RootKeyError, RootKeyProblem
from pki.interfaces import AuditHead, CertificateStore
from pki.keys import KeyAlgorithm, KeyStore, Signer, verify_signature
from pki.model import AuditEntry, CACertificate, CARole, CASettings, HierarchyName, serial_hex
from pki.publish import CertificatePublisher, UnwiredPublisher

ISSUING = "issuing"
ROOT = "root"


@dataclass(frozen=True)
class CAInfo:
    role: CARole
    subject: str
    serial: str
    not_before: datetime
    not_after: datetime
    sha256: str
    key_label: str
    key_algorithm: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role.value, "subject": self.subject, "serial": self.serial,
                "not_before": self.not_before.isoformat(),
                "not_after": self.not_after.isoformat(), "sha256": self.sha256,
                "key_label": self.key_label, "key_algorithm": self.key_algorithm}


def utc_now() -> datetime:
    return datetime.now(UTC)


def certificate_key(cert: x509.Certificate) -> CertificatePublicKeyTypes:
    """A certificate's public key; SM2 keys through ``pki.sm2`` (pyca cannot load them)."""
    der_bytes = cert.public_bytes(serialization.Encoding.DER)
    if cert.public_key_algorithm_oid.dotted_string == sm2.EC_PUBLIC_KEY_OID:
        try:
            return sm2.certificate_public_key(der_bytes)
        except sm2.SM2Error:
            pass  # another curve: pyca/cryptography's own key
    return cert.public_key()


def _info(role: CARole, ca: CACertificate, cert: x509.Certificate) -> CAInfo:
    fp = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    return CAInfo(role, cert.subject.rfc4514_string(), ca.serial, ca.not_before, ca.not_after,
                  fp, ca.key_label, KeyAlgorithm.of(certificate_key(cert)).value)



class CAHierarchy:
    """One root and one issuing CA, as the record store knows them.

    ``settings.hierarchy`` says which: the default one, or the SM2 one whose roles,
    key labels, CRLs and URLs are named ``sm2-...`` in the same stores.
    """

    def __init__(self, store: CertificateStore, keys: KeyStore, settings: CASettings, *,
                 publisher: CertificatePublisher | None = None,
                 audit: AuditHead | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.keys = keys
        self.settings = settings
        self.publisher: CertificatePublisher = publisher or UnwiredPublisher()
        self.audit = audit
        self._clock = clock
        self._lock = threading.RLock()
        self._ca: dict[CARole, tuple[CACertificate, x509.Certificate]] = {}

    def now(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    @property
    def initialized(self) -> bool:
        return self.store.current_ca(self.settings.role(CARole.ISSUING)) is not None

    @property
    def name(self) -> HierarchyName:
        return self.settings.hierarchy

    def _create_ca_certificates(self, actor: str, root_keys: KeyStore | None = None) -> None:
        """Create the root and the issuing CA certificates where missing; the root
        key in ``root_keys`` (an offline medium) when given, else in the home's."""
        root_store = root_keys if root_keys is not None else self.keys
        with self._lock:
            alg = self.settings.key_algorithm
            now = self.now()
            root_role = self.settings.role(CARole.ROOT)
            issuing_role = self.settings.role(CARole.ISSUING)
            if self.store.current_ca(root_role) is None:
                label = self.settings.name(CARole.ROOT)
                signer = (root_store.create(label, alg) if root_keys is not None
                          else self._new_key(label, alg))
                cert = sign_certificate(root_builder(signer.public_key(), self.settings, now),
                                        signer)
                self._save_ca(root_role, label, cert, actor)
            if self.store.current_ca(issuing_role) is None:
                label = self.settings.name(CARole.ISSUING)
                signer = self._new_key(label, alg)
                root_cert = self.certificate(root_role)
                cert = sign_certificate(
                    issuing_builder(signer.public_key(), root_cert, self.settings, now),
                    root_store.get(self._ca_record(root_role).key_label), root_cert)
                self._save_ca(issuing_role, label, cert, actor)

    def _new_key(self, label: str, alg: KeyAlgorithm) -> Signer:
        # A key left by an interrupted init (key made, certificate not recorded) is reused.
        return self.keys.get(label) if self.keys.exists(label) else self.keys.create(label, alg)

    def _save_ca(self, role: CARole, label: str, cert: x509.Certificate, actor: str,
                 action: str = "ca.create") -> None:
        ca = CACertificate(role, label, serial_hex(cert.serial_number),
                           cert.public_bytes(serialization.Encoding.DER),
                           cert.not_valid_before_utc, cert.not_valid_after_utc)
        self.store.add_ca(ca, AuditEntry(actor, action, f"ca:{role.value}", {
            "serial": ca.serial, "subject": cert.subject.rfc4514_string(),
            "hierarchy": self.name.value,
            "sha256": cert.fingerprint(hashes.SHA256()).hex()}), self.now())
        self._ca.pop(role, None)

    def _ca_record(self, role: CARole) -> CACertificate:
        with self._lock:
            hit = self._ca.get(role)
            if hit is None or role.kind is CARole.OCSP:
                ca = self.store.current_ca(role)
                if ca is None:
                    raise NotInitialized(role.value)
                hit = (ca, x509.load_der_x509_certificate(ca.der))
                self._ca[role] = hit
            return hit[0]

    def certificate(self, role: CARole) -> x509.Certificate:
        self._ca_record(role)
        return self._ca[role][1]

    @property
    def root_certificate(self) -> x509.Certificate:
        return self.certificate(self.settings.role(CARole.ROOT))

    @property
    def issuing_certificate(self) -> x509.Certificate:
        return self.certificate(self.settings.role(CARole.ISSUING))

    def issuing_signer(self) -> Signer:
        return self.keys.get(self._ca_record(self.settings.role(CARole.ISSUING)).key_label)

    def root_signer(self) -> Signer:
        """The root key from the home's key store; :class:`RootKeyError` when it is
        kept offline (``init --offline-root``): only the ceremony signs with it."""
        label = self._ca_record(self.settings.role(CARole.ROOT)).key_label
        if not self.keys.exists(label):
            raise RootKeyError(RootKeyProblem.OFFLINE, "the root key is not in this home; "
                               "sign at the root ceremony with --root-key MEDIUM/"
                               f"{label}.key.pem")
        return self.keys.get(label)

    @property
    def root_key_in_home(self) -> bool:
        """Whether the home's key store holds the root key (False: kept offline)."""
        return self.keys.exists(self._ca_record(self.settings.role(CARole.ROOT)).key_label)

    def hierarchy(self) -> list[CAInfo]:
        """This hierarchy's root, issuing CA and OCSP responder, as recorded."""
        out = []
        for role in (self.settings.role(CARole.ROOT), self.settings.role(CARole.ISSUING),
                     self.settings.role(CARole.OCSP)):
            ca = self.store.current_ca(role)
            if ca is not None:
                out.append(_info(role, ca, x509.load_der_x509_certificate(ca.der)))
        return out

    def urls(self) -> dict[str, str]:
        s = self.settings
        return {"crl": s.crl_url, "delta_crl": s.delta_crl_url, "ocsp": s.ocsp_url,
                "issuing_ca": s.issuing_ca_url, "root_ca": s.root_ca_url,
                "root_crl": s.root_crl_url}

    # -- the audit log's signed head ---------------------------------------------
    def sign_audit_head(self) -> SignedHead | None:
        if self.audit is None:
            return None
        return self.audit.sign_head(self.issuing_signer().sign)

    def verify_audit_head(self, head: SignedHead) -> bool:
        return verify_signature(self.issuing_certificate.public_key(), head.signature,
                                head_message(head.seq, head.hash))


