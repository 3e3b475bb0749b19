"""``POST /introspect`` and the client-credentials and refresh ``POST /token`` in
front of Flask: the web edge of ``idp.oidc.introspection``, ``idp.oidc.client_grant``
and ``idp.oidc.refresh_grant``.

A WSGI layer around the IdP's Flask app (the way ``pki.http.OCSPFastPath`` answers
OCSP). For a request one of those modules reads, it makes exactly what the Flask
views (``idp.web.oidc_views.introspect`` and ``token``) make of it, with none of
the framework between: the same throttle keys and budget
(``idp.login.throttle.client_checks``: blocked is 429 before anything is looked
up; every 4xx answer counts one failure), the same status codes, JSON bodies and
headers (authlib's error bodies, the web kit's security headers, ``no-store``).
Any other request, including every malformed or hostile one, goes to Flask with
its body as it came. An exception goes through the Flask app's own error handlers
(a database failover is a 503 with ``Retry-After``, as elsewhere).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from authlib.oauth2 import OAuth2Error

from idp.login.forwarded import client_address
from idp.login.throttle import CLIENT_RETRY_AFTER, client_checks
from idp.oidc import client_grant, introspection, refresh_grant
from idp.oidc.canonical import FORM_TYPE, ClientCall, authenticate
from idp.web.kit import HSTS, NO_STORE, SECURITY_HEADERS

if TYPE_CHECKING:
    from flask import Flask

    from idp.oidc.provider import Provider

# The Content-Type values answered here (compared in lower case): the form type,
# alone or with the one charset form-encoding has (RFC 6749 appendix B).
_FORM_TYPES = frozenset({FORM_TYPE, FORM_TYPE + "; charset=utf-8",
                         FORM_TYPE + ";charset=utf-8"})
_STATUS = {code: f"{code} {HTTPStatus(code).phrase.upper()}" for code in (200, 400, 401, 429)}
_SLOW_DOWN = (json.dumps({"error": "slow_down",
                          "error_description": "too many failed requests; retry later"},
                         separators=(",", ":"), sort_keys=True) + "\n").encode()

StartResponse = Callable[..., Any]


def _json(value: dict[str, Any]) -> bytes:
    """As ``flask.json.dumps`` with the IdP app's settings (``idp.web.app``), which
    authlib's Flask adapter uses for its answers: sorted keys, UTF-8 kept."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _introspect(provider: Provider, request: Any) -> dict[str, Any]:
    client = authenticate(request, provider.clients, "introspection")
    return introspection.introspect(request, client, provider.tokens)


def _token_request(authorization: str | None, body: bytes) -> ClientCall | None:
    """A client-credentials or a refresh request in its canonical form, else None."""
    return (client_grant.parse_request(authorization, body)
            or refresh_grant.parse_request(authorization, body))


def _grant(provider: Provider, request: Any) -> dict[str, Any]:
    if isinstance(request, refresh_grant.RefreshRequest):
        client = authenticate(request, provider.clients, "token", refresh_grant.AUTH_METHODS)
        return refresh_grant.refresh(request, client, provider.tokens)
    client = authenticate(request, provider.clients, "token")
    return client_grant.grant(request, client, provider.tokens,
                              provider.server.scopes_supported)


@dataclass(frozen=True)
class Route:
    """One call answered here: its body limit, its parser (None declines the
    request) and its answer for an authenticated-to-be caller."""

    max_body: int
    parse: Callable[[str | None, bytes], ClientCall | None]
    answer: Callable[[Provider, Any], dict[str, Any]]


ROUTES = {
    "/introspect": Route(introspection.MAX_BODY, introspection.parse_request, _introspect),
    "/token": Route(max(client_grant.MAX_BODY, refresh_grant.MAX_BODY), _token_request,
                    _grant),
}


class ClientCallFastPath:
    """``inner`` (the Flask app's WSGI callable), with the ``ROUTES`` answered first
    when their request is in the canonical form."""

    def __init__(self, inner: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
                 app: Flask, provider: Provider) -> None:
        self.inner = inner
        self._app = app
        self._provider = provider
        self._tail = (*SECURITY_HEADERS, *((HSTS,) if provider.issuer.startswith("https://")
                                           else ()), *NO_STORE)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        route = ROUTES.get(environ.get("PATH_INFO", ""))
        body = None if route is None else self._body(environ, route.max_body)
        if route is None or body is None:
            return self.inner(environ, start_response)
        request = route.parse(environ.get("HTTP_AUTHORIZATION"), body)
        if request is None:
            environ["wsgi.input"] = io.BytesIO(body)  # read once: Flask reads it again
            return self.inner(environ, start_response)
        try:
            status, data, headers = self._answer(environ, route, request)
        except Exception as exc:  # answered by the Flask app's error handlers
            return self._flask_error(environ, exc)(environ, start_response)
        start_response(_STATUS.get(status) or f"{status} {HTTPStatus(status).phrase.upper()}",
                       [("Content-Type", "application/json"),
                        ("Content-Length", str(len(data))), *headers, *self._tail])
        return [data]

    @staticmethod
    def _body(environ: dict[str, Any], limit: int) -> bytes | None:
        """The body of a POST this layer may answer, else None (nothing read). A
        body shorter than its Content-Length is returned as read; the parser then
        declines it."""
        if (environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING")
                or str(environ.get("CONTENT_TYPE", "")).lower() not in _FORM_TYPES
                or "HTTP_TRANSFER_ENCODING" in environ):
            return None
        length = str(environ.get("CONTENT_LENGTH") or "")
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        if not (length.isascii() and length.isdigit()) or not 0 < int(length) <= limit:
            return None
        data: bytes = environ["wsgi.input"].read(int(length))
        return data

    def _answer(self, environ: dict[str, Any], route: Route, request: ClientCall
                ) -> tuple[int, bytes, list[tuple[str, str]]]:
        p = self._provider
        address = client_address(environ.get("REMOTE_ADDR") or "",
                                 environ.get("HTTP_X_FORWARDED_FOR") or None,
                                 p.trusted_proxies)
        checks = client_checks(address, request.client_id)
        if p.throttle.blocked(*checks):
            return 429, _SLOW_DOWN, [("Retry-After", CLIENT_RETRY_AFTER)]
        try:
            payload = route.answer(p, request)
        except OAuth2Error as err:
            status, body, headers = err()
            p.throttle.failed(*checks)  # one write transaction for both keys
            return status, _json(body), [
                h for h in headers if h[0] not in ("Content-Type", "Cache-Control", "Pragma")]
        return 200, _json(payload), []

    def _flask_error(self, environ: dict[str, Any], exc: Exception) -> Any:
        """The response the Flask app's error handlers give for ``exc`` on this
        request (as ``Flask.full_dispatch_request`` and ``Flask.wsgi_app`` would)."""
        app = self._app
        with app.request_context(environ):
            try:
                rv = app.handle_user_exception(exc)
            except Exception as unhandled:  # no handler, or the handler raised
                return app.handle_exception(unhandled)  # Flask's 500 (or re-raised)
            return app.finalize_request(rv)
