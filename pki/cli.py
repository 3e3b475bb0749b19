"""``govtrust ca|cert|crl``: the CA's commands (click edge).

``ctx.obj`` is the composition root (``idp.runtime.services.Services``); this module
only needs the attributes in :class:`PKIServices`. Serial numbers are written
and read as lowercase hex without colons; ``--json`` prints JSON; every
``PKIError`` becomes a message on stderr and a non-zero exit.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click

from pki.ceremony_cli import ceremony
from pki.errors import PKIError
from pki.model import CertStatus, HierarchyName, RevocationReason
from policies.profiles import PROFILE_NAMES

if TYPE_CHECKING:
    # The authority (cryptography, the stores) and SQLAlchemy load when a command
    # runs, not when ``govtrust cert --help`` builds the options.
    from pki.authority import CertificateAuthority, IssuedCertificate, IssuedKeyPair
    from pki.interfaces import CertificateSubject

MAX_CSR_READ = 1024 * 1024


class PersonLookup(Protocol):
    """Finds a person by uid (the directory service, wired by the composition root)."""

    def show(self, uid: str) -> CertificateSubject: ...


class PKIServices(Protocol):
    json: bool

    @property
    def ca(self) -> CertificateAuthority: ...

    @property
    def directory(self) -> PersonLookup: ...


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _emit(services: PKIServices, data: Any, text: str) -> None:
    if services.json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(text)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        # Imported here: only a command that reached the database can raise these.
        from sqlalchemy.exc import InterfaceError, OperationalError

        if isinstance(exc, OperationalError | InterfaceError):
            # The database is down, restarting or full: say so, without a traceback;
            # the transaction was rolled back, so nothing was half recorded.
            raise click.ClickException(
                f"cannot use the database, nothing was changed: "
                f"{str(exc.orig).splitlines()[0] if exc.orig else exc}") from None
        # A directory error (unknown uid, unreachable) is as clear a message here.
        if type(exc).__module__.startswith("directory"):
            raise click.ClickException(str(exc)) from None
        raise


def _parse_time(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


@click.group()
def ca() -> None:
    """The CA hierarchy."""


@ca.command("show")
@click.pass_obj
def ca_show(services: PKIServices) -> None:
    """The hierarchies (default, and SM2 if on), fingerprints and CRL/OCSP URLs."""
    with _errors():
        hierarchies = services.ca.hierarchies()
    lines: list[str] = []
    data: dict[str, Any] = {}
    for name, infos, urls in hierarchies:
        if len(hierarchies) > 1:
            lines.append(f"== {name.value} hierarchy ==")
        for info in infos:
            lines += [f"{info.role.value}: {info.subject}", f"  serial      {info.serial}",
                      f"  valid       {info.not_before:%Y-%m-%d} .. "
                      f"{info.not_after:%Y-%m-%d}",
                      f"  sha256      {info.sha256}", f"  key         {info.key_algorithm} "
                      f"({info.key_label})"]
        lines += [f"{k}: {v}" for k, v in urls.items()]
        entry = {"hierarchy": [i.as_dict() for i in infos], "urls": urls}
        if name is HierarchyName.ECDSA:
            # The default hierarchy stays at the top level, as before SM2 existed.
            data.update(entry)
        data.setdefault("hierarchies", {})[name.value] = entry
    if not hierarchies[0][1]:
        lines.insert(0, "no CA yet: run govtrust init")
    _emit(services, data, "\n".join(lines))


# The root ceremony: `govtrust ca ceremony issue-ca|crl` (pki.ceremony_cli).
ca.add_command(ceremony)


@click.group()
def cert() -> None:
    """Certificates: issue, revoke, hold, release, list."""


@cert.command("issue")
@click.option("--uid", help="The person (from the directory).")
@click.option("--app", help="The department app (tls-server).")
@click.option("--profile", "profile", required=True, type=click.Choice(PROFILE_NAMES))
@click.option("--algorithm", "hierarchy", default=HierarchyName.ECDSA.value, show_default=True,
              type=click.Choice([h.value for h in HierarchyName]),
              help="The hierarchy: the default one, or sm2 (SM3withSM2, GM/T 0015).")
@click.option("--csr", "csr_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A PKCS#10 request, PEM or DER.")
@click.option("--pkcs12", "p12_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Generate the key; write key and certificate here as PKCS#12.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The PKCS#12 passphrase (else $GOVTRUST_PKCS12_PASSPHRASE).")
@click.option("--dns", "dns_names", multiple=True, help="tls-server: names (approved list).")
@click.option("--approve", is_flag=True, help="tls-server: add the --dns names to the app's "
              "approved list first.")
@click.option("--key-out", type=click.Path(dir_okay=False, path_type=Path),
              help="tls-server without --csr: write the generated key (PEM, 0600) here.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the certificate (PEM) here; stdout without it.")
@click.option("--escrow", is_flag=True, help="user-encrypt: the KMC generates the key and "
              "escrows it; deliver it with --wrap-to (and --key-out) or --pkcs12.")
@click.option("--wrap-to", type=click.Path(dir_okay=False, path_type=Path),
              help="--escrow: wrap the key to this signing certificate of the person "
                   "(CMS EnvelopedData, PEM, written to --key-out; with --algorithm sm2 "
                   "a DER GM/T 0009 SM2EnvelopedKey to their SM2 signing certificate).")
@click.pass_obj
def cert_issue(services: PKIServices, uid: str | None, app: str | None, profile: str,
               hierarchy: str, csr_file: Path | None, p12_out: Path | None,
               passphrase_file: Path | None,
               dns_names: tuple[str, ...], approve: bool, key_out: Path | None,
               out: Path | None, escrow: bool, wrap_to: Path | None) -> None:
    """Issue a certificate from a CSR, or generate the key and write a PKCS#12."""
    if escrow or wrap_to is not None:
        if csr_file is not None or not escrow:
            raise click.UsageError("--escrow and --wrap-to go together, without --csr")
        from pki.kmc_cli import issue_escrowed

        pem, record = issue_escrowed(
            services, uid, profile, wrap_to,  # type: ignore[arg-type]
            _passphrase(passphrase_file) if p12_out is not None else None, key_out, p12_out,
            HierarchyName(hierarchy))
        if out is not None:
            out.write_bytes(pem)
        _emit(services, record, f"issued {record['serial']} to {record['owner']} "
              f"({profile}, key escrowed)" + (f": {out}" if out else "\n" + pem.decode()))
        return
    if (csr_file is None) == (p12_out is None) and not (profile == "tls-server" and key_out):
        raise click.UsageError("give exactly one of --csr FILE or --pkcs12 OUT")
    csr = None
    if csr_file is not None:
        try:
            with csr_file.open("rb") as handle:
                # Read a bounded amount; the CA refuses anything above its own cap.
                csr = handle.read(MAX_CSR_READ)
        except OSError as exc:
            raise click.ClickException(f"cannot read {csr_file}: {exc.strerror}") from None
    passphrase = _passphrase(passphrase_file) if p12_out is not None else None
    actor = _actor()
    with _errors():
        authority = services.ca.hierarchy_of(HierarchyName(hierarchy))
        result: IssuedCertificate | IssuedKeyPair
        if profile == "tls-server":
            if not app:
                raise click.UsageError("tls-server needs --app NAME")
            if approve and dns_names:
                authority.approve_dns(app, list(dns_names), actor=actor)
            result = authority.issue_tls_server(app, csr=csr, dns_names=dns_names,
                                                passphrase=passphrase, actor=actor)
        else:
            if not uid:
                raise click.UsageError(f"{profile} needs --uid UID")
            person = services.directory.show(uid)
            if csr is not None:
                result = authority.issue_from_csr(person, profile, csr, actor=actor)
            else:
                assert passphrase is not None
                result = authority.issue_pkcs12(person, profile, passphrase, actor=actor)
    from pki.authority import IssuedKeyPair

    issued = result.issued if isinstance(result, IssuedKeyPair) else result
    if isinstance(result, IssuedKeyPair):
        if p12_out is not None:
            _write_private(p12_out, result.pkcs12)
        if key_out is not None:
            from cryptography.hazmat.primitives import serialization

            _write_private(key_out, result.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
    if out is not None:
        out.write_bytes(issued.pem)
        _emit(services, issued.record.as_dict(),
              f"issued {issued.record.serial} to {issued.record.owner_uid} ({profile}): {out}")
    elif services.json:
        data = issued.record.as_dict()
        data["pem"] = issued.pem.decode()
        _emit(services, data, "")
    else:
        click.echo(issued.pem.decode(), nl=False)


def _passphrase(path: Path | None) -> bytes:
    if path is not None:
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    else:
        value = os.environ.get("GOVTRUST_PKCS12_PASSPHRASE", "")
    if not value:
        raise click.UsageError("--pkcs12 needs --passphrase-file (or "
                               "$GOVTRUST_PKCS12_PASSPHRASE)")
    return value.encode("utf-8")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _change(services: PKIServices, verb: str, call: Callable[[], Any]) -> None:
    with _errors():
        rec = call()
    _emit(services, rec.as_dict(), f"{verb} {rec.serial}: {rec.status.value}"
          + (f" ({rec.reason.value})" if rec.reason else ""))


@cert.command("revoke")
@click.argument("serial")
@click.option("--reason", default="unspecified", show_default=True,
              type=click.Choice([r.value for r in RevocationReason
                                 if r not in (RevocationReason.CERTIFICATE_HOLD,
                                              RevocationReason.REMOVE_FROM_CRL)],
                                case_sensitive=False))
@click.option("--invalidity-date", help="When the key is known or suspected compromised "
              "(ISO 8601).")
@click.pass_obj
def cert_revoke(services: PKIServices, serial: str, reason: str,
                invalidity_date: str | None) -> None:
    """Revoke a certificate for good (RFC 5280 reason)."""
    when = _parse_time(invalidity_date) if invalidity_date else None
    _change(services, "revoked", lambda: services.ca.revoke(
        serial, RevocationReason.parse(reason), when, actor=_actor()))


@cert.command("hold")
@click.argument("serial")
@click.pass_obj
def cert_hold(services: PKIServices, serial: str) -> None:
    """Suspend a certificate (certificateHold)."""
    _change(services, "held", lambda: services.ca.hold(serial, actor=_actor()))


@cert.command("release")
@click.argument("serial")
@click.pass_obj
def cert_release(services: PKIServices, serial: str) -> None:
    """Release a certificate from hold."""
    _change(services, "released", lambda: services.ca.release(serial, actor=_actor()))


@cert.command("list")
@click.option("--uid", help="Only this person's (or app's) certificates.")
@click.option("--status", type=click.Choice([s.value for s in CertStatus]))
@click.option("--expiring-within", type=click.IntRange(min=0), metavar="DAYS",
              help="Only those expiring within DAYS days.")
@click.pass_obj
def cert_list(services: PKIServices, uid: str | None, status: str | None,
              expiring_within: int | None) -> None:
    """List issued certificates."""
    with _errors():
        records = services.ca.find(
            uid=uid, status=CertStatus(status) if status else None,
            expiring_within=timedelta(days=expiring_within) if expiring_within is not None
            else None)
    lines = [f"{r.serial}  {r.status.value:7}  {r.profile:12}  {r.not_after:%Y-%m-%d}  "
             f"{r.owner_uid}  {r.subject}" for r in records]
    _emit(services, [r.as_dict() for r in records], "\n".join(lines) or "no certificates")


@click.group()
def crl() -> None:
    """Certificate revocation lists."""


@crl.command("generate")
@click.option("--delta", is_flag=True, help="A delta CRL against the newest full CRL.")
@click.option("--algorithm", "hierarchy", default=HierarchyName.ECDSA.value, show_default=True,
              type=click.Choice([h.value for h in HierarchyName]),
              help="Whose CRL: the default hierarchy's or the SM2 one's.")
@click.pass_obj
def crl_generate(services: PKIServices, delta: bool, hierarchy: str) -> None:
    """Generate and store a new CRL now."""
    with _errors():
        rec = services.ca.hierarchy_of(HierarchyName(hierarchy)).generate_crl(
            delta=delta, actor=_actor())
    data = {"number": rec.number, "delta": rec.delta, "base": rec.base_number,
            "entries": rec.entries, "this_update": rec.this_update.isoformat(),
            "next_update": rec.next_update.isoformat(), "bytes": len(rec.der)}
    _emit(services, data, f"{'delta ' if delta else ''}CRL {rec.number}: {rec.entries} "
          f"entries, next update {rec.next_update:%Y-%m-%d %H:%M}Z")
