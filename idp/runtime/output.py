"""How every ``govtrust`` command prints: JSON under ``--json``, else text."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from idp.runtime.services import Services


def emit(services: Services, data: Any, text: str) -> None:
    """Print ``data`` as JSON under ``--json``, else ``text``."""
    if services.json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(text)
