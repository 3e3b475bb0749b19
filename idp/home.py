"""``govtrust init``: create a home (config, secrets, database, CA, directory, IdP keys).

Idempotent: a second run keeps what exists and fills in what is missing.
Each package contributes one step below; each step reports what it did.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from idp.config import CONFIG_NAME, default_sections, write_config
from idp.services import Services

Echo = Callable[[str], None]


def initialize(services: Services, *, demo: bool, echo: Echo) -> dict[str, Any]:
    config = services.config
    config.home.mkdir(parents=True, exist_ok=True)
    os.chmod(config.home, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    report: dict[str, Any] = {"home": str(config.home)}
    if not (config.home / CONFIG_NAME).exists():
        write_config(config.home, default_sections(config.home))
        report["config"] = "written"
    else:
        report["config"] = "kept"
    made = config.ensure_secrets()
    report["secrets"] = f"generated {len(made)}" if made else "kept"

    from idp.db import current_revision, upgrade

    upgrade(services.engine)
    report["database"] = f"revision {current_revision(services.engine)}"

    _init_directory(services, demo, echo, report)
    _init_pki(services, demo, echo, report)
    _init_idp(services, demo, echo, report)
    return report


def _init_directory(services: Services, demo: bool, echo: Echo, report: dict[str, Any]) -> None:
    """Build the managed slapd (or check the external one); load demo people."""


def _init_pki(services: Services, demo: bool, echo: Echo, report: dict[str, Any]) -> None:
    """Create the root CA, the issuing CA and the OCSP responder certificate."""


def _init_idp(services: Services, demo: bool, echo: Echo, report: dict[str, Any]) -> None:
    """Create the token signing key; register the demo department apps."""
