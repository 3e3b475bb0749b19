"""Certificate login: validate a TLS client certificate ourselves and map it to a person.

Whatever the TLS front did (``govtrust serve`` asks for an optional certificate;
nginx runs ``ssl_verify_client optional_no_ca``), the IdP checks the certificate
here, as RFC 5280 section 6 describes: a path to a trusted CA (our issuing CA
and root, plus configured external CAs) with every signature checked, validity
now, ``keyUsage`` digitalSignature (section 4.2.1.3) and ``extKeyUsage``
clientAuth (section 4.2.1.12). Revocation comes from our own certificate store
for our certificates (so a revocation a second ago is already seen) and, for
external CAs, from OCSP (RFC 6960) at the AIA URL with the CRL distribution
point as fallback, cached, failing closed unless configured otherwise.

A certificate adds ``swk`` to the session's RFC 8176 ``amr``, or ``hwk`` when it
carries the hardware-key policy OID (``policies.profiles.HARDWARE_KEY_POLICY``);
GB/T 22239-2019 level 3 and 4 rest on it. Every refusal is a
:class:`CertificateRefused` with a :class:`Refusal` reason.

The same checks serve certificate signature login (``idp.login.signature``):
:meth:`CertificateValidator.validate_chain` takes a posted chain and walks an SM2
one (GM/T 0015, SM3withSM2 with the default ID, which pyca cannot verify) up to
our SM2 hierarchy with ``pki.sm2``; both paths end in the same leaf, owner,
revocation and hardware-key checks.

Behind a proxy the certificate arrives in a header, believed only from a
configured proxy address (``idp.login.forwarded``).

Framework-free: the only I/O is fetching OCSP responses and CRLs through an
injected ``fetch`` callable (``requests`` by default).
"""

from __future__ import annotations

import enum
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast

from asn1crypto import core as a_core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
)
from cryptography.x509.verification import (
    ClientVerifier,
    PolicyBuilder,
    Store,
    VerificationError,
)

from idp.errors import IdPError
from pki import sm2
from pki.errors import UnknownSerial
from pki.model import CertificateRecord, CertStatus, OwnerKind, serial_hex
from policies.profiles import HARDWARE_KEY_POLICY

MAX_CERT_BYTES = 16 * 1024
MAX_FETCH_BYTES = 10 * 1024 * 1024  # a CRL of ~200,000 entries
MAX_DEPTH = 5
UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")  # MS-WCCE otherName
DEFAULT_HEADER = "X-SSL-Client-Cert"
FETCH_TIMEOUT = 5.0


# -- refusals --------------------------------------------------------------------
class Refusal(enum.StrEnum):
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    UNKNOWN_CA = "unknown_ca"
    FORGED_CHAIN = "forged_chain"  # a known CA's name, not its signature
    NOT_A_CA = "not_a_ca"  # an issuer in the path may not issue certificates
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    IS_A_CA = "is_a_ca"
    NO_DIGITAL_SIGNATURE = "no_digital_signature"
    NO_CLIENT_AUTH = "no_client_auth"
    REVOKED = "revoked"
    ON_HOLD = "on_hold"
    NOT_ISSUED_HERE = "not_issued_here"  # our CA's signature, but not in our records
    REVOCATION_UNAVAILABLE = "revocation_unavailable"  # OCSP and CRL failed: closed
    NOT_A_PERSON = "not_a_person"  # our certificate, but issued to an app or the CA
    NO_MAPPING = "no_mapping"  # an external certificate the mapping rule finds nothing in
    OWNER_MISMATCH = "owner_mismatch"
    PERSON_SUSPENDED = "person_suspended"
    PERSON_LEFT = "person_left"
    UNTRUSTED_PROXY = "untrusted_proxy"
    # Signature login (``idp.login.signature``): the challenge and its signature.
    NONCE_UNKNOWN = "nonce_unknown"  # never issued, or issued to another browser
    NONCE_USED = "nonce_used"
    NONCE_EXPIRED = "nonce_expired"
    BAD_SIGNATURE = "bad_signature"  # not the leaf key's signature over this challenge
    MALFORMED_REQUEST = "malformed_request"  # a nonce or signature field we cannot read

    @property
    def message_key(self) -> str:
        """The words the login page shows are ``idp.web.catalog``'s, under this key."""
        return f"refusal.{self.value}"


