"""The web edge's public kit: what every view of the IdP and the console shares.

Request helpers (the client's address behind trusted proxies, parameter limits,
form-encoded API bodies), cookies, CSRF tokens, the language of the page,
rendering with the string catalog, the security headers, and the one place HTTP
errors become pages or RFC 6749 section 5.2 JSON errors. Views import these
public names; nothing here registers a route.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from authlib.common.urls import add_params_to_uri
from flask import Response, current_app, jsonify, redirect, render_template
from flask import request as req
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from idp.login.forwarded import client_address as forwarded_client_address
from idp.login.sessions import COOKIE_NAME, SsoSession
from idp.oidc.params import duplicated, malformed
from idp.web import catalog, i18n
from pki.errors import KeyStoreError

if TYPE_CHECKING:
    from idp.oidc.provider import Provider

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_PARAM = 2048
LONG_PARAMS = {"id_token_hint": 8192, "token": 8192, "refresh_token": 512,
               "client_assertion": 8192, "password": 1024}
API_PATHS = ("/token", "/introspect", "/revoke", "/userinfo")
CSRF_COOKIE = "gt_csrf"
LOGIN_MARK = "_login"
PROVIDER_EXTENSION = "govtrust.idp"


def provider() -> Provider:
    found: Provider = current_app.extensions[PROVIDER_EXTENSION]
    return found


# -- cross-cutting --------------------------------------------------------------

def page_lang() -> str:
    return i18n.choose(req.args.get("lang"), req.cookies.get(i18n.COOKIE),
                       req.headers.get("Accept-Language"))


def render(template: str, status: int = 200, **ctx: Any) -> Response:
    lang = page_lang()
    html = render_template(template, t=catalog.scope(lang, "sso"), lang=lang,
                           switch_lang="en" if lang == "zh-CN" else "zh-CN", **ctx)
    resp = Response(html, status=status, mimetype="text/html")
    if req.args.get("lang") in i18n.LANGS:
        set_cookie(resp, i18n.COOKIE, lang, max_age=365 * 86400)
    return resp


def page_error(key: str, status: int = 400) -> Response:
    return render("message.html", status=status, title_key="title.error", message_key=key)


def api_error(error: str, description: str, status: int = 400) -> Response:
    resp = jsonify(error=error, error_description=description)
    resp.status_code = status
    return resp


def secure() -> bool:
    return provider().issuer.startswith("https://")


def set_cookie(resp: Response, name: str, value: str, max_age: int | None = None) -> None:
    resp.set_cookie(name, value, max_age=max_age, secure=secure(), httponly=True,
                    samesite="Lax", path="/")


# Set on every response, and by no view: added, not replaced (werkzeug's
# ``headers[name] = value`` scans the whole list per header; this costs a third).
# Public for the answers made outside Flask (``idp.web.client_calls``).
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
HSTS = ("Strict-Transport-Security", "max-age=31536000")
# The only answers a cache may keep (they set their own Cache-Control).
_CACHEABLE = frozenset({"/jwks", "/.well-known/openid-configuration",
                        "/.well-known/oauth-authorization-server"})
NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


def security_headers(resp: Response) -> Response:
    headers = resp.headers
    headers.extend(SECURITY_HEADERS)
    if secure():
        headers.add(*HSTS)
    if req.path not in _CACHEABLE:
        for name, value in NO_STORE:
            headers.set(name, value)
    return resp


def http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if req.path.startswith(API_PATHS):
        error = "invalid_request" if status < 500 else "server_error"
        return api_error(error, exc.description or exc.name, status)
    key = {404: "error.not_found", 413: "error.too_large"}.get(status, "error.invalid_request")
    return page_error(key, status)


# A part of the platform down for a while: the database unreachable, restarting or
# full, its pool exhausted, a CA key out of reach (PKCS#11 token removed). The one
# answer is 503 with Retry-After, never a 500 with a traceback.
UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout,
                                             KeyStoreError)
RETRY_AFTER = "5"


def unavailable(exc: Exception) -> Response:
    """The error handler for :data:`UNAVAILABLE`: :func:`unavailable_answer`, logged."""
    log.warning("answering 503 on %s: %s", req.path, type(exc).__name__)
    return unavailable_answer()


def unavailable_answer() -> Response:
    """503 with Retry-After, in the protocol's words on an API path (RFC 6749
    section 4.1.2.1 names the condition ``temporarily_unavailable``), else a page.
    Also the answer to the failover faults ``idp.runtime.db_faults`` recognizes
    beyond :data:`UNAVAILABLE` (a read-only standby): one answer for both."""
    if req.path.startswith(API_PATHS):
        resp = api_error("temporarily_unavailable", "try again shortly", 503)
    else:
        resp = page_error("error.unavailable", 503)
    resp.headers["Retry-After"] = RETRY_AFTER
    return resp


def client_address() -> str:
    """The real client's address (for throttling and the audit log): the same
    trusted-proxy rule that decides whether a certificate header is believed."""
    # Several X-Forwarded-For fields are one list (RFC 9110 section 5.3).
    forwarded = ", ".join(req.headers.getlist("X-Forwarded-For")) or None
    return forwarded_client_address(req.remote_addr or "", forwarded,
                                    provider().trusted_proxies)


def oversized_param() -> str | None:
    for source in (req.args, req.form):
        for key, values in source.lists():
            if len(key) > 64:
                return key[:64]
            limit = LONG_PARAMS.get(key, MAX_PARAM)
            if any(len(v) > limit for v in values):
                return key
    return None


def check_api_body() -> Response | None:
    """Token, introspection and revocation requests: form-encoded UTF-8 bodies,
    parameters in the body only (RFC 6749 sections 3.2 and 4.1.3)."""
    ctype = (req.mimetype or "").lower()
    if ctype != "application/x-www-form-urlencoded":
        return api_error("invalid_request", "the body must be application/x-www-form-urlencoded")
    if req.args:
        return api_error("invalid_request", "parameters must be sent in the body")
    try:
        req.get_data(cache=True).decode("utf-8")
    except UnicodeDecodeError:
        return api_error("invalid_request", "the body is not UTF-8")
    if (name := oversized_param()) is not None:
        return api_error("invalid_request", f"parameter {name!r} is too long")
    params = list(req.form.items(multi=True))
    if (name := duplicated(params)) is not None:
        return api_error("invalid_request", f"parameter {name!r} was sent more than once")
    if (name := malformed(params)) is not None:
        return api_error("invalid_request", f"parameter {name!r} has characters it may not have")
    return None


# -- CSRF -------------------------------------------------------------------------

def csrf_seed() -> tuple[str, bool]:
    seed = req.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(seed) <= 64:
        return seed, False
    return secrets.token_urlsafe(24), True


def csrf_token(seed: str) -> str:
    return hmac.new(provider().cookie_key, b"csrf:" + seed.encode(), hashlib.sha256).hexdigest()


def csrf_ok() -> bool:
    seed = req.cookies.get(CSRF_COOKIE, "")
    sent = req.form.get("csrf", "")
    return bool(seed) and hmac.compare_digest(csrf_token(seed).encode(), sent.encode())


def render_with_csrf(template: str, status: int = 200, **ctx: Any) -> Response:
    seed, new = csrf_seed()
    resp = render(template, status=status, csrf=csrf_token(seed), **ctx)
    if new:
        set_cookie(resp, CSRF_COOKIE, seed)
    return resp


def login_mark(sid: str) -> str:
    key = provider().cookie_key
    return hmac.new(key, b"login:" + sid.encode(), hashlib.sha256).hexdigest()[:32]


def current_session() -> SsoSession | None:
    return provider().sessions.get(req.cookies.get(COOKIE_NAME))



def redirect_error(redirect_uri: str, error: str, state: str | None,
                    description: str | None = None) -> Response:
    params = [("error", error)]
    if description:
        params.append(("error_description", description))
    if state:
        params.append(("state", state))
    return redirect(add_params_to_uri(redirect_uri, params), 302)  # type: ignore[return-value]



def safe_return(value: str | None) -> str:
    """Only our own authorization endpoint (or the home page) is a valid return.

    Printable ASCII only (what ``urlencode`` produces): a backslash is a path
    separator to some browsers, and CR/LF or non-ASCII in a ``Location`` header
    would fail only after the login has already created a session."""
    if value and value.startswith(("/authorize?", "/console/")) and value.isascii() \
            and value.isprintable() and " " not in value and "\\" not in value:
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc:
            return value
    return "/"


