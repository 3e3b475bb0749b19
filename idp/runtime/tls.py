"""The TLS server certificate of ``govtrust serve``, issued by our own CA.

The IdP's HTTPS front uses a ``tls-server`` certificate from the issuing CA for
the issuer's host plus 127.0.0.1 and localhost. It is issued when missing and
renewed when a third of its validity is left, so one trust chain runs from the
root CA to every TLS connection. The private key file is 0600.
"""

from __future__ import annotations

import os
import ssl
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.authority import CertificateAuthority, IssuedKeyPair

APP = "govtrust-idp"


def server_names(issuer: str) -> list[str]:
    host = urlsplit(issuer).hostname or "127.0.0.1"
    return list(dict.fromkeys([host, "127.0.0.1", "localhost"]))


def needs_renewal(cert_file: Path, names: list[str], now: datetime | None = None) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (FileNotFoundError, ValueError):
        return True
    now = now or datetime.now(UTC)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    if cert.not_valid_after_utc - now < life / 3:
        return True
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    have = {str(v).lower() for v in san.get_values_for_type(x509.DNSName)}
    have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    return not set(names) <= have


def ensure_server_certificate(ca: CertificateAuthority, folder: Path, issuer: str
                              ) -> tuple[Path, Path, Path]:
    """(certificate chain file, key file, CA bundle file) for the IdP's TLS front."""
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file, bundle = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    names = server_names(issuer)
    issuing = ca.issuing_certificate.public_bytes(serialization.Encoding.PEM)
    root = ca.root_certificate.public_bytes(serialization.Encoding.PEM)
    if needs_renewal(cert_file, names):
        ca.approve_dns(APP, names, actor="serve")
        issued = ca.issue_tls_server(APP, dns_names=names, actor="serve")
        assert isinstance(issued, IssuedKeyPair)  # no CSR given: the key is generated
        key_pem = issued.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        tmp = key_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        os.replace(tmp, key_file)
        cert_file.write_bytes(issued.issued.pem + issuing)
    bundle.write_bytes(issuing + root)
    return cert_file, key_file, bundle


# Mozilla's "intermediate" server profile (ssl-config.mozilla.org, version 5.7):
# TLS 1.2 and 1.3; for TLS 1.2 only ECDHE/DHE key exchange with AEAD ciphers.
# TLS 1.3 suites are all AEAD and OpenSSL's defaults are the profile's.
INTERMEDIATE_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305"))


def harden_server_context(context: ssl.SSLContext) -> ssl.SSLContext:
    """The TLS policy of the IdP's HTTPS front, applied to gunicorn's context.

    Python's default server context still offers CBC suites with SHA-1 MACs under
    TLS 1.2 (ECDHE-ECDSA-AES128-SHA and friends), which the intermediate profile
    drops; compression (CRIME) and client-initiated renegotiation (a cheap DoS,
    and pointless before TLS 1.3) are switched off explicitly rather than left to
    the OpenSSL build's defaults.
    """
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context
