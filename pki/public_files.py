"""The PKI's public service as plain files, for a web server to serve without Python.

A CA's public objects are few and public: its certificates (RFC 5280 §4.2.2.1,
the AIA caIssuers target), its CRLs (§4.2.1.13, the distribution points) and,
for RFC 6960 Appendix A.1 GET requests, OCSP responses. :func:`export` writes
them under one folder with the very paths ``pki.http`` answers, so nginx (see
``idp.runtime.nginx``) serves them as static files and asks a node only for
what is not there:

``ca/[sm2-]{root,issuing,ocsp}.{der,crt,cer,pem}``
    the CA certificates.
``crl/[sm2-]{issuing,issuing-delta,root}.crl``
    the newest stored CRLs.
``ocsp/<base64 of the DER request>`` (and ``ocsp/sm2/...`` for the SM2 hierarchy)
    one pre-signed response per issued, unexpired serial and CertID hash (SHA-1,
    what RFC 5019 §2.1.1 clients send, and SHA-256), for a request without a nonce
    (RFC 5019 §2.1.1: the form a cacheable GET takes). The file's path *is* the
    request's GET path: nginx's ``try_files $uri`` finds it with no code. A ``/``
    inside the base64 text becomes a sub-folder, which is what nginx's path
    lookup does with it too; a path that *ends* in ``/`` names a folder, so its
    file is ``_`` inside it (:data:`FOLDER_FILE`; nginx tries ``${uri}_`` next).
    A request with a nonce, another hash, an unknown serial or several CertIDs
    finds no file and goes to a node.

The OCSP tree is written beside the old one and swapped in with one atomic
rename of a symbolic link, so a reader never sees half of it. Every file is the
responder's own answer (:meth:`pki.ocsp.OCSPResponder.respond`), so a file and a
node never disagree, except for the time until the next export after a status
change: the caller re-exports when a CRL changes (every revocation makes one).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from asn1crypto import ocsp as a_ocsp
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.model import CARole, CertificateRecord, HierarchyName

STATE_FILE = "export.json"
OCSP_LINK = "ocsp"
# The CertID hashes files are written for: SHA-1 is what RFC 5019 clients (and
# OpenSSL, GnuTLS, browsers) send; SHA-256 what newer ones may.
CERT_ID_HASHES = ("sha1", "sha256")
_HASH_OIDS = {"sha1": "sha1", "sha256": "sha256"}
# The file of a request whose base64 ends in "/" (which names a folder, not a file)
# is this inside that folder. "_" is not in the base64 alphabet, so it is never
# another request's name; nginx and its njs POST script look for it the same way.
FOLDER_FILE = "_"


class Authority(Protocol):
    """What an export needs of one hierarchy (``pki.authority.CertificateAuthority``)."""

    @property
    def name(self) -> HierarchyName: ...

    @property
    def issuing_certificate(self) -> x509.Certificate: ...

    def certificate(self, role: CARole) -> x509.Certificate: ...

    def ocsp_credentials(self, actor: str = "system") -> tuple[x509.Certificate, object]: ...

    def crl(self, *, delta: bool = False, issuer: str = "issuing") -> bytes: ...


class Responder(Protocol):
    def respond(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class ExportReport:
    """What one export wrote."""

    folder: Path
    ca_files: int
    crl_files: int
    ocsp_files: int
    version: str  # the caller's name for the state exported (e.g. the CRL numbers)


def ocsp_request(issuer: x509.Certificate, serial: int, algorithm: str) -> bytes:
    """The DER of an RFC 6960 §4.1.1 OCSPRequest for one certificate, no nonce,
    built the way RFC 5019 clients build it (no requestor name, no extensions)."""
    name_der = issuer.subject.public_bytes(serialization.Encoding.DER)
    spki = a_x509.Certificate.load(issuer.public_bytes(serialization.Encoding.DER))
    key_bits = bytes(spki.public_key["public_key"].contents[1:])  # skip unused-bits octet
    digest = getattr(hashlib, algorithm)
    cert_id = a_ocsp.CertId({
        "hash_algorithm": {"algorithm": _HASH_OIDS[algorithm]},
        "issuer_name_hash": digest(name_der).digest(),
        "issuer_key_hash": digest(key_bits).digest(),
        "serial_number": serial,
    })
    request = a_ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": cert_id}]}})
    return request.dump()


def get_path(request_der: bytes) -> str:
    """The path below ``/ocsp/`` of an RFC 6960 Appendix A.1 GET for ``request_der``."""
    return base64.b64encode(request_der).decode("ascii")


def file_path(request_der: bytes) -> str:
    """The file below ``ocsp/`` that answers ``request_der``: its GET path, with
    :data:`FOLDER_FILE` added when that path ends in ``/`` (about one serial in 190)."""
    path = get_path(request_der)
    return path + FOLDER_FILE if path.endswith("/") else path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_ca_files(folder: Path, authority: Authority, prefix: str) -> int:
    count = 0
    certs = {"root": authority.certificate(CARole.ROOT),
             "issuing": authority.issuing_certificate,
             "ocsp": authority.ocsp_credentials()[0]}
    for name, cert in certs.items():
        der = cert.public_bytes(serialization.Encoding.DER)
        for ext in ("der", "crt", "cer"):
            _write(folder / "ca" / f"{prefix}{name}.{ext}", der)
        _write(folder / "ca" / f"{prefix}{name}.pem",
               cert.public_bytes(serialization.Encoding.PEM))
        count += 4
    return count


def _write_crls(folder: Path, authority: Authority, prefix: str) -> int:
    crls = {"issuing": authority.crl(delta=False), "issuing-delta": authority.crl(delta=True),
            "root": authority.crl(issuer="root")}
    for name, der in crls.items():
        _write(folder / "crl" / f"{prefix}{name}.crl", der)
    return len(crls)


def _write_ocsp(tree: Path, issuer: x509.Certificate, responder: Responder,
                records: Iterable[CertificateRecord]) -> int:
    count = 0
    for rec in records:
        serial = int(rec.serial, 16)
        for algorithm in CERT_ID_HASHES:
            request = ocsp_request(issuer, serial, algorithm)
            _write(tree / file_path(request), responder.respond(request))
            count += 1
    return count


def export(authorities: Iterable[tuple[Authority, Responder]],
           records: Iterable[CertificateRecord], folder: Path, now: datetime,
           version: str = "") -> ExportReport:
    """Write every public object of ``authorities`` (the default hierarchy first) and
    pre-signed OCSP responses for the unexpired ``records`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    live = [r for r in records if r.not_after > now]
    stamp = now.strftime("%Y%m%dT%H%M%S%f")
    tree = folder / f"ocsp-{stamp}"
    ca_files = crl_files = ocsp_files = 0
    for authority, responder in authorities:
        sm2 = authority.name is HierarchyName.SM2
        prefix = "sm2-" if sm2 else ""
        ca_files += _write_ca_files(folder, authority, prefix)
        crl_files += _write_crls(folder, authority, prefix)
        # The SM2 responder's URL is /ocsp/sm2 (pki.model.CASettings.ocsp_url); a
        # base64 DER request starts with "M" (0x30), so "sm2" never clashes.
        own = [r for r in live if r.hierarchy is authority.name]
        ocsp_files += _write_ocsp(tree / "sm2" if sm2 else tree, authority.issuing_certificate,
                                  responder, own)
    tree.mkdir(exist_ok=True)
    _swap_link(folder / OCSP_LINK, tree.name)
    report = ExportReport(folder, ca_files, crl_files, ocsp_files, version)
    _write(folder / STATE_FILE, json.dumps({"at": now.isoformat(), "version": version}).encode())
    return report


def _swap_link(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically; remove the trees no longer pointed at."""
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    if link.exists() and not link.is_symlink():
        shutil.rmtree(link)  # an old real folder: replace it by the link
    os.replace(tmp, link)
    for old in link.parent.glob(f"{OCSP_LINK}-*"):
        if old.name != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def last_export(folder: Path) -> tuple[datetime, str] | None:
    """(when, version) of the last export into ``folder``, or None."""
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        return datetime.fromisoformat(state["at"]), str(state["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

