"""The IdP's web edge: a Flask app factory and the OpenID Connect endpoints.

Protocol decisions are made by authlib (``idp.oauth``) and the framework-free
modules; this module adapts HTTP to them, renders the login, consent and logout
pages (zh-CN by default, see ``idp.i18n``), protects every form with a CSRF token,
sets the security headers (CSP with ``frame-ancestors 'none'``), throttles
failures, and maps every error to an RFC 6749 section 5.2 JSON error or an error
page in one place. No protocol state is kept in the process: any worker serves
any request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, render_template
from flask import request as req
from werkzeug.exceptions import HTTPException

from directory.model import AuthResult
from idp import i18n
from idp.discovery import provider_metadata
from idp.logout import LogoutError, validate_end_session
from idp.sessions import COOKIE_NAME, SsoSession
from idp.strong import acr_values_supported
from idp.throttle import LOGIN_PER_ADDRESS, LOGIN_PER_UID, TOKEN_PER_ADDRESS, TOKEN_PER_CLIENT
from idp.tokens import claims_for_scope

if TYPE_CHECKING:
    from idp.provider import Provider
    from idp.services import Services

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_PARAM = 2048
LONG_PARAMS = {"id_token_hint": 8192, "token": 8192, "refresh_token": 512,
               "client_assertion": 8192, "password": 1024}
API_PATHS = ("/token", "/introspect", "/revoke", "/userinfo")
CSRF_COOKIE = "gt_csrf"
LOGIN_MARK = "_login"

bp = Blueprint("idp", __name__)


def create_app(services: Services) -> Flask:
    """The IdP as a WSGI app, built from the composition root."""
    from idp.console import init_app as init_console

    app = build_app(services.provider)
    init_console(app, services)
    return app


def build_app(provider: Provider) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_BODY
    app.config["JSON_AS_ASCII"] = False
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["govtrust.idp"] = provider
    app.register_blueprint(bp)
    from idp.strong_web import bp as strong_bp  # it builds on this module's helpers

    app.register_blueprint(strong_bp)
    app.after_request(_security_headers)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _p() -> Provider:
    return current_app.extensions["govtrust.idp"]


# -- cross-cutting --------------------------------------------------------------

def _lang() -> str:
    return i18n.choose(req.args.get("lang"), req.cookies.get(i18n.COOKIE),
                       req.headers.get("Accept-Language"))


def _render(template: str, status: int = 200, **ctx: Any) -> Response:
    lang = _lang()
    html = render_template(template, t=i18n.translator(lang), lang=lang,
                           switch_lang="en" if lang == "zh-CN" else "zh-CN", **ctx)
    resp = Response(html, status=status, mimetype="text/html")
    if req.args.get("lang") in i18n.LANGS:
        _set_cookie(resp, i18n.COOKIE, lang, max_age=365 * 86400)
    return resp


def _page_error(key: str, status: int = 400) -> Response:
    return _render("message.html", status=status, title_key="title.error", message_key=key)


def _api_error(error: str, description: str, status: int = 400) -> Response:
    resp = jsonify(error=error, error_description=description)
    resp.status_code = status
    return resp


def _secure() -> bool:
    return _p().issuer.startswith("https://")


def _set_cookie(resp: Response, name: str, value: str, max_age: int | None = None) -> None:
    resp.set_cookie(name, value, max_age=max_age, secure=_secure(), httponly=True,
                    samesite="Lax", path="/")


def _security_headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Frame-Options"] = "DENY"
    if req.path not in ("/jwks", "/.well-known/openid-configuration",
                        "/.well-known/oauth-authorization-server"):
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Pragma"] = "no-cache"
    if _secure():
        resp.headers["Strict-Transport-Security"] = "max-age=31536000"
    return resp


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if req.path.startswith(API_PATHS):
        error = "invalid_request" if status < 500 else "server_error"
        return _api_error(error, exc.description or exc.name, status)
    key = {404: "error.not_found", 413: "error.too_large"}.get(status, "error.invalid_request")
    return _page_error(key, status)


def _client_address() -> str:
    remote = req.remote_addr or ""
    trusted = set(_p().trusted_proxies)
    if remote in trusted:
        forwarded = [h.strip() for h in req.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed([h for h in forwarded if h]):
            if hop not in trusted:
                try:
                    return str(ip_address(hop))
                except ValueError:
                    break
    return remote


def _oversized() -> str | None:
    for source in (req.args, req.form):
        for key, values in source.lists():
            if len(key) > 64:
                return key[:64]
            limit = LONG_PARAMS.get(key, MAX_PARAM)
            if any(len(v) > limit for v in values):
                return key
    return None


def _check_api_body() -> Response | None:
    """Token, introspection and revocation requests: form-encoded UTF-8 bodies,
    parameters in the body only (RFC 6749 sections 3.2 and 4.1.3)."""
    ctype = (req.mimetype or "").lower()
    if ctype != "application/x-www-form-urlencoded":
        return _api_error("invalid_request", "the body must be application/x-www-form-urlencoded")
    if req.args:
        return _api_error("invalid_request", "parameters must be sent in the body")
    try:
        req.get_data(cache=True).decode("utf-8")
    except UnicodeDecodeError:
        return _api_error("invalid_request", "the body is not UTF-8")
    if (name := _oversized()) is not None:
        return _api_error("invalid_request", f"parameter {name!r} is too long")
    return None


# -- CSRF -------------------------------------------------------------------------

def _csrf_seed() -> tuple[str, bool]:
    seed = req.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(seed) <= 64:
        return seed, False
    return secrets.token_urlsafe(24), True


def _csrf_token(seed: str) -> str:
    return hmac.new(_p().cookie_key, b"csrf:" + seed.encode(), hashlib.sha256).hexdigest()


def _csrf_ok() -> bool:
    seed = req.cookies.get(CSRF_COOKIE, "")
    sent = req.form.get("csrf", "")
    return bool(seed) and hmac.compare_digest(_csrf_token(seed).encode(), sent.encode())


def _with_csrf(template: str, status: int = 200, **ctx: Any) -> Response:
    seed, new = _csrf_seed()
    resp = _render(template, status=status, csrf=_csrf_token(seed), **ctx)
    if new:
        _set_cookie(resp, CSRF_COOKIE, seed)
    return resp


def _login_mark(sid: str) -> str:
    return hmac.new(_p().cookie_key, b"login:" + sid.encode(), hashlib.sha256).hexdigest()[:32]


def _session() -> SsoSession | None:
    return _p().sessions.get(req.cookies.get(COOKIE_NAME))


# -- discovery ----------------------------------------------------------------------

@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def discovery() -> Response:
    resp = jsonify(provider_metadata(_p().issuer, acr_values_supported()))
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


@bp.get("/jwks")
def jwks() -> Response:
    resp = jsonify(_p().keys.jwks())
    resp.headers["Cache-Control"] = "public, max-age=300"
    resp.mimetype = "application/jwk-set+json"
    return resp


# -- authorization endpoint -------------------------------------------------------

@bp.route("/authorize", methods=["GET"])
def authorize() -> Response:
    return _authorize(decision=None)


@bp.post("/authorize")
def authorize_post() -> Response:
    """OIDC Core 3.1.2.1: POST is accepted too; it continues as the equivalent GET
    (nothing is issued on the POST itself, so it needs no CSRF token)."""
    if _oversized() is not None or req.args:
        return _page_error("error.invalid_request", 400)
    return redirect("/authorize?" + urlencode(list(req.form.items(multi=True))),  # type: ignore[return-value]
                    303)


@bp.route("/consent", methods=["POST"])
def consent() -> Response:
    if not _csrf_ok():
        return _page_error("msg.csrf", 400)
    return _authorize(decision=req.form.get("decision"))


def _authorize(decision: str | None) -> Response:
    p = _p()
    if _oversized() is not None:
        return _page_error("error.invalid_request", 400)
    try:
        grant = p.server.get_consent_grant(end_user=None)
    except OAuth2Error as err:
        if err.redirect_uri:  # the client and redirect URI are known and exact
            return p.server.handle_error_response(None, err)
        key = ("error.invalid_client" if err.error == "invalid_client"
               else "error.invalid_redirect" if "redirect" in (err.description or "").lower()
               else "error.invalid_request")
        return _page_error(key, 400)
    client = grant.request.client
    redirect_uri = grant.request.payload.redirect_uri
    state = req.args.get("state")
    scope = grant.request.scope or ""
    prompt = set((req.args.get("prompt") or "").split())
    sess = _session()
    fresh = sess is not None and hmac.compare_digest(
        req.args.get(LOGIN_MARK, "").encode(), _login_mark(sess.sid).encode())
    need_login = sess is None
    if sess is not None and not fresh:
        if "login" in prompt:
            need_login = True
        max_age = req.args.get("max_age")
        if max_age is not None:
            if not max_age.isdigit():
                return _redirect_error(redirect_uri, "invalid_request", state)
            if time.time() - sess.auth_time > int(max_age):
                need_login = True
    if need_login:
        if "none" in prompt:
            return _redirect_error(redirect_uri, "login_required", state)
        query = [(k, v) for k, v in req.args.items(multi=True) if k != LOGIN_MARK]
        back = "/authorize?" + urlencode(query)
        login = "/login?" + urlencode({"return": back,
                                       **({"login_hint": req.args["login_hint"]}
                                          if req.args.get("login_hint") else {})})
        return redirect(login, 302)  # type: ignore[return-value]
    assert sess is not None
    from idp.strong_web import check_assurance

    checked = check_assurance(client, sess, redirect_uri, state, prompt)
    if isinstance(checked, Response):  # a step-up page, a refusal, or an error redirect
        return checked
    sess = checked  # acr/amr as the assurance decision says
    if decision == "deny":
        return _redirect_error(redirect_uri, "access_denied", state)
    consented = client.first_party or decision == "allow" or p.has_consent(
        sess.subject, client.client_id, scope)
    if not consented:
        if "none" in prompt:
            return _redirect_error(redirect_uri, "consent_required", state)
        return _with_csrf("consent.html", client=client, scopes=scope.split(),
                          action="/consent?" + req.query_string.decode("ascii", "replace"))
    if decision == "allow":
        p.remember_consent(sess.subject, client.client_id, scope)
    return p.server.create_authorization_response(
        grant=grant, grant_user=sess)


def _redirect_error(redirect_uri: str, error: str, state: str | None,
                    description: str | None = None) -> Response:
    params = [("error", error)]
    if description:
        params.append(("error_description", description))
    if state:
        params.append(("state", state))
    return redirect(add_params_to_uri(redirect_uri, params), 302)  # type: ignore[return-value]


# -- login ------------------------------------------------------------------------------

def _safe_return(value: str | None) -> str:
    """Only our own authorization endpoint (or the home page) is a valid return."""
    if value and value.startswith(("/authorize?", "/console/")) and "\\" not in value:
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc:
            return value
    return "/"


@bp.get("/login")
def login_form() -> Response:
    return _with_csrf("login.html", uid=req.args.get("login_hint", "")[:256],
                      return_to=_safe_return(req.args.get("return")), message_key=None,
                      otp_link=req.args.get("alt") == "otp")  # a step-up may use a code


@bp.post("/login")
def login_submit() -> Response:
    p = _p()
    uid = (req.form.get("uid") or "").strip()
    password = req.form.get("password") or ""
    return_to = _safe_return(req.form.get("return"))

    def again(key: str, status: int = 200) -> Response:
        return _with_csrf("login.html", status=status, uid=uid[:256], return_to=return_to,
                          message_key=key)

    if not _csrf_ok():
        return again("msg.csrf", 400)
    if not uid or not password or len(uid) > 256 or len(password) > 1024:
        return again("msg.missing", 400)
    address = _client_address()
    if p.throttle.blocked(("login-addr:" + address, LOGIN_PER_ADDRESS),
                          ("login-uid:" + uid.lower(), LOGIN_PER_UID)):
        return again("msg.throttled", 429)
    outcome = p.authenticator.authenticate(uid, password)
    p.audit_login(uid, outcome.result.value, address)
    if outcome.result is AuthResult.BAD_CREDENTIALS:
        p.throttle.failed("login-addr:" + address, LOGIN_PER_ADDRESS)
        p.throttle.failed("login-uid:" + uid.lower(), LOGIN_PER_UID)
    if not outcome.ok or outcome.person is None:
        return again("msg." + outcome.result.value, 200)
    previous = _session()
    if previous is not None and previous.subject == outcome.person.entry_uuid \
            and p.strong is not None:
        # the same person adds a password to a session (step-up): keep the session
        from idp.strong_web import step_up_with

        return step_up_with(return_to, previous, "pwd")
    if previous is not None and previous.subject != outcome.person.entry_uuid:
        # another person logs in on this browser: the first one's apps are told
        p.logout.end_session(previous.sid)
        p.logout.deliver_soon()
    cookie, sess = p.sessions.create(outcome.person, user_agent=req.user_agent.string,
                                     address=_client_address())
    target = return_to
    if target.startswith("/authorize?"):
        target += "&" + urlencode({LOGIN_MARK: _login_mark(sess.sid)})
    resp = redirect(target, 302)
    _set_cookie(resp, COOKIE_NAME, cookie, max_age=p.sessions.lifetime)  # type: ignore[arg-type]
    return resp  # type: ignore[return-value]


@bp.get("/")
def home() -> Response:
    sess = _session()
    return _with_csrf("home.html", sess=sess)


# -- token, userinfo, introspection, revocation -------------------------------------------

def _client_id_of_request() -> str:
    auth = req.authorization
    if auth is not None and auth.type == "basic" and auth.username:
        return auth.username[:64]
    return (req.form.get("client_id") or "")[:64]


@bp.post("/token")
def token() -> Response:
    p = _p()
    if (bad := _check_api_body()) is not None:
        return bad
    address = _client_address()
    client_id = _client_id_of_request()
    if p.throttle.blocked(("token-addr:" + address, TOKEN_PER_ADDRESS),
                          ("token-client:" + client_id if client_id else "", TOKEN_PER_CLIENT)):
        resp = _api_error("slow_down", "too many failed requests; retry later", 429)
        resp.headers["Retry-After"] = "60"
        return resp
    resp = p.server.create_token_response()
    if resp.status_code >= 400:
        p.throttle.failed("token-addr:" + address, TOKEN_PER_ADDRESS)
        if client_id:
            p.throttle.failed("token-client:" + client_id, TOKEN_PER_CLIENT)
    return resp


@bp.post("/introspect")
def introspect() -> Response:
    if (bad := _check_api_body()) is not None:
        return bad
    return _p().server.create_endpoint_response("introspection")


@bp.post("/revoke")
def revoke() -> Response:
    if (bad := _check_api_body()) is not None:
        return bad
    return _p().server.create_endpoint_response("revocation")


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """OIDC Core 5.3; bearer token per RFC 6750 section 2.1 (header only)."""
    p = _p()
    auth = req.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    found = p.tokens.verify_access(value.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        resp = _api_error("invalid_token", "the access token is not valid", 401)
        resp.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return resp
    claims, rec = found
    if "openid" not in rec.scope.split():
        resp = _api_error("insufficient_scope", "the openid scope is required", 403)
        resp.headers["WWW-Authenticate"] = 'Bearer error="insufficient_scope", scope="openid"'
        return resp
    ctx = p.tokens.context(rec.family)
    if ctx is None:
        return _api_error("invalid_token", "the grant was revoked", 401)
    return jsonify({"sub": ctx.subject, **claims_for_scope(ctx.claims, rec.scope)})


# -- logout --------------------------------------------------------------------------------

@bp.route("/logout", methods=["GET", "POST"])
def end_session() -> Response:
    p = _p()
    if _oversized() is not None:
        return _page_error("error.logout", 400)
    params = {k: v for k, v in req.values.items() if k in (
        "id_token_hint", "post_logout_redirect_uri", "state", "client_id", "ui_locales")}
    try:
        request = validate_end_session(params, p.keys, p.clients, p.issuer)
    except LogoutError:
        return _page_error("error.logout", 400)
    sess = _session()
    confirmed = req.method == "POST" and _csrf_ok()
    if req.method == "POST" and not confirmed:
        return _page_error("msg.csrf", 400)
    if sess is not None and not confirmed:
        hinted = request.hint_sid == sess.sid or (
            request.hint_sid is None and request.hint_sub == sess.subject)
        if not hinted:
            return _with_csrf("logout.html", params=params)
    if sess is not None:
        p.logout.end_session(sess.sid)
        p.logout.deliver_soon()
    if request.redirect_uri:
        target = request.redirect_uri
        if request.state:
            target = add_params_to_uri(target, [("state", request.state)])
        resp = redirect(target, 302)
    else:
        resp = _render("message.html", title_key="title.logged_out", message_key="logged_out")
    resp.delete_cookie(COOKIE_NAME, path="/", secure=_secure(), httponly=True, samesite="Lax")
    return resp  # type: ignore[return-value]
