"""The web console at ``/console``: self-service for every civil servant, and the
administration pages for security administrators.

A Flask blueprint mounted inside the IdP app; it reuses the IdP's SSO session
cookie, CSRF tokens, language choice and security headers. The views are thin:
what they show comes from ``idp.console.queries`` (plain functions) and the
services of the composition root (directory, CA, one-time codes, clients, audit).
Pages are server-rendered (``templates/console``); CSS is served from
``idp/web/static``; there is no script and nothing from another origin.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import TYPE_CHECKING

from flask import Blueprint, current_app

if TYPE_CHECKING:
    from flask import Flask

    from idp.console.ports import ConsoleServices

EXTENSION = "govtrust.services"
ZONE_EXTENSION = "govtrust.zone"

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")


def init_app(app: Flask, services: ConsoleServices, zone: tzinfo) -> None:
    """Mount the console on the IdP app. ``services`` is what the composition root
    wires; ``zone`` is the one pages show times in (``[idp] timezone``)."""
    from idp.console import admin, kmc, password, views  # noqa: F401 - routes register on ``bp``

    app.extensions[EXTENSION] = services
    app.extensions[ZONE_EXTENSION] = zone
    app.add_template_filter(lambda d: d.astimezone(zone), "localtime")
    app.register_blueprint(bp)


def local_zone() -> tzinfo:
    """The configured zone of the app serving this request."""
    found: tzinfo = current_app.extensions[ZONE_EXTENSION]
    return found
