"""How certificate login is configured: the external CAs we trust beside our own,
how their certificates map to people, and how their OCSP responses and CRLs are
fetched (``[certauth]`` in ``govtrust.toml``)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

DEFAULT_HEADER = "X-SSL-Client-Cert"  # where nginx forwards the certificate
MAX_FETCH_BYTES = 10 * 1024 * 1024  # a CRL of ~200,000 entries
FETCH_TIMEOUT = 5.0
Fetch = Callable[[str, bytes | None], bytes]  # (url, POST body or None for GET) -> body




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