class CertificateRefused(IdPError):
    """A client certificate that does not log anyone in; ``reason`` says why."""

    def __init__(self, reason: Refusal, detail: str = "", *, serial: str | None = None,
                 subject: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.serial = serial
        self.subject = subject
        super().__init__(f"client certificate refused ({reason.value})"
                         + (f": {detail}" if detail else ""))

    def audit_details(self) -> dict[str, str]:
        out = {"reason": self.reason.value}
        if self.serial:
            out["serial"] = self.serial
        if self.subject:
            out["subject"] = self.subject
        return out


# -- configuration ------------------------------------------------------------------
class MappingRule(enum.StrEnum):
    """How an external CA's certificate names a person in the directory."""

    SUBJECT_DN = "subject_dn"  # the subject, RFC 4514
    SAN_EMAIL = "san_email"  # rfc822Name in subjectAltName
    UPN = "upn"  # Microsoft UPN otherName (uid@realm)
    ISSUER_SERIAL = "issuer_serial"  # "<issuer RFC 4514>|<serial hex>"


@dataclass(frozen=True)
class ExternalCA:
    """A CA we trust for login but do not run; its certificates map by ``rule``."""

    name: str
    certificate: x509.Certificate
    rule: MappingRule
    hardware_policies: frozenset[str] = frozenset()  # its OIDs meaning "hardware key"

    @classmethod
    def from_file(cls, name: str, path: Path, rule: MappingRule | str,
                  hardware_policies: Iterable[str] = ()) -> ExternalCA:
        data = path.read_bytes()
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
        return cls(name, cert, MappingRule(rule), frozenset(hardware_policies))


@dataclass(frozen=True)
class CertAuthSettings:
    """``[certauth]`` settings (external CAs, fail-open) and the proxy header."""

    external: tuple[ExternalCA, ...] = ()
    fail_open: bool = False  # when neither OCSP nor CRL answers for an external CA
    header: str = DEFAULT_HEADER
    revocation_cache_seconds: int = 300

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any], home: Path) -> CertAuthSettings:
        """``external_cas = [{name, file, rule, hardware_policies}]``, ``fail_open``,
        ``header``, ``revocation_cache_seconds``; relative files are under ``home``."""
        external = []
        for entry in section.get("external_cas", []) or []:
            path = Path(str(entry["file"]))
            external.append(ExternalCA.from_file(
                str(entry.get("name", path.stem)), path if path.is_absolute() else home / path,
                str(entry.get("rule", MappingRule.SAN_EMAIL)),
                [str(o) for o in entry.get("hardware_policies", [])]))
        return cls(tuple(external), bool(section.get("fail_open", False)),
                   str(section.get("header", DEFAULT_HEADER)),
                   int(section.get("revocation_cache_seconds", 300)))


class OurHierarchy(Protocol):
    """One of our CA hierarchies (the default one, or the SM2 one)."""

    @property
    def issuing_certificate(self) -> x509.Certificate: ...

    @property
    def root_certificate(self) -> x509.Certificate: ...


class OurCA(OurHierarchy, Protocol):
    """What the validator needs of ``pki.authority.CertificateAuthority``: the
    default hierarchy's CA certificates, every configured hierarchy, and the
    records (one store for both hierarchies)."""

    def get(self, serial: str) -> CertificateRecord: ...

    def authorities(self) -> Sequence[OurHierarchy]: ...


Fetch = Callable[[str, bytes | None], bytes]  # (url, POST body or None for GET) -> body


def requests_fetch(url: str, body: bytes | None) -> bytes:
    """Fetch an OCSP response (POST, RFC 6960 appendix A.1) or a CRL (GET)."""
    import requests

    if body is None:
        resp = requests.get(url, timeout=FETCH_TIMEOUT, stream=True)
    else:
        resp = requests.post(url, data=body, timeout=FETCH_TIMEOUT, stream=True,
                             headers={"Content-Type": "application/ocsp-request"})
    with resp:
        resp.raise_for_status()
        data = resp.raw.read(MAX_FETCH_BYTES + 1, decode_content=True)
    if len(data) > MAX_FETCH_BYTES:
        raise ValueError(f"{url}: response larger than {MAX_FETCH_BYTES} bytes")
    return bytes(data)


