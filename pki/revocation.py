"""Revocation, hold and release (RFC 5280 §5.3.1), and the CRLs that show them (§5).

A change is recorded (with its audit record) before a CRL or OCSP reflects it;
the directory copy of a revoked certificate is removed afterwards, and its failure
is logged, not raised: the database is the record.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pki.crl import build_crl, encode_entries
from pki.errors import PKIError, UnknownSerial
from pki.hierarchy import ISSUING, ROOT, CAHierarchy
from pki.keys import Signer
from pki.model import (
    AuditEntry,
    CARole,
    CertificateRecord,
    CertStatus,
    CRLRecord,
    HierarchyName,
    OwnerKind,
    RevocationReason,
    normalize_serial,
)

log = logging.getLogger(__name__)

# An online root's CRL is re-signed this often (at most half its lifetime); an
# offline root's only at the ceremony (``[pki] root_crl_days`` long).
ROOT_CRL_REFRESH = timedelta(days=30)


class Revocation(CAHierarchy):
    """Certificate status changes and the issuing and root CRLs.

    Status changes are by serial across hierarchies (one record store); the
    CRLs a change lands in are those of the certificate's own hierarchy, so a
    hierarchy knows its ``peers`` (the SM2 one beside the default one).
    """

    peers: dict[HierarchyName, Revocation]

    def authority_for(self, hierarchy: HierarchyName) -> Revocation:
        """The authority of ``hierarchy`` (this one or a peer)."""
        if hierarchy is self.name:
            return self
        peer = getattr(self, "peers", {}).get(hierarchy)
        if peer is None:
            raise PKIError(f"the {hierarchy.value} hierarchy is not configured "
                           "([pki] sm2 = true)")
        return peer

    def get(self, serial: str) -> CertificateRecord:
        s = normalize_serial(serial)
        rec = self.store.get(s)
        if rec is None:
            raise UnknownSerial(s)
        return rec

    def find(self, *, uid: str | None = None, status: CertStatus | None = None,
             expiring_within: timedelta | None = None, limit: int = 10_000
             ) -> list[CertificateRecord]:
        before = self.now() + expiring_within if expiring_within is not None else None
        return self.store.find(uid=uid, status=status, expiring_before=before, limit=limit)

    def revoke(self, serial: str, reason: RevocationReason | str = RevocationReason.UNSPECIFIED,
               invalidity_date: datetime | None = None, *, actor: str = "system",
               refresh: bool = True) -> CertificateRecord:
        why = RevocationReason.for_revocation(reason)
        s = normalize_serial(serial)
        owner = self.authority_for(self.get(s).hierarchy)
        details = {"reason": why.value, "hierarchy": owner.name.value}
        if invalidity_date is not None:
            invalidity_date = invalidity_date.astimezone(UTC).replace(microsecond=0)
            details["invalidity_date"] = invalidity_date.isoformat()
        # RFC 5280 §5.3.1: a certificate on hold may be revoked for good.
        rec = self.store.transition(
            s, verb="revoke", allowed_from=frozenset({CertStatus.VALID, CertStatus.HOLD}),
            to=CertStatus.REVOKED, at=self.now(), reason=why, invalidity_date=invalidity_date,
            audit=AuditEntry(actor, "cert.revoke", f"cert:{s}", details))
        owner._after_change(rec, actor, refresh, unpublish=True)
        return rec

    def hold(self, serial: str, *, actor: str = "system", refresh: bool = True
             ) -> CertificateRecord:
        s = normalize_serial(serial)
        owner = self.authority_for(self.get(s).hierarchy)
        rec = self.store.transition(
            s, verb="hold", allowed_from=frozenset({CertStatus.VALID}), to=CertStatus.HOLD,
            at=self.now(), reason=RevocationReason.CERTIFICATE_HOLD, invalidity_date=None,
            audit=AuditEntry(actor, "cert.hold", f"cert:{s}", {"hierarchy": owner.name.value}))
        owner._after_change(rec, actor, refresh, unpublish=False)
        return rec

    def release(self, serial: str, *, actor: str = "system", refresh: bool = True
                ) -> CertificateRecord:
        s = normalize_serial(serial)
        owner = self.authority_for(self.get(s).hierarchy)
        rec = self.store.transition(
            s, verb="release", allowed_from=frozenset({CertStatus.HOLD}), to=CertStatus.VALID,
            at=self.now(), reason=RevocationReason.REMOVE_FROM_CRL, invalidity_date=None,
            audit=AuditEntry(actor, "cert.release", f"cert:{s}",
                             {"hierarchy": owner.name.value}))
        owner._after_change(rec, actor, refresh, unpublish=False)
        return rec

    def _after_change(self, rec: CertificateRecord, actor: str, refresh: bool,
                      unpublish: bool) -> None:
        if unpublish and rec.owner_kind is OwnerKind.PERSON:
            try:
                self.publisher.unpublish(rec.owner_uid, rec.der)
            except Exception:
                log.exception("unpublishing certificate %s failed", rec.serial)
        if refresh:
            self.refresh_after_revocation(actor)

    def refresh_after_revocation(self, actor: str = "system") -> None:
        """A new delta CRL always; a new full CRL while it is small enough."""
        full = self.store.latest_crl(self.settings.name(CARole.ISSUING), delta=False)
        if full is None or full.entries < self.settings.full_crl_on_revoke_max:
            self.generate_crl(delta=False, actor=actor)
        self.generate_crl(delta=True, actor=actor)

    # -- CRLs (RFC 5280 §5) -----------------------------------------------------
    def generate_crl(self, *, delta: bool = False, actor: str = "system") -> CRLRecord:
        issuer = self.issuing_certificate
        signer = self.issuing_signer()
        name = self.settings.name(CARole.ISSUING)
        for _ in range(5):
            now = self.now()
            base: CRLRecord | None = None
            since: datetime | None = None
            if delta:
                base = self.store.latest_crl(name, delta=False)
                if base is None:
                    base = self.generate_crl(delta=False, actor=actor)
                # A margin so a change committed while the base was read is not missed.
                since = base.this_update - timedelta(minutes=5)
            number = self.store.next_crl_number(name)
            entries = encode_entries(self.store.revoked_entries(since, self.name))
            lifetime = self.settings.delta_lifetime if delta else self.settings.crl_lifetime
            der_bytes = build_crl(issuer=issuer, signer=signer, entries=entries, number=number,
                                  this_update=now, next_update=now + lifetime,
                                  base_number=base.number if base else None)
            rec = CRLRecord(number, delta, base.number if base else None, now, now + lifetime,
                            len(entries), der_bytes)
            del entries  # a million small objects: not kept while the CRL is stored
            audit = AuditEntry(actor, "crl.generate", f"crl:{name}:{number}", {
                "delta": str(delta).lower(), "entries": str(rec.entries),
                "base": str(rec.base_number or ""), "hierarchy": self.name.value})
            if self.store.add_crl(name, rec, audit):
                self._publish_crl(name, der_bytes)
                self.sign_audit_head()
                return rec
        raise PKIError("could not store a CRL: its number kept being taken")

    def generate_root_crl(self, actor: str = "system", signer: Signer | None = None
                          ) -> CRLRecord:
        """The root's CRL (it lists revoked CA certificates; none so far), signed
        with ``signer`` (the root key from its offline medium) or the home's."""
        root = self.root_certificate
        signer = signer if signer is not None else self.root_signer()
        name = self.settings.name(CARole.ROOT)
        lifetime = self.settings.root_crl_lifetime
        for _ in range(5):
            now = self.now()
            number = self.store.next_crl_number(name)
            der_bytes = build_crl(issuer=root, signer=signer, entries=(), number=number,
                                  this_update=now, next_update=now + lifetime)
            rec = CRLRecord(number, False, None, now, now + lifetime, 0, der_bytes)
            if self.store.add_crl(name, rec, AuditEntry(actor, "crl.generate",
                                                         f"crl:{name}:{number}",
                                                         {"hierarchy": self.name.value})):
                self._publish_crl(name, der_bytes)
                return rec
        raise PKIError("could not store the root CRL")

    def _publish_crl(self, ca: str, der_bytes: bytes) -> None:
        try:
            self.publisher.publish_crl(ca, der_bytes)
        except Exception:
            log.exception("publishing the %s CRL failed", ca)

    def crl(self, *, delta: bool = False, issuer: str = ISSUING) -> bytes:
        """The newest stored CRL of this hierarchy's ``issuer`` (ISSUING or ROOT),
        generating one if there is none."""
        rec = self.store.latest_crl(self.settings.name(CARole(issuer)), delta)
        if rec is None:
            rec = self.generate_root_crl() if issuer == ROOT else self.generate_crl(delta=delta)
        return rec.der

    def _refresh_crls(self, actor: str) -> list[str]:
        """Renew the full, delta and root CRLs that are due; name what was renewed."""
        done = []
        now = self.now()
        full = self.store.latest_crl(self.settings.name(CARole.ISSUING), delta=False)
        if full is None or now >= full.this_update + self.settings.crl_refresh:
            full = self.generate_crl(delta=False, actor=actor)
            done.append("crl")
        delta = self.store.latest_crl(self.settings.name(CARole.ISSUING), delta=True)
        if (delta is None or delta.base_number != full.number
                or now >= delta.this_update + self.settings.delta_refresh):
            self.generate_crl(delta=True, actor=actor)
            done.append("delta-crl")
        if not self.root_key_in_home:
            # The root key is offline: its CRL was signed at the ceremony, and
            # /readyz warns (root_crl_check) as its nextUpdate nears.
            return done
        root = self.store.latest_crl(self.settings.name(CARole.ROOT), delta=False)
        refresh = min(ROOT_CRL_REFRESH, self.settings.root_crl_lifetime / 2)
        if root is None or now >= root.this_update + refresh:
            self.generate_root_crl(actor)
            done.append("root-crl")
        return done

