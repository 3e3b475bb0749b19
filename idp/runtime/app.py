"""The app factory: the IdP's WSGI app built from the composition root.

``idp.web.app.build_app`` serves the provider; the console mounts on it with the
services it administers. Nothing is built at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from idp.console import init_app as init_console
from idp.runtime.config import time_zone
from idp.web.app import build_app

if TYPE_CHECKING:
    from flask import Flask

    from idp.runtime.services import Services


def create_app(services: Services) -> Flask:
    """The IdP as a WSGI app: OpenID Connect, login and the console."""
    app = build_app(services.provider)
    init_console(app, services, time_zone(str(services.config.get("idp", "timezone"))))
    return app