# -- results -----------------------------------------------------------------------
class RevocationSource(enum.StrEnum):
    OWN_STORE = "own_store"
    OCSP = "ocsp"
    CRL = "crl"
    UNCHECKED = "unchecked"  # external, nothing answered, and fail_open is set


@dataclass(frozen=True)
class Owner:
    """Whom the certificate belongs to: for ours the owner recorded at issuance
    (``uid``/``entry_uuid``); for an external CA the value its rule extracted."""

    rule: MappingRule | None  # None: recorded at issuance by our CA
    value: str  # entry_uuid for ours; the email / UPN / DN / issuer|serial otherwise
    uid: str | None = None


    def lookup(self, realm: str) -> tuple[str, str] | None:
        """(directory attribute, value) to find the person by, or None.

        Ours: ``entryUUID``. SAN email: ``mail``. UPN: ``uid`` when the UPN is in our
        realm (``uid@realm``, as our CA writes it). Subject DN and issuer+serial need
        an explicit binding stored on the entry (like AD's altSecurityIdentities),
        which the directory schema does not have yet: None.
        """
        if self.rule is None:
            return ("entryUUID", self.value)
        if self.rule is MappingRule.SAN_EMAIL:
            return ("mail", self.value)
        if self.rule is MappingRule.UPN:
            local, _, domain = self.value.rpartition("@")
            return ("uid", local) if local and domain.lower() == realm.lower() else None
        return None


@dataclass(frozen=True)
class ValidatedCertificate:
    certificate: x509.Certificate = field(repr=False)
    serial: str
    subject: str
    issuer: str
    ours: bool
    ca_name: str
    amr: str  # "swk" or "hwk"
    owner: Owner
    revocation: RevocationSource
    sha256: str

    def audit_details(self) -> dict[str, str]:
        return {"serial": self.serial, "issuer": self.issuer, "amr": self.amr,
                "revocation": self.revocation.value, "sha256": self.sha256}


# -- parsing -------------------------------------------------------------------------
def load_certificate(data: bytes | str | x509.Certificate) -> x509.Certificate:
    if isinstance(data, x509.Certificate):
        return data
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    if len(raw) > MAX_CERT_BYTES:
        raise CertificateRefused(Refusal.TOO_LARGE, f"{len(raw)} bytes")
    try:
        if b"-----BEGIN CERTIFICATE-----" in raw:
            return x509.load_pem_x509_certificate(raw.strip())
        return x509.load_der_x509_certificate(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateRefused(Refusal.MALFORMED, type(exc).__name__) from None


def _ext(cert: x509.Certificate, ext_type: type[Any]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # a duplicated or undecodable extension
        raise CertificateRefused(Refusal.MALFORMED, "bad extensions") from None


def certificate_policies(cert: x509.Certificate) -> frozenset[str]:
    pols = _ext(cert, x509.CertificatePolicies)
    return frozenset(p.policy_identifier.dotted_string for p in pols) if pols else frozenset()


def san_emails(cert: x509.Certificate) -> list[str]:
    san = _ext(cert, x509.SubjectAlternativeName)
    return list(san.get_values_for_type(x509.RFC822Name)) if san else []


def san_upns(cert: x509.Certificate) -> list[str]:
    san = _ext(cert, x509.SubjectAlternativeName)
    out = []
    for other in san.get_values_for_type(x509.OtherName) if san else []:
        if other.type_id == UPN_OID:
            try:
                out.append(str(a_core.UTF8String.load(other.value).native))
            except ValueError:
                continue
    return out


def sm2_key(cert: x509.Certificate) -> sm2.SM2PublicKey | None:
    """The certificate's SM2 key (GM/T 0015), or None when its key is not SM2
    (pyca/cryptography parses SM2 certificates but cannot load their keys)."""
    if cert.public_key_algorithm_oid.dotted_string != sm2.EC_PUBLIC_KEY_OID:
        return None
    try:
        return sm2.certificate_public_key(cert.public_bytes(serialization.Encoding.DER))
    except (sm2.SM2Error, ValueError):
        return None


def _verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.signature_algorithm_oid.dotted_string == sm2.SM3_WITH_SM2_OID:
        # GM/T 0015: SM3withSM2 with the default ID, which pyca cannot check.
        key = sm2_key(issuer)
        return (key is not None and cert.issuer == issuer.subject
                and sm2.verify(key, cert.signature, cert.tbs_certificate_bytes))
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _verify_raw(public_key: Any, signature: bytes, data: bytes,
                algorithm: hashes.HashAlgorithm | None) -> bool:
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey) and algorithm is not None:
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey) and algorithm is not None:
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public_key.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Anchor:
    """A CA we trust: ours (issuing or root) or a configured external one."""

    certificate: x509.Certificate
    name: str
    ours: bool
    external: ExternalCA | None


