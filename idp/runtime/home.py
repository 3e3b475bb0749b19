"""``govtrust init``: create a home (config, secrets, database, CA, directory, IdP keys).

Idempotent: a second run keeps what exists and fills in what is missing.
Each package contributes one step below; each step reports what it did.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from idp.runtime.config import CONFIG_NAME, ConfigError, write_config
from idp.runtime.services import Services

if TYPE_CHECKING:
    from pki.keys import KeyStore

Echo = Callable[[str], None]


@dataclass(frozen=True)
class OfflineRoot:
    """``init --offline-root``: the medium folder and the root key's passphrase."""

    medium: Path
    passphrase: bytes = field(repr=False)


def initialize(services: Services, *, demo: bool, echo: Echo,
               offline_root: OfflineRoot | None = None) -> dict[str, Any]:
    config = services.config
    # Checked before anything is written, to the home or to the medium.
    root_keys = _root_medium(services, offline_root) if offline_root is not None else None
    config.home.mkdir(parents=True, exist_ok=True)
    os.chmod(config.home, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    report: dict[str, Any] = {"home": str(config.home)}
    if not (config.home / CONFIG_NAME).exists():
        if demo and "GOVTRUST_PKI_SM2" not in config.environ:
            # The demo shows both hierarchies, so a newcomer sees the SM2 one too;
            # set before anything is built from the settings, and written below.
            pki = config.sections["pki"]
            if isinstance(pki, dict):
                pki["sm2"] = True
        write_config(config.home, _persistable(config.sections))
        report["config"] = "written"
    else:
        report["config"] = "kept"
    made = config.ensure_secrets()
    report["secrets"] = f"generated {len(made)}" if made else "kept"

    from idp.runtime.db import current_revision, upgrade

    upgrade(services.engine)
    report["database"] = f"revision {current_revision(services.engine)}"

    # One managed slapd for every step: the CA publishes its CRL and the demo
    # certificates to it, so it stays up until the last step is done.
    started = False
    if config.directory_settings().managed:
        services.slapd.configure()
        started = services.slapd.start()
    try:
        _init_directory(services, demo, echo, report)
        _init_pki(services, demo, echo, report, root_keys)
        _init_idp(services, demo, echo, report)
        cert, _key, bundle = services.tls_server_files()
        report["tls"] = f"{cert} (trust {bundle})"
    finally:
        if started:
            services.directory_gateway.close()
            services.slapd.stop()
    return report


def _persistable(sections: Mapping[str, Mapping[str, Any]]
                 ) -> dict[str, dict[str, Any]]:
    """The effective settings (defaults plus GOVTRUST_* overrides at init), less the
    password of a database URL: that stays in GOVTRUST_DATABASE_URL or libpq's
    own files (PGPASSFILE), never in the TOML."""
    out = {name: dict(values) for name, values in sections.items()}
    url = make_url(str(out["database"]["url"]))
    if url.password is not None:
        out["database"]["url"] = url.set(password=None).render_as_string(hide_password=False)
    return out


def _init_directory(services: Services, demo: bool, echo: Echo, report: dict[str, Any]) -> None:
    """Build the managed slapd (or check the external one); load demo people."""
    settings = services.config.directory_settings()
    started = False
    if settings.managed:
        slapd = services.slapd
        built = slapd.configure()
        started = slapd.start()
        created = slapd.ensure_base()  # also pushes policies/passwords.yaml into ppolicy
        report["directory"] = (f"managed slapd at {slapd.uri} ("
                               f"{'built' if built else 'kept'}, "
                               f"{len(created)} base entries created)")
    else:
        services.directory_gateway.ping()
        report["directory"] = f"external directory at {', '.join(settings.uris)}"
    try:
        if not demo:
            return
        from directory.demo import is_seeded, seed_demo, write_accounts

        accounts_file = services.config.home / "demo-accounts.txt"
        if is_seeded(services.directory):
            report["demo directory"] = f"kept (accounts in {accounts_file})"
            return
        accounts = seed_demo(services.directory,
                             service_password=services.config.secret("ldap-service-password"))
        write_accounts(accounts_file, accounts, settings.base_dn, settings.uris[0])
        report["demo directory"] = (f"{len(accounts.people) + 1} people; every account "
                                    f"in {accounts_file}")
        echo("Demo accounts to try:")
        for line in accounts.lines(settings.base_dn, settings.uris[0]):
            echo("  " + line)
    finally:
        if started:
            services.directory_gateway.close()
            services.slapd.stop()


def _root_medium(services: Services, offline_root: OfflineRoot) -> KeyStore | None:
    """The medium's key store for a new home, checked before anything is written
    (None: the home's CA exists already, its root key offline: nothing to write)."""
    from pki.errors import RootKeyError, RootKeyProblem
    from pki.offline import medium_store

    config = services.config
    if (config.home / CONFIG_NAME).exists() and _ca_exists(services):
        if any(a.root_key_in_home for a in services.ca.authorities()):
            raise RootKeyError(RootKeyProblem.ONLINE_ROOT, "this home already has its CA "
                               "with the root key in it; --offline-root applies to a new "
                               "home only (docs/production.md: moving a root key offline)")
        return None
    try:
        home_passphrase = config.secret_bytes("ca-passphrase")
    except ConfigError:
        home_passphrase = b""  # generated below, at random: it cannot equal the root's
    # Both hierarchies' labels: the demo may switch the SM2 one on further down.
    return medium_store(offline_root.medium, offline_root.passphrase, home_passphrase,
                        ["root", "sm2-root"])


def _ca_exists(services: Services) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return services.ca.initialized
    except SQLAlchemyError:
        return False  # no tables yet: a home whose init stopped early


def _init_pki(services: Services, demo: bool, echo: Echo, report: dict[str, Any],
              root_keys: KeyStore | None = None) -> None:
    """Create the root CA, the issuing CA and the OCSP responder certificate; with
    ``root_keys`` (an offline medium), each root key there and only there."""
    ca = services.ca
    existed = ca.initialized
    hierarchy = ca.initialize(actor="init", root_keys=root_keys)
    if root_keys is not None and not existed:
        report["root key"] = "offline: written to the medium only"
        echo("root key written to the medium, not to the home: take the medium offline")
    pki_dir = services.config.home / "pki"
    pki_dir.mkdir(parents=True, exist_ok=True)
    # The chain, for TLS clients and relying parties that want a file.
    from cryptography.hazmat.primitives.serialization import Encoding

    (pki_dir / "chain.pem").write_bytes(ca.issuing_certificate.public_bytes(Encoding.PEM)
                                        + ca.root_certificate.public_bytes(Encoding.PEM))
    (pki_dir / "root.pem").write_bytes(ca.root_certificate.public_bytes(Encoding.PEM))
    if ca.settings.sm2:
        sm2 = ca.sm2
        (pki_dir / "sm2-chain.pem").write_bytes(
            sm2.issuing_certificate.public_bytes(Encoding.PEM)
            + sm2.root_certificate.public_bytes(Encoding.PEM))
        (pki_dir / "sm2-root.pem").write_bytes(sm2.root_certificate.public_bytes(Encoding.PEM))
    report["pki"] = "kept" if existed else "created"
    for info in hierarchy:
        report[f"ca_{info.role.value}"] = f"{info.subject} sha256 {info.sha256}"
        if not existed:
            echo(f"{info.role.value} CA: {info.subject}  sha256 {info.sha256}")


SAMPLE_APP_FILE = "sample-app-client.json"


def _init_idp(services: Services, demo: bool, echo: Echo, report: dict[str, Any]) -> None:
    """Create the token signing keys; register the demo department apps."""
    import json

    from idp.oidc.clients import build_client

    provider = services.provider
    made = provider.keys.ensure()
    report["idp keys"] = f"created {len(made)}" if made else "kept"
    if not demo:
        return
    sample_url = str(services.config.get("demo", "sample_app_url")).rstrip("/")
    path = services.config.home / SAMPLE_APP_FILE
    if path.exists():
        known = json.loads(path.read_text(encoding="utf-8")).get("client_id", "")
        if provider.clients.get(known) is not None:
            report["sample app"] = "kept"
            return
    client, secret = provider.clients.add(build_client(
        name="示例部门应用", redirect_uris=[f"{sample_url}/callback"], level=2,
        first_party=True, post_logout_redirect_uris=[f"{sample_url}/"]))
    data = {"issuer": provider.issuer, "client_id": client.client_id, "client_secret": secret,
            "redirect_uri": f"{sample_url}/callback"}
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, indent=2)
    report["sample app"] = f"registered {client.client_id} ({path})"
    echo(f"sample app client written to {path}")
