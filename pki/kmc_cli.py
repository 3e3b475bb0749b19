"""``govtrust cert issue --escrow`` and ``govtrust kmc``: the KMC's commands (click edge).

The CLI is the operator's: it has no session, so it may give a person their
escrowed key only wrapped to that person's own signing certificate (CMS
EnvelopedData, which only the holder of the signing key opens) or, at issuance,
in a PKCS#12 under a passphrase the person chose. Recovering someone else's key
is done in the console, with m-of-n approvals; here it can only be listed.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Protocol

import click
from cryptography import x509

from pki.envelope import to_pem
from pki.errors import PKIError
from pki.interfaces import CertificateSubject
from pki.kmc import (
    DeliveredKey,
    Delivery,
    DeliveryFormat,
    KeyManagementCentre,
    Pkcs12,
    WrapTo,
)
from pki.model import HierarchyName

MAX_CERT_READ = 64 * 1024


class KmcPerson(CertificateSubject, Protocol):
    @property
    def groups(self) -> tuple[str, ...]: ...


class KmcLookup(Protocol):
    def show(self, uid: str) -> KmcPerson: ...


class KmcServices(Protocol):
    json: bool

    @property
    def kmc(self) -> KeyManagementCentre: ...

    @property
    def directory(self) -> KmcLookup: ...


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def read_certificate(path: Path) -> x509.Certificate:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CERT_READ)
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise click.ClickException(f"{path} is not a certificate (PEM or DER)") from None


def delivery_of(wrap_to: Path | None, passphrase: bytes | None) -> Delivery:
    if wrap_to is not None:
        return WrapTo(read_certificate(wrap_to))
    assert passphrase is not None
    return Pkcs12(passphrase)


def write_delivered(key: DeliveredKey, path: Path) -> None:
    """The wrapped key, 0600: PEM ``CMS`` for an envelope, DER for a PKCS#12 and for
    a GM/T 0009 ``SM2EnvelopedKey`` (the form USB-key tools import; no PEM label is
    standard for it)."""
    data = to_pem(key.data) if key.format is DeliveryFormat.CMS else key.data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@click.group()
def kmc() -> None:
    """The key management centre: escrowed encryption keys and their recovery."""


@kmc.command("recover")
@click.option("--uid", required=True, help="The owner of the key.")
@click.option("--serial", required=True, help="The encryption certificate (hex).")
@click.option("--wrap-to", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The owner's own valid signing certificate (PEM or DER).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the wrapped key here (PEM CMS, opened with openssl cms "
                   "-decrypt and the signing key; an SM2 key: DER SM2EnvelopedKey).")
@click.pass_obj
def kmc_recover(services: KmcServices, uid: str, serial: str, wrap_to: Path,
                out: Path) -> None:
    """Give a person their own escrowed encryption key again, wrapped to their
    signing certificate."""
    certificate = read_certificate(wrap_to)
    try:
        person = services.directory.show(uid)
        key = services.kmc.recover_own(person, serial.lower(), WrapTo(certificate),
                                       level=None, actor=cli_actor())
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        if type(exc).__module__.startswith("directory"):
            raise click.ClickException(str(exc)) from None
        raise
    write_delivered(key, out)
    _say(services, {"serial": key.serial, "format": key.format.value, "out": str(out)},
         f"key of {key.serial} wrapped to {uid}'s certificate: {out}")


@kmc.command("requests")
@click.pass_obj
def kmc_requests(services: KmcServices) -> None:
    """Recovery requests and their approvals."""
    try:
        found = services.kmc.requests()
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    rows = [{"id": r.id, "serial": r.serial, "owner": r.owner_uid,
             "requester": r.requester_uid, "state": r.state.value,
             "approvals": list(r.approvals), "required": r.required,
             "reason": r.reason, "expires_at": r.expires_at.isoformat()} for r in found]
    lines = [f"{r.id}  {r.state.value:9}  {len(r.approvals)}/{r.required}  {r.serial}  "
             f"{r.owner_uid} <- {r.requester_uid}: {r.reason}" for r in found]
    _say(services, rows, "\n".join(lines) or "no recovery requests")


def _say(services: KmcServices, data: object, text: str) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2) if services.json else text)


def issue_escrowed(services: KmcServices, uid: str | None, profile: str,
                   wrap_to: Path | None, passphrase: bytes | None,
                   key_out: Path | None, p12_out: Path | None,
                   hierarchy: HierarchyName = HierarchyName.ECDSA
                   ) -> tuple[bytes, dict[str, str]]:
    """``cert issue --escrow``: the KMC generates and escrows the key, the CA issues
    the certificate; the wrapped key goes to ``key_out`` (CMS) or ``p12_out``.
    Returns the certificate PEM and its record."""
    if not uid:
        raise click.UsageError("--escrow needs --uid UID")
    if (wrap_to is None) == (p12_out is None):
        raise click.UsageError("--escrow needs exactly one of --wrap-to SIGNCERT "
                               "(with --key-out) or --pkcs12 OUT")
    if wrap_to is not None and key_out is None:
        raise click.UsageError("--wrap-to needs --key-out FILE for the wrapped key")
    delivery = delivery_of(wrap_to, passphrase)
    try:
        person = services.directory.show(uid)
        done = services.kmc.issue_escrowed(person, delivery, profile_name=profile,
                                           actor=cli_actor(), hierarchy=hierarchy)
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        if type(exc).__module__.startswith("directory"):
            raise click.ClickException(str(exc)) from None
        raise
    target = key_out if wrap_to is not None else p12_out
    assert target is not None
    write_delivered(done.key, target)
    return done.issued.pem, done.issued.record.as_dict()
