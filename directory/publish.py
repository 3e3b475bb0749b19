"""Publishing certificates and CRLs to the directory (RFC 4523 attributes).

A person's certificates go to ``userCertificate;binary`` on their entry, so
mail clients and department apps find them where X.500 says; each CA's CRL goes
to ``certificateRevocationList;binary`` on a ``cRLDistributionPoint`` entry
under ``ou=pki``. The database stays the record: this is a copy, and
``pki.publish.CertificatePublisher`` (which this satisfies structurally)
tolerates its failure.
"""

from __future__ import annotations

import ldap

from directory.gateway import LdapGateway
from directory.model import Person

PKI = "pki"
USER_CERT = "userCertificate;binary"
CRL = "certificateRevocationList;binary"


class DirectoryPublisher:
    def __init__(self, gateway: LdapGateway) -> None:
        self._gateway = gateway

    def publish(self, person: Person, der: bytes) -> None:
        with self._gateway.connection() as conn:
            try:
                conn.modify_s(person.dn, [(ldap.MOD_ADD, USER_CERT, [der])])
            except ldap.TYPE_OR_VALUE_EXISTS:
                pass  # already published: publishing is idempotent

    def unpublish(self, uid: str, der: bytes) -> None:
        found = self._gateway.find_person_entry(uid)
        if found is None:
            return
        with self._gateway.connection() as conn:
            try:
                conn.modify_s(found[0], [(ldap.MOD_DELETE, USER_CERT, [der])])
            except (ldap.NO_SUCH_ATTRIBUTE, ldap.NO_SUCH_OBJECT):
                pass  # already gone

    def ca_dn(self, ca: str) -> str:
        return self._gateway.child_dn(self._gateway.container(PKI), "cn", ca)

    def publish_crl(self, ca: str, der: bytes) -> None:
        container = self._gateway.container(PKI)
        dn = self.ca_dn(ca)
        with self._gateway.connection() as conn:
            try:
                conn.modify_s(dn, [(ldap.MOD_REPLACE, CRL, [der])])
                return
            except ldap.NO_SUCH_OBJECT:
                pass
            try:
                conn.add_s(container, [("objectClass", [b"organizationalUnit"]),
                                       ("ou", [PKI.encode()])])
            except ldap.ALREADY_EXISTS:
                pass
            conn.add_s(dn, [("objectClass", [b"cRLDistributionPoint"]),
                            ("cn", [ca.encode()]), (CRL, [der])])

    def read_certificates(self, uid: str) -> list[bytes]:
        """The DER certificates on the person's entry (for checks and tests)."""
        dn = self._gateway.person_dn(uid)
        return self._read(dn, USER_CERT)

    def _read(self, dn: str, attr: str) -> list[bytes]:
        with self._gateway.connection() as conn:
            try:
                rows = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", [attr])
            except ldap.NO_SUCH_OBJECT:
                return []
        base = attr.split(";")[0].lower()
        for _dn, attrs in rows:
            for name, values in attrs.items():
                if name.split(";")[0].lower() == base:
                    return [bytes(v) for v in values]
        return []

    def read_crl(self, ca: str) -> bytes | None:
        found = self._read(self.ca_dn(ca), CRL)
        return found[0] if found else None
