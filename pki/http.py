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
from pki.ocsp import MAX_REQUEST_BYTES, RESPONSE_CONTENT_TYPE, OCSPResponder, error_response

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


def unavailable_answer() -> Response:
    """The 503 of the request being answered: an OCSP ``tryLater`` (RFC 6960
    section 2.3) on ``/ocsp``, which an OCSP client reads, else plain text. Also
    the answer to the failover faults ``idp.runtime.db_faults`` recognizes."""
    if request.path.startswith("/ocsp"):
        return unavailable_response(error_response("try_later"), RESPONSE_CONTENT_TYPE)
    return unavailable_response()


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
        return unavailable_answer()

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
        data = decode_get(encoded)
        if data is None:
            return Response(error_response("malformed_request"), status=414,
                            mimetype=RESPONSE_CONTENT_TYPE)
        return _ocsp(data, sm2)

    @app.errorhandler(413)
    def _too_large(_exc: Exception) -> Response:
        if request.path.startswith("/ocsp"):
            return Response(error_response("malformed_request"), status=413,
                            mimetype=RESPONSE_CONTENT_TYPE)
        return Response("request too large", status=413, mimetype="text/plain")

    app.wsgi_app = OCSPFastPath(app.wsgi_app, ca)  # type: ignore[method-assign]
    return app


def decode_get(encoded: str) -> bytes | None:
    """The request bytes of an RFC 6960 Appendix A.1 GET ({url}/{url-encoding of
    base-64 DER}); None when the path is too long to be one (answered 414).

    Text that is not base64 gives no bytes, which the responder answers with
    malformedRequest like any other bad request.
    """
    text = unquote(encoded)
    if len(text) > MAX_REQUEST_BYTES * 2:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


_TOO_LARGE = "413 Request Entity Too Large"
_URI_TOO_LONG = "414 Request-URI Too Long"


class OCSPFastPath:
    """OCSP straight to the responder, in front of Flask's routing and wrappers.

    The busiest endpoints by far, ``POST /ocsp`` and ``GET /ocsp/<base64>`` (and
    the SM2 hierarchy's ``/ocsp/sm2``), get their bytes in and out with nothing
    between; a request already answered is then one dictionary look-up in the
    responder (``pki.ocsp``). The answers, status codes and headers are those of
    the Flask routes in :func:`create_app`; everything else goes to ``inner``.
    """

    def __init__(self, inner: Callable[..., Iterable[bytes]], ca: CertificateAuthority
                 ) -> None:
        self.inner = inner
        self._ca = ca
        self._sm2 = ca.settings.sm2
        self._posts = {"/ocsp", "/ocsp/"} | ({"/ocsp/sm2", "/ocsp/sm2/"} if self._sm2
                                             else set())

    def _route(self, environ: dict[str, Any]) -> tuple[OCSPResponder, bytes | None] | None:
        """(responder, request bytes) for an OCSP request, else None (Flask's).

        The bytes are None when the request is too large to be one.
        """
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO") or ""
        if method == "POST" and path in self._posts:
            responder = self._ca.sm2.responder if path.startswith("/ocsp/sm2") \
                else self._ca.responder
            return responder, _read_body(environ)
        if method == "GET" and path.startswith("/ocsp/") and path.isascii():
            encoded = path[len("/ocsp/"):]
            responder = self._ca.responder
            if self._sm2 and encoded.startswith("sm2/"):
                encoded = encoded[len("sm2/"):]
                responder = self._ca.sm2.responder
            if not encoded:
                return None  # Flask's 404, 405 or redirect, as before
            return responder, decode_get(encoded)
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        routed = self._route(environ)
        if routed is None:
            return self.inner(environ, start_response)
        responder, data = routed
        status = "200 OK"
        if data is None:
            body = error_response("malformed_request")
            status = _TOO_LARGE if environ.get("REQUEST_METHOD") == "POST" else _URI_TOO_LONG
        else:
            try:
                body = responder.respond(data)
            except UNAVAILABLE as exc:
                log.warning("answering 503: %s", type(exc).__name__)
                body, status = error_response("try_later"), "503 Service Unavailable"
                start_response(status, [("Content-Type", RESPONSE_CONTENT_TYPE),
                                        ("Content-Length", str(len(body))),
                                        ("Retry-After", RETRY_AFTER)])
                return [body]
        start_response(status, [("Content-Type", RESPONSE_CONTENT_TYPE),
                                ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-cache")])
        return [body]


def _read_body(environ: dict[str, Any]) -> bytes | None:
    """The POST body, or None when it is larger than any OCSP request we answer."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length > MAX_REQUEST_BYTES:
        return None  # refused before reading it
    data: bytes = environ["wsgi.input"].read(length if length >= 0 else MAX_REQUEST_BYTES + 1)
    return None if len(data) > MAX_REQUEST_BYTES else data
