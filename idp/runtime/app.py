"""The app factory: the IdP's WSGI app built from the composition root.

``idp.web.app.build_app`` serves the provider; the console mounts on it with the
services it administers. Nothing is built at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Response, jsonify

from idp.console import init_app as init_console
from idp.runtime.config import time_zone
from idp.web.app import build_app

if TYPE_CHECKING:
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
    return app


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
