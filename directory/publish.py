"""Publishing certificates and CRLs to the directory (RFC 4523 attributes).

A person's certificates go to ``userCertificate;binary`` on their entry, so
mail clients and department apps find them where X.500 says; each CA's CRL goes
to ``certificateRevocationList;binary`` on a ``cRLDistributionPoint`` entry
under ``ou=pki`` (readable by anyone, like the HTTP distribution point). The
database stays the record: this is a copy, and ``pki.publish.CertificatePublisher``
(which this satisfies structurally) tolerates its failure.
"""

from __future__ import annotations

from directory.gateway import LdapGateway
from directory.slapd import PKI

USER_CERT = "userCertificate;binary"
CRL = "certificateRevocationList;binary"


class DirectoryPublisher:
    def __init__(self, gateway: LdapGateway) -> None:
        self._gateway = gateway

    def publish(self, uid: str, der: bytes) -> None:
        self._gateway.add_binary(self._gateway.person_dn(uid), USER_CERT, der)

    def unpublish(self, uid: str, der: bytes) -> None:
        self._gateway.delete_binary(self._gateway.person_dn(uid), USER_CERT, der)

    def ca_dn(self, ca: str) -> str:
        return self._gateway.child_dn(self._gateway.container(PKI), "cn", ca)

    def publish_crl(self, ca: str, der: bytes) -> None:
        self._gateway.put_binary_entry(self.ca_dn(ca), "cRLDistributionPoint", ("cn", ca),
                                       CRL, der)

    def read_certificates(self, uid: str) -> list[bytes]:
        """The DER certificates on the person's entry."""
        return self._gateway.read_binary(self._gateway.person_dn(uid), USER_CERT)

    def read_crl(self, ca: str) -> bytes | None:
        found = self._gateway.read_binary(self.ca_dn(ca), CRL)
        return found[0] if found else None
