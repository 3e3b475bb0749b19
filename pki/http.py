"""The public PKI service over HTTP: CA certificates, CRLs and OCSP (Flask edge).

Plain HTTP, as distribution points usually are (RFC 5280 §4.2.1.13, RFC 6960
Appendix A). Only adapts requests and responses; every decision is in
:class:`pki.authority.CertificateAuthority` and :class:`pki.ocsp.OCSPResponder`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import unquote

from cryptography.hazmat.primitives import serialization
from flask import Flask, Response, abort, request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from pki.authority import ISSUING, ROOT, CertificateAuthority
from pki.crl import CONTENT_TYPE as CRL_CONTENT_TYPE
from pki.errors import KeyStoreError, NotInitialized
from pki.model import CARole
from pki.ocsp import MAX_REQUEST_BYTES, RESPONSE_CONTENT_TYPE, error_response

log = logging.getLogger(__name__)

# What a part being down looks like from here: the database unreachable, restarting
# or full (SQLAlchemy), the pool exhausted, a CA key out of reach (token removed).
# Each is answered 503 with Retry-After, never a 500 with a traceback.
UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout,
                                             KeyStoreError)
RETRY_AFTER = "5"


def unavailable_response(body: bytes | str = "service temporarily unavailable",
                         mimetype: str = "text/plain") -> Response:
    resp = Response(body, status=503, mimetype=mimetype)
    resp.headers["Retry-After"] = RETRY_AFTER
    return resp


class ReadinessReport(Protocol):
    """What ``/readyz`` shows (``idp.runtime.health.Report`` in the product)."""

    @property
    def ready(self) -> bool: ...

    def as_dict(self) -> dict[str, Any]: ...


def create_app(ca: CertificateAuthority,
               readiness: Callable[[], ReadinessReport] | None = None) -> Flask:
    """The public service; with ``readiness`` also ``/healthz`` and ``/readyz``."""
    app = Flask(__name__)
    # Werkzeug refuses larger bodies with 413 before we read them.
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    if readiness is not None:
        probe = readiness

        @app.get("/healthz")
        def healthz() -> Response:
            return Response('{"alive": true}', mimetype="application/json",
                            headers={"Cache-Control": "no-store"})

        @app.get("/readyz")
        def readyz() -> Response:
            report = probe()
            return Response(json.dumps(report.as_dict(), ensure_ascii=False),
                            status=200 if report.ready else 503,
                            mimetype="application/json",
                            headers={"Cache-Control": "no-store"})

    @app.errorhandler(NotInitialized)
    def _not_initialized(exc: NotInitialized) -> Response:
        return Response(str(exc), status=503, mimetype="text/plain")

    def _unavailable(exc: Exception) -> Response:
        log.warning("answering 503: %s", type(exc).__name__)
        if request.path.startswith("/ocsp"):
            return unavailable_response(error_response("try_later"), RESPONSE_CONTENT_TYPE)
        return unavailable_response()

    for cls in UNAVAILABLE:
        app.register_error_handler(cls, _unavailable)

    def _authority(name: str) -> tuple[CertificateAuthority, str]:
        # The SM2 hierarchy's objects are named sm2-root, sm2-issuing, ... (when on).
        if name.startswith("sm2-") and ca.settings.sm2:
            return ca.sm2, name.removeprefix("sm2-")
        return ca, name

    @app.get("/ca/<name>.<ext>")
    def ca_certificate(name: str, ext: str) -> Response:
        roles = {"root": CARole.ROOT, "issuing": CARole.ISSUING, "ocsp": CARole.OCSP}
        authority, name = _authority(name)
        if name not in roles or ext not in ("der", "pem", "crt", "cer"):
            abort(404)
        cert = (authority.ocsp_credentials()[0] if roles[name] is CARole.OCSP
                else authority.certificate(authority.settings.role(roles[name])))
        if ext == "pem":
            return Response(cert.public_bytes(serialization.Encoding.PEM),
                            mimetype="application/x-pem-file")
        # RFC 5280 §4.2.2.1: a single DER certificate as application/pkix-cert.
        return Response(cert.public_bytes(serialization.Encoding.DER),
                        mimetype="application/pkix-cert")

    @app.get("/crl/<name>.crl")
    def crl(name: str) -> Response:
        authority, name = _authority(name)
        if name == "issuing":
            body = authority.crl(delta=False, issuer=ISSUING)
        elif name == "issuing-delta":
            body = authority.crl(delta=True, issuer=ISSUING)
        elif name == "root":
            body = authority.crl(issuer=ROOT)
        else:
            abort(404)
        return Response(body, mimetype=CRL_CONTENT_TYPE)

    def _ocsp(data: bytes, sm2: bool = False) -> Response:
        responder = ca.sm2.responder if sm2 else ca.responder
        resp = Response(responder.respond(data), mimetype=RESPONSE_CONTENT_TYPE)
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    @app.post("/ocsp")
    @app.post("/ocsp/")
    def ocsp_post() -> Response:
        data = request.get_data(cache=False)
        if len(data) > MAX_REQUEST_BYTES:
            return Response(error_response("malformed_request"), status=413,
                            mimetype=RESPONSE_CONTENT_TYPE)
        return _ocsp(data)

    if ca.settings.sm2:
        # The SM2 hierarchy's responder, signing with SM2 (its certificates' AIA).
        @app.post("/ocsp/sm2")
        @app.post("/ocsp/sm2/")
        def ocsp_sm2_post() -> Response:
            data = request.get_data(cache=False)
            if len(data) > MAX_REQUEST_BYTES:
                return Response(error_response("malformed_request"), status=413,
                                mimetype=RESPONSE_CONTENT_TYPE)
            return _ocsp(data, sm2=True)

        @app.get("/ocsp/sm2/<path:encoded>")
        def ocsp_sm2_get(encoded: str) -> Response:
            return _ocsp_get(encoded, sm2=True)

    @app.get("/ocsp/<path:encoded>")
    def ocsp_get(encoded: str) -> Response:
        return _ocsp_get(encoded)

    def _ocsp_get(encoded: str, sm2: bool = False) -> Response:
        # RFC 6960 Appendix A.1: GET {url}/{url-encoding of base-64 DER}.
        text = unquote(encoded)
        if len(text) > MAX_REQUEST_BYTES * 2:
            return Response(error_response("malformed_request"), status=414,
                            mimetype=RESPONSE_CONTENT_TYPE)
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return _ocsp(b"", sm2)
        return _ocsp(data, sm2)

    @app.errorhandler(413)
    def _too_large(_exc: Exception) -> Response:
        if request.path.startswith("/ocsp"):
            return Response(error_response("malformed_request"), status=413,
                            mimetype=RESPONSE_CONTENT_TYPE)
        return Response("request too large", status=413, mimetype="text/plain")

    _ocsp_fast_path(app, ca)
    return app


def _ocsp_fast_path(app: Flask, ca: CertificateAuthority) -> None:
    """POST /ocsp straight to the responder, before Flask's routing and wrappers.

    The busiest endpoint by far gets the bytes in and out with nothing between;
    its answers are the same as through the Flask route above.
    """
    inner = app.wsgi_app
    fast_paths = {"/ocsp", "/ocsp/"} | ({"/ocsp/sm2", "/ocsp/sm2/"} if ca.settings.sm2
                                        else set())

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if environ.get("REQUEST_METHOD") != "POST" or path not in fast_paths:
            return inner(environ, start_response)
        responder = ca.sm2.responder if path in ("/ocsp/sm2", "/ocsp/sm2/") else ca.responder
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        status = "200 OK"
        if length > MAX_REQUEST_BYTES:
            body, status = error_response("malformed_request"), "413 Request Entity Too Large"
        else:
            data = environ["wsgi.input"].read(length if length >= 0 else MAX_REQUEST_BYTES + 1)
            if len(data) > MAX_REQUEST_BYTES:
                body, status = error_response("malformed_request"), \
                    "413 Request Entity Too Large"
            else:
                try:
                    body = responder.respond(data)
                except UNAVAILABLE as exc:
                    log.warning("answering 503: %s", type(exc).__name__)
                    resp = unavailable_response(error_response("try_later"),
                                                RESPONSE_CONTENT_TYPE)
                    return resp(environ, start_response)
        start_response(status, [("Content-Type", RESPONSE_CONTENT_TYPE),
                                ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-cache")])
        return [body]

    app.wsgi_app = wsgi  # type: ignore[method-assign]
