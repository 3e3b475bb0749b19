"""The web console at ``/console``: self-service for every civil servant, and the
administration pages for security administrators (issue 6).

A Flask blueprint mounted inside the IdP app; it reuses the IdP's SSO session
cookie, CSRF tokens, language choice and security headers. The views are thin:
what they show comes from ``idp.console.queries`` (plain functions) and the
services of the composition root (directory, CA, one-time codes, clients, audit).
Pages are server-rendered (``templates/console``); CSS is served from
``idp/static``; there is no script and nothing from another origin.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import TYPE_CHECKING

from flask import Blueprint

if TYPE_CHECKING:
    from flask import Flask

    from idp.services import Services

EXTENSION = "govtrust.services"

bp = Blueprint("console", __name__, url_prefix="/console")


def init_app(app: Flask, services: Services) -> None:
    """Mount the console on the IdP app; ``services`` is the composition root."""
    from idp.console import admin, views  # noqa: F401 - the routes register on ``bp``

    app.extensions[EXTENSION] = services
    zone = local_zone(str(services.config.get("idp", "timezone")))
    app.add_template_filter(lambda d: d.astimezone(zone), "localtime")
    app.register_blueprint(bp)


def local_zone(name: str) -> tzinfo:
    """The zone pages show times in; an unknown name is a configuration error."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from idp.config import ConfigError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("idp.timezone", f"unknown time zone {name!r}") from None