def _walk_path(cert: x509.Certificate, intermediates: Sequence[x509.Certificate],
               anchors: Sequence[Anchor], refuse: Callable[..., CertificateRefused]
               ) -> tuple[list[x509.Certificate], Anchor]:
    """RFC 5280 section 6.1: name chaining and a signature at every link, up to an
    anchor. A known CA's name without its signature is a forged chain."""
    path = [cert]
    current = cert
    for _ in range(MAX_DEPTH):
        named_anchors = [a for a in anchors if a.certificate.subject == current.issuer]
        for anchor in named_anchors:
            if _verify_signed_by(current, anchor.certificate):
                return path + ([] if current is anchor.certificate
                               else [anchor.certificate]), anchor
        named = [c for c in intermediates if c.subject == current.issuer and c != current]
        nxt = next((c for c in named if _verify_signed_by(current, c)), None)
        if nxt is None:
            if named_anchors or named:
                raise refuse(Refusal.FORGED_CHAIN,
                             f"not signed by {current.issuer.rfc4514_string()}")
            raise refuse(Refusal.UNKNOWN_CA, current.issuer.rfc4514_string())
        bc = _ext(nxt, x509.BasicConstraints)
        ku = _ext(nxt, x509.KeyUsage)
        if bc is None or not bc.ca or (ku is not None and not ku.key_cert_sign):
            raise refuse(Refusal.NOT_A_CA, nxt.subject.rfc4514_string())
        path.append(nxt)
        current = nxt
    raise refuse(Refusal.UNKNOWN_CA, "path too long")


def _check_leaf(cert: x509.Certificate, now: datetime,
                refuse: Callable[..., CertificateRefused]) -> None:
    """The leaf's own fitness for login, each fault its own refusal."""
    # RFC 5280 section 6.1.3 (a)(2): the current time within validity.
    if now < cert.not_valid_before_utc:
        raise refuse(Refusal.NOT_YET_VALID, cert.not_valid_before_utc.isoformat())
    if now > cert.not_valid_after_utc:
        raise refuse(Refusal.EXPIRED, cert.not_valid_after_utc.isoformat())
    bc = _ext(cert, x509.BasicConstraints)
    if bc is not None and bc.ca:
        raise refuse(Refusal.IS_A_CA)
    # Section 4.2.1.3: a login is a signature (the TLS CertificateVerify).
    ku = _ext(cert, x509.KeyUsage)
    if ku is None or not ku.digital_signature:
        raise refuse(Refusal.NO_DIGITAL_SIGNATURE)
    # Section 4.2.1.12.
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is None or ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise refuse(Refusal.NO_CLIENT_AUTH)


def _check_issuers(path: Sequence[x509.Certificate], now: datetime,
                   refuse: Callable[..., CertificateRefused]) -> None:
    """RFC 5280 section 6.1.3 (a)(2) for every CA above the leaf."""
    for ca_cert in path[1:]:
        if now > ca_cert.not_valid_after_utc:
            raise refuse(Refusal.EXPIRED, f"CA {ca_cert.subject.rfc4514_string()}")
        if now < ca_cert.not_valid_before_utc:
            raise refuse(Refusal.NOT_YET_VALID, f"CA {ca_cert.subject.rfc4514_string()}")


# The keys pyca's Web PKI policy accepts anywhere in a path (it has no setting to
# widen them): RSA and ECDSA on these curves.
_PYCA_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


def _pyca_checks_key(cert: x509.Certificate) -> bool:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    if isinstance(key, ec.EllipticCurvePublicKey):
        return isinstance(key.curve, _PYCA_CURVES)
    return isinstance(key, rsa.RSAPublicKey)


