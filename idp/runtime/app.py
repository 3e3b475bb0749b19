"""The app factories: the IdP's and the PKI's WSGI apps built from the composition root.

``idp.web.app.build_app`` serves the provider; the console mounts on it with the
services it administers. Both apps get request ids (``idp.runtime.logs``) and
``/metrics`` (``idp.runtime.metrics``); on PostgreSQL the process listens for
other nodes' changes (``idp.runtime.changes``). Nothing is built at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Response
from flask import request as req

from idp.console import init_app as init_console
from idp.runtime import db_faults, logs, metrics
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
    _operations(app, services, "idp")
    return app


def create_pki_app(services: Services) -> Flask:
    """The PKI's public service (CA certificates, CRLs, OCSP) as a WSGI app."""
    from pki.http import create_app as create_pki

    app = create_pki(services.ca)
    _operations(app, services, "pki")
    return app


def _operations(app: Flask, services: Services, name: str) -> None:
    metrics.install(app, name, engine=services.engine,
                    allow=services.config.get("serve", "metrics_allow"),
                    oldest=lambda: services.event_dispatcher.oldest_undelivered())
    logs.install(app)
    services.start_change_listener()
    # a failover's faults not already answered by the web edge's 503 handler
    # (a read-only standby, SQLSTATE 25006): 503 with Retry-After, never a 500
    db_faults.register(app, _unavailable)


def _unavailable() -> Response:
    """A database failover in progress: 503, in the protocol's words or on a page."""
    if req.path.startswith(API_PATHS):
        # RFC 6749 section 4.1.2.1 names this condition temporarily_unavailable.
        return api_error("temporarily_unavailable", "database failover in progress", 503)
    return page_error("error.unavailable", 503)
