"""``govtrust ca ceremony issue-ca|crl``: the root ceremony (click edge).

The root key is brought from its offline medium (``--root-key MEDIUM/root.key.pem``,
written by ``govtrust init --offline-root``) for one signature and left there: it
is decrypted in this process only, never copied into the home. Without
``--root-key`` the home's own root key is used if it has one (a home made
without ``--offline-root``); otherwise the command refuses and says what to give.
A key that is not this home's root (another CA's medium) and a wrong passphrase
are refused before anything is signed or recorded.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click

from pki.errors import PKIError

if TYPE_CHECKING:
    from pki.authority import CertificateAuthority
    from pki.keys import Signer

MAX_PASSPHRASE_READ = 4096


class CeremonyServices(Protocol):
    json: bool

    @property
    def ca(self) -> CertificateAuthority: ...


def _actor() -> str:
    try:
        return f"ceremony:{getpass.getuser()}"
    except (KeyError, OSError):
        return "ceremony"


def _emit(services: CeremonyServices, data: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2) if services.json else text)


def read_passphrase(path: Path) -> bytes:
    """A passphrase file's first line (a trailing newline is not part of it)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PASSPHRASE_READ)
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    value = data.splitlines()[0] if data.strip() else b""
    if not value:
        raise click.ClickException(f"{path} holds no passphrase")
    return value


def _root(services: CeremonyServices, root_key: Path | None,
          passphrase_file: Path | None) -> Signer:
    from pki import offline

    if root_key is None:
        # root_signer refuses (RootKeyProblem.OFFLINE) when the home has no root key.
        return services.ca.root_signer()
    if passphrase_file is None:
        raise click.UsageError("--root-key needs --root-passphrase-file")
    return offline.open_root_key(root_key, read_passphrase(passphrase_file))


_ROOT_KEY = click.option(
    "--root-key", type=click.Path(dir_okay=False, path_type=Path),
    help="The root key file on its offline medium (MEDIUM/root.key.pem).")
_PASSPHRASE = click.option(
    "--root-passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
    help="The root key's passphrase (not the home's).")


@click.group()
def ceremony() -> None:
    """The root ceremony: sign with the root key from its offline medium."""


@ceremony.command("issue-ca")
@_ROOT_KEY
@_PASSPHRASE
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the new chain (issuing CA, root) as PEM here.")
@click.pass_obj
def issue_ca(services: CeremonyServices, root_key: Path | None,
             root_passphrase_file: Path | None, out: Path | None) -> None:
    """Sign a new issuing CA (its key made in the home's key store)."""
    try:
        root = _root(services, root_key, root_passphrase_file)
        info = services.ca.ceremony_issue_ca(root, _actor())
        authority = services.ca.authority_of_root(root)
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    if out is not None:
        from cryptography.hazmat.primitives.serialization import Encoding

        out.write_bytes(authority.issuing_certificate.public_bytes(Encoding.PEM)
                        + authority.root_certificate.public_bytes(Encoding.PEM))
    _emit(services, info.as_dict(),
          f"new issuing CA {info.subject}\n  serial {info.serial}\n  sha256 {info.sha256}\n"
          f"  key    {info.key_label}\n  valid  {info.not_before:%Y-%m-%d} .. "
          f"{info.not_after:%Y-%m-%d}")


@ceremony.command("crl")
@_ROOT_KEY
@_PASSPHRASE
@click.pass_obj
def root_crl(services: CeremonyServices, root_key: Path | None,
             root_passphrase_file: Path | None) -> None:
    """Sign the root's CRL (valid [pki] root_crl_days)."""
    try:
        rec = services.ca.ceremony_root_crl(_root(services, root_key, root_passphrase_file),
                                            _actor())
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    _emit(services, {"number": rec.number, "this_update": rec.this_update.isoformat(),
                     "next_update": rec.next_update.isoformat()},
          f"root CRL #{rec.number} signed; next update {rec.next_update:%Y-%m-%d %H:%M} UTC")