def _refuser(cert: x509.Certificate) -> Callable[..., CertificateRefused]:
    serial = serial_hex(cert.serial_number)
    subject = cert.subject.rfc4514_string()

    def refuse(reason: Refusal, detail: str = "") -> CertificateRefused:
        return CertificateRefused(reason, detail, serial=serial, subject=subject)

    return refuse


# -- the validator ---------------------------------------------------------------------
class CertificateValidator:
    """Validates client certificates against our CA and the configured external CAs."""

    def __init__(self, ca: OurCA, settings: CertAuthSettings | None = None, *,
                 fetch: Fetch = requests_fetch,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._ca = ca
        self.settings = settings or CertAuthSettings()
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        # (issuer sha256, serial) -> (status, source, expires monotonic)
        self._status_cache: dict[tuple[str, int], tuple[Refusal | None, RevocationSource,
                                                         float]] = {}
        self._crl_cache: dict[str, tuple[x509.CertificateRevocationList, float]] = {}
        self._store: tuple[tuple[bytes, ...], Store] | None = None  # anchors -> pyca Store

    # -- trust anchors ----------------------------------------------------------
    def _anchors(self) -> list[Anchor]:
        ours = [Anchor(self._ca.issuing_certificate, "govtrust-issuing", True, None),
                Anchor(self._ca.root_certificate, "govtrust-root", True, None)]
        return ours + [Anchor(e.certificate, e.name, False, e) for e in self.settings.external]

    def _verifier(self, anchors: Sequence[Anchor], now: datetime) -> ClientVerifier:
        key = tuple(a.certificate.fingerprint(hashes.SHA256()) for a in anchors)
        with self._lock:
            if self._store is None or self._store[0] != key:
                self._store = (key, Store([a.certificate for a in anchors]))
            store = self._store[1]
        # pyca's Web PKI profile of RFC 5280 with its default extension policies: a
        # conforming CA's certificates (AKI, SKI, critical basicConstraints) pass it,
        # and an external CA that does not conform is not one to log people in by.
        return (PolicyBuilder().store(store).time(now).max_chain_depth(MAX_DEPTH)
                .build_client_verifier())

    def validate(self, data: bytes | str | x509.Certificate,
                 intermediates: Sequence[x509.Certificate] = ()) -> ValidatedCertificate:
        """The certificate, checked; raises :class:`CertificateRefused`."""
        cert = load_certificate(data)
        now = self._clock()
        refuse = _refuser(cert)
        path, anchor = self._build_path(cert, intermediates, now, refuse)
        return self._judge(cert, path, anchor, now, refuse)

    def validate_chain(self, chain: Sequence[x509.Certificate]) -> ValidatedCertificate:
        """A chain a client sent (leaf first), checked like a TLS client certificate.

        An SM2 leaf (GM/T 0015) goes to our SM2 hierarchy: pyca cannot verify
        SM3withSM2, so our RFC 5280 walk checks each link with ``pki.sm2`` and the
        default ID; any other leaf takes :meth:`validate`'s path (pyca's verifier).
        Either way the same leaf, owner, revocation and hardware-key checks follow.
        """
        if not chain:
            raise CertificateRefused(Refusal.MALFORMED, "no certificate")
        cert, intermediates = chain[0], chain[1:]
        if sm2_key(cert) is None:
            return self.validate(cert, intermediates)
        now = self._clock()
        refuse = _refuser(cert)
        anchors = self._sm2_anchors()
        if not anchors:
            raise refuse(Refusal.UNKNOWN_CA, "no SM2 hierarchy is configured")
        path, anchor = _walk_path(cert, intermediates, anchors, refuse)
        _check_issuers(path, now, refuse)
        return self._judge(cert, path, anchor, now, refuse)

    def _sm2_anchors(self) -> list[Anchor]:
        out = []
        for hierarchy in self._ca.authorities():
            issuing = hierarchy.issuing_certificate
            if sm2_key(issuing) is not None:
                out += [Anchor(issuing, "govtrust-sm2-issuing", True, None),
                        Anchor(hierarchy.root_certificate, "govtrust-sm2-root", True, None)]
        return out

    def _judge(self, cert: x509.Certificate, path: Sequence[x509.Certificate], anchor: Anchor,
               now: datetime, refuse: Callable[..., CertificateRefused]
               ) -> ValidatedCertificate:
        """What every way of presenting a certificate shares once its path is
        trusted: the leaf's fitness, the owner and live status (our store, or OCSP
        and CRL for an external CA), and ``swk`` or ``hwk``."""
        _check_leaf(cert, now, refuse)  # pyca does not ask for digitalSignature
        serial = serial_hex(cert.serial_number)
        sha256 = cert.fingerprint(hashes.SHA256()).hex()
        policies = certificate_policies(cert)

        if anchor.ours:
            owner, source = self._check_ours(cert, serial, refuse)
            hardware = HARDWARE_KEY_POLICY in policies
        else:
            assert anchor.external is not None
            source = self._check_external(cert, path[1], refuse)
            owner = self._map_external(cert, anchor.external, refuse)
            hardware = bool(policies & anchor.external.hardware_policies)
        return ValidatedCertificate(cert, serial, cert.subject.rfc4514_string(),
                                    path[1].subject.rfc4514_string(),
                                    anchor.ours, anchor.name, "hwk" if hardware else "swk",
                                    owner, source, sha256)

    def _build_path(self, cert: x509.Certificate, intermediates: Sequence[x509.Certificate],
                    now: datetime, refuse: Callable[..., CertificateRefused]
                    ) -> tuple[list[x509.Certificate], Anchor]:
        """RFC 5280 section 6: a path from ``cert`` to an anchor, built and checked by
        pyca/cryptography's ``ClientVerifier`` (signatures, validity, basicConstraints,
        CA keyUsage, name constraints, path length, critical extensions, EKU
        clientAuth).

        pyca's error is one message for every cause, and our refusals (and the login
        page) are finer: when it refuses, :meth:`_diagnose` names the reason.
        """
        anchors = self._anchors()
        try:
            chain = self._verifier(anchors, now).verify(cert, list(intermediates)).chain
        except VerificationError as exc:
            return self._diagnose(cert, intermediates, anchors, now, refuse, str(exc))
        anchor = next(a for a in anchors if a.certificate == chain[-1])
        return list(chain), anchor

    @staticmethod
    def _diagnose(cert: x509.Certificate, intermediates: Sequence[x509.Certificate],
                  anchors: Sequence[Anchor], now: datetime,
                  refuse: Callable[..., CertificateRefused], verifier_error: str
                  ) -> tuple[list[x509.Certificate], Anchor]:
        """Why pyca refused ``cert``, as a :class:`Refusal`; or the path, in the one
        case pyca cannot judge.

        Trust first (nothing else about a certificate from nowhere is worth
        reporting): our own name-chaining walk tells an unknown CA from a forged
        signature from an issuer that is no CA; then the leaf's validity and key
        usages, then the CAs' validity. We never read pyca's message text.

        The walk stays a validator for one case: pyca's Web PKI policy forbids every
        key but RSA and ECDSA on P-256/384/521, with no setting to allow others, and
        our CA may run on Ed25519 (``[pki] key_algorithm = "ed25519"``). A path that
        holds such a key and passes the walk and every check here is accepted (as
        before pyca was used); any other path pyca refused stays refused.
        """
        path, anchor = _walk_path(cert, intermediates, anchors, refuse)
        _check_leaf(cert, now, refuse)
        _check_issuers(path, now, refuse)
        if all(_pyca_checks_key(c) for c in path):
            # pyca judged this path and found a fault none of our reasons names (a
            # missing AKI, a violated name constraint, an unknown critical extension):
            # the path does not lead to a CA we trust, and the audit record says why.
            raise refuse(Refusal.UNKNOWN_CA, f"path validation: {verifier_error}")
        return path, anchor

    # -- ours: the store is the truth --------------------------------------------------
    def _check_ours(self, cert: x509.Certificate, serial: str,
                    refuse: Callable[..., CertificateRefused]
                    ) -> tuple[Owner, RevocationSource]:
        try:
            rec = self._ca.get(serial)
        except UnknownSerial:
            raise refuse(Refusal.NOT_ISSUED_HERE) from None
        if rec.der != cert.public_bytes(serialization.Encoding.DER):
            raise refuse(Refusal.NOT_ISSUED_HERE, "differs from the issued certificate")
        if rec.status is CertStatus.REVOKED:
            raise refuse(Refusal.REVOKED, rec.reason.value if rec.reason else "")
        if rec.status is CertStatus.HOLD:
            raise refuse(Refusal.ON_HOLD)
        if rec.owner_kind is not OwnerKind.PERSON or not rec.owner_entry_uuid:
            raise refuse(Refusal.NOT_A_PERSON, rec.owner_kind.value)
        return Owner(None, rec.owner_entry_uuid, rec.owner_uid), RevocationSource.OWN_STORE

    # -- external: OCSP, then the CRL --------------------------------------------------
    def _check_external(self, cert: x509.Certificate, issuer: x509.Certificate,
                        refuse: Callable[..., CertificateRefused]) -> RevocationSource:
        key = (issuer.fingerprint(hashes.SHA256()).hex(), cert.serial_number)
        with self._lock:
            hit = self._status_cache.get(key)
        if hit is not None and hit[2] > time.monotonic():
            verdict, source = hit[0], hit[1]
        else:
            verdict, source, ttl = self._external_status(cert, issuer)
            with self._lock:
                self._status_cache[key] = (verdict, source, time.monotonic() + ttl)
        if verdict is not None:
            raise refuse(verdict)
        return source

    def _external_status(self, cert: x509.Certificate, issuer: x509.Certificate
                         ) -> tuple[Refusal | None, RevocationSource, float]:
        cache = float(self.settings.revocation_cache_seconds)
        for url in _urls(cert, "ocsp"):
            try:
                verdict, until = self._ocsp(cert, issuer, url)
            except Exception:  # an unreachable or bad responder: try the next, then CRLs
                continue
            return verdict, RevocationSource.OCSP, self._ttl(until, cache)
        for url in _urls(cert, "crl"):
            try:
                crl = self._crl(url, issuer)
            except Exception:
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            return (_entry_verdict(entry), RevocationSource.CRL,
                    self._ttl(crl.next_update_utc, cache))
        if self.settings.fail_open:
            return None, RevocationSource.UNCHECKED, 30.0
        return Refusal.REVOCATION_UNAVAILABLE, RevocationSource.UNCHECKED, 30.0

    def _ttl(self, until: datetime | None, cache: float) -> float:
        if until is None:
            return cache
        return max(0.0, min(cache, (until - self._clock()).total_seconds()))

    def _ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, url: str
              ) -> tuple[Refusal | None, datetime | None]:
        req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
        resp = ocsp.load_der_ocsp_response(
            self._fetch(url, req.public_bytes(serialization.Encoding.DER)))
        if resp.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise ValueError(f"OCSP status {resp.response_status.name}")
        signer = self._ocsp_signer(resp, issuer)
        if not _verify_raw(signer.public_key(), resp.signature, resp.tbs_response_bytes,
                           resp.signature_hash_algorithm):
            raise ValueError("OCSP response signature does not verify")
        single = next((r for r in resp.responses if r.serial_number == cert.serial_number
                       and r.issuer_key_hash == req.issuer_key_hash), None)
        if single is None:
            raise ValueError("OCSP response does not cover the certificate")
        now = self._clock()
        # RFC 6960 section 3.2 (5): thisUpdate sufficiently recent, nextUpdate ahead.
        if single.this_update_utc > now + timedelta(minutes=5):
            raise ValueError("OCSP response from the future")
        if single.next_update_utc is not None and single.next_update_utc < now:
            raise ValueError("OCSP response is stale")
        if single.next_update_utc is None and single.this_update_utc < now - timedelta(days=1):
            raise ValueError("OCSP response without nextUpdate is over a day old")
        status = single.certificate_status
        if status is ocsp.OCSPCertStatus.GOOD:
            return None, single.next_update_utc
        if status is ocsp.OCSPCertStatus.REVOKED:
            hold = single.revocation_reason is x509.ReasonFlags.certificate_hold
            return (Refusal.ON_HOLD if hold else Refusal.REVOKED), single.next_update_utc
        raise ValueError("OCSP says unknown")

    @staticmethod
    def _ocsp_signer(resp: ocsp.OCSPResponse, issuer: x509.Certificate) -> x509.Certificate:
        """The CA itself, or a delegated responder it issued (RFC 6960 section 4.2.2.2)."""
        def names(c: x509.Certificate) -> bool:
            if resp.responder_name is not None:
                return c.subject == resp.responder_name
            digest = hashlib.sha1(_spk_bits(c)).digest()
            return digest == resp.responder_key_hash

        if names(issuer):
            return issuer
        for delegate in resp.certificates:
            if names(delegate) and _verify_signed_by(delegate, issuer):
                eku = _ext(delegate, x509.ExtendedKeyUsage)
                if eku is not None and ExtendedKeyUsageOID.OCSP_SIGNING in eku:
                    return delegate
        raise ValueError("OCSP response signed by an unauthorised responder")

    def _crl(self, url: str, issuer: x509.Certificate) -> x509.CertificateRevocationList:
        now = self._clock()
        with self._lock:
            hit = self._crl_cache.get(url)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        data = self._fetch(url, None)
        crl = (x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----")
               else x509.load_der_x509_crl(data))
        key = cast(Any, issuer.public_key())
        if crl.issuer != issuer.subject or not crl.is_signature_valid(key):
            raise ValueError("CRL not signed by the issuer")
        if crl.next_update_utc is not None and crl.next_update_utc < now:
            raise ValueError("CRL is stale")
        with self._lock:
            self._crl_cache[url] = (crl, time.monotonic() + self._ttl(
                crl.next_update_utc, float(self.settings.revocation_cache_seconds)))
        return crl

    # -- mapping ----------------------------------------------------------------------
    @staticmethod
    def _map_external(cert: x509.Certificate, ca: ExternalCA,
                      refuse: Callable[..., CertificateRefused]) -> Owner:
        value: str | None
        if ca.rule is MappingRule.SUBJECT_DN:
            value = cert.subject.rfc4514_string() or None
        elif ca.rule is MappingRule.SAN_EMAIL:
            emails = san_emails(cert)
            value = emails[0].lower() if len(emails) == 1 else None
        elif ca.rule is MappingRule.UPN:
            upns = san_upns(cert)
            value = upns[0] if len(upns) == 1 else None
        else:
            value = f"{cert.issuer.rfc4514_string()}|{serial_hex(cert.serial_number)}"
        if not value:  # none, or ambiguous (two emails): never guess whom it names
            raise refuse(Refusal.NO_MAPPING, ca.rule.value)
        return Owner(ca.rule, value)


