"""The app factories: the IdP's and the PKI's WSGI apps built from the composition root.

``idp.web.app.build_app`` serves the provider; the console mounts on it with the
services it administers. Both apps get request ids, timing and the optional access
log from one WSGI layer (``idp.runtime.edge``) and ``/metrics``
(``idp.runtime.metrics``); on PostgreSQL the process listens for
other nodes' changes (``idp.runtime.changes``). Nothing is built at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Response, jsonify

from idp.console import init_app as init_console
from idp.runtime import db_faults, edge, metrics
from idp.runtime.config import time_zone
from idp.web.app import build_app
from idp.web.kit import unavailable_answer

if TYPE_CHECKING:
    from collections.abc import Callable

    from flask import Flask

    from idp.runtime.health import Readiness
    from idp.runtime.services import Services


def create_app(services: Services, readiness: Readiness | None = None) -> Flask:
    """The IdP as a WSGI app: OpenID Connect, login, the console and the probes
    (``readiness`` defaults to :func:`idp.runtime.health.idp_readiness`)."""
    from idp.runtime.health import idp_readiness

    app = build_app(services.provider)
    init_console(app, services, time_zone(str(services.config.get("idp", "timezone"))))
    add_probes(app, readiness or idp_readiness(services))
    _operations(app, services, "idp", unavailable_answer)
    return app


def create_pki_app(services: Services) -> Flask:
    """The PKI's public service (CA certificates, CRLs, OCSP) as a WSGI app."""
    from idp.runtime.health import pki_readiness
    from pki.http import create_app as create_pki
    from pki.http import unavailable_answer as pki_unavailable

    app = create_pki(services.ca, pki_readiness(services).report)
    _operations(app, services, "pki", pki_unavailable)
    return app


def _operations(app: Flask, services: Services, name: str,
                unavailable: Callable[[], Response]) -> None:
    metrics.install(app, name, engine=services.engine,
                    allow=services.config.get("serve", "metrics_allow"),
                    oldest=lambda: services.event_dispatcher.oldest_undelivered())
    edge.wrap(app, name, access_log=bool(services.config.get("serve", "access_log")))
    services.start_change_listener()
    # a failover's faults not already answered by the app's 503 handler (a
    # read-only standby, SQLSTATE 25006): the same 503, never a 500
    db_faults.register(app, unavailable)


def add_probes(app: Flask, readiness: Readiness) -> None:
    """``/healthz`` (the process answers) and ``/readyz`` (200 or 503 with each check)."""

    def healthz() -> Response:
        resp = jsonify({"alive": True})
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def readyz() -> Response:
        report = readiness.report()
        resp = jsonify(report.as_dict())
        resp.status_code = 200 if report.ready else 503
        resp.headers["Cache-Control"] = "no-store"
        return resp

    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])
