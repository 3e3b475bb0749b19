"""The app factory: the IdP's WSGI app built from the composition root.

``idp.web.app.build_app`` serves the provider; the console mounts on it with the
services it administers. Nothing is built at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Response
from flask import request as req

from idp.console import init_app as init_console
from idp.runtime import db_faults
from idp.runtime.config import time_zone
from idp.web.app import build_app
from idp.web.kit import API_PATHS, api_error, page_error

if TYPE_CHECKING:
    from flask import Flask

    from idp.runtime.services import Services


def create_app(services: Services) -> Flask:
    """The IdP as a WSGI app: OpenID Connect, login and the console."""
    app = build_app(services.provider)
    init_console(app, services, time_zone(str(services.config.get("idp", "timezone"))))
    db_faults.register(app, _unavailable)
    return app


def _unavailable() -> Response:
    """A database failover in progress: 503, in the protocol's words or on a page."""
    if req.path.startswith(API_PATHS):
        # RFC 6749 section 4.1.2.1 names this condition temporarily_unavailable.
        return api_error("temporarily_unavailable", "database failover in progress", 503)
    return page_error("error.unavailable", 503)
