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

Its parts: ``refusals`` (why), ``certfields`` (reading a certificate),
``certpath`` (RFC 5280 paths), ``certsettings`` (external CAs, fetching).
Framework-free: the only I/O is fetching OCSP responses and CRLs through an
injected ``fetch`` callable (``requests`` by default).
"""

from __future__ import annotations

import enum
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import ClientVerifier, PolicyBuilder, Store, VerificationError

from idp.login.certfields import (
    certificate_policies,
    entry_verdict,
    extension,
    load_certificate,
    san_emails,
    san_upns,
    sm2_key,
    spk_bits,
    urls,
)
from idp.login.certpath import (
    MAX_DEPTH,
    Anchor,
    check_issuers,
    check_leaf,
    pyca_checks_key,
    refuser,
    verify_raw,
    verify_signed_by,
    walk_path,
)
from idp.login.certsettings import CertAuthSettings, ExternalCA, Fetch, MappingRule, requests_fetch
from idp.login.refusals import CertificateRefused, Refusal
from pki.errors import UnknownSerial
from pki.model import CertificateRecord, CertStatus, OwnerKind, serial_hex
from policies.profiles import HARDWARE_KEY_POLICY


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
        refuse = refuser(cert)
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
        refuse = refuser(cert)
        anchors = self._sm2_anchors()
        if not anchors:
            raise refuse(Refusal.UNKNOWN_CA, "no SM2 hierarchy is configured")
        path, anchor = walk_path(cert, intermediates, anchors, refuse)
        check_issuers(path, now, refuse)
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
        check_leaf(cert, now, refuse)  # pyca does not ask for digitalSignature
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
        path, anchor = walk_path(cert, intermediates, anchors, refuse)
        check_leaf(cert, now, refuse)
        check_issuers(path, now, refuse)
        if all(pyca_checks_key(c) for c in path):
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
        for url in urls(cert, "ocsp"):
            try:
                verdict, until = self._ocsp(cert, issuer, url)
            except Exception:  # an unreachable or bad responder: try the next, then CRLs
                continue
            return verdict, RevocationSource.OCSP, self._ttl(until, cache)
        for url in urls(cert, "crl"):
            try:
                crl = self._crl(url, issuer)
            except Exception:
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            return (entry_verdict(entry), RevocationSource.CRL,
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
        if not verify_raw(signer.public_key(), resp.signature, resp.tbs_response_bytes,
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
            digest = hashlib.sha1(spk_bits(c)).digest()
            return digest == resp.responder_key_hash

        if names(issuer):
            return issuer
        for delegate in resp.certificates:
            if names(delegate) and verify_signed_by(delegate, issuer):
                eku = extension(delegate, x509.ExtendedKeyUsage)
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