def _spk_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING contents (RFC 6960 KeyHash)."""
    from asn1crypto import keys as a_keys

    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    # contents[0] is the count of unused bits, which the hash leaves out
    return bytes(a_keys.PublicKeyInfo.load(spki)["public_key"].contents[1:])


def _urls(cert: x509.Certificate, kind: str) -> list[str]:
    out: list[str] = []
    if kind == "ocsp":
        aia = _ext(cert, x509.AuthorityInformationAccess)
        for desc in aia or []:
            if (desc.access_method == AuthorityInformationAccessOID.OCSP
                    and isinstance(desc.access_location, x509.UniformResourceIdentifier)):
                out.append(desc.access_location.value)
    else:
        cdp = _ext(cert, x509.CRLDistributionPoints)
        for point in cdp or []:
            for name in point.full_name or []:
                if isinstance(name, x509.UniformResourceIdentifier):
                    out.append(name.value)
    return [u for u in out if u.startswith(("http://", "https://"))]


def _entry_verdict(entry: x509.RevokedCertificate | None) -> Refusal | None:
    if entry is None:
        return None
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return Refusal.REVOKED
    return Refusal.ON_HOLD if reason is x509.ReasonFlags.certificate_hold else Refusal.REVOKED


# -- the person ------------------------------------------------------------------------
class PersonLike(Protocol):
    @property
    def uid(self) -> str: ...

    @property
    def entry_uuid(self) -> str: ...

    @property
    def status(self) -> Any: ...


def check_person(validated: ValidatedCertificate, person: PersonLike) -> None:
    """Refuse when ``person`` is not the owner (ours) or is suspended or has left."""
    def refuse(reason: Refusal) -> CertificateRefused:
        return CertificateRefused(reason, person.uid, serial=validated.serial,
                                  subject=validated.subject)

    if validated.owner.rule is None and validated.owner.value != person.entry_uuid:
        raise refuse(Refusal.OWNER_MISMATCH)
    status = str(getattr(person.status, "value", person.status))
    if status == "suspended":
        raise refuse(Refusal.PERSON_SUSPENDED)
    if status != "active":
        raise refuse(Refusal.PERSON_LEFT)
