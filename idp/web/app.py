"""The IdP's Flask app without the console: the OpenID Connect and login views,
the security headers and the one error handler, and in front of them the
introspection fast path (``idp.web.introspection``).

``idp.runtime.app.create_app`` adds the console on top; tests of the protocol may
build this smaller app around a provider of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask
from flask.sessions import NullSession, SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

from idp.web import login_views, oidc_views, password_views
from idp.web.client_calls import ClientCallFastPath
from idp.web.kit import (
    MAX_BODY,
    PROVIDER_EXTENSION,
    UNAVAILABLE,
    http_error,
    security_headers,
    unavailable,
)

if TYPE_CHECKING:
    from flask import Request

    from idp.oidc.provider import Provider


class NoFlaskSession(SecureCookieSessionInterface):
    """Flask's cookie session, never used here: the SSO session is our own cookie
    (``idp.login.sessions``) and CSRF tokens are HMACs of a seed cookie (``kit``).

    Flask would still open a session for every request and, without a secret key,
    build a fresh refusing ``NullSession`` each time; one shared instance does the
    same (any write raises) without the per-request work."""

    _none = NullSession()

    def open_session(self, app: Flask, request: Request) -> NullSession:
        return self._none


def build_app(provider: Provider) -> Flask:
    """A WSGI app serving ``provider``; templates and static files are this package's."""
    app = Flask("idp.web")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_BODY
    app.config["JSON_AS_ASCII"] = False
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.session_interface = NoFlaskSession()
    app.extensions[PROVIDER_EXTENSION] = provider
    app.register_blueprint(oidc_views.bp)
    app.register_blueprint(login_views.bp)
    app.register_blueprint(password_views.bp)
    app.after_request(security_headers)
    app.register_error_handler(HTTPException, http_error)
    for cls in UNAVAILABLE:
        app.register_error_handler(cls, unavailable)
    # The common introspection and client-credentials requests, answered before
    # Flask (the same answers).
    app.wsgi_app = ClientCallFastPath(app.wsgi_app, app, provider)  # type: ignore[method-assign]
    return app
