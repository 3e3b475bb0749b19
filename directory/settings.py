"""How GovTrust reaches its directory (built by ``idp.runtime.config`` from the TOML)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DirectorySettings:
    # Provider first, then replicas; the gateway fails over in this order.
    uris: tuple[str, ...]
    base_dn: str
    # The DN GovTrust itself binds as for writes (the managed slapd's rootdn).
    bind_dn: str
    bind_password: str
    # True: GovTrust builds and runs its own slapd under ``data_dir``.
    managed: bool = True
    data_dir: Path = Path("slapd")
    timeout: float = 5.0
    # People's binds one process may have in flight at once (0: no limit); the rest
    # wait their turn for at most ``timeout`` seconds (see ``directory.connections``).
    concurrent_binds: int = 0
    # OID arc for the govPerson schema (a private enterprise number arc).
    oid_arc: str = "1.3.6.1.4.1.61000.1"
    # The domain of UPNs (uid@realm) and default e-mail addresses.
    realm: str = "beijing.gov.cn"
