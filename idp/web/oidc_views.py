"""The OpenID Connect endpoints: discovery, JWKS, authorization and consent,
token, introspection, revocation, userinfo, RP-Initiated Logout.

Protocol decisions are made by authlib (``idp.oidc.server``) and the framework-free
modules of ``idp.oidc``; these views only adapt HTTP to them (OIDC Core 1.0,
RFC 6749, RFC 7662, RFC 7009, OIDC RP-Initiated Logout 1.0). No protocol state is
kept in the process: any worker serves any request.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, jsonify, redirect
from flask import request as req

from idp.login.sessions import COOKIE_NAME
from idp.login.stepup import acr_values_supported
from idp.login.throttle import CLIENT_RETRY_AFTER, client_checks
from idp.oidc.discovery import provider_metadata
from idp.oidc.logout import LogoutError, validate_end_session
from idp.oidc.params import malformed, parse_max_age
from idp.oidc.tokens import claims_for_scope
from idp.web.kit import (
    LOGIN_MARK,
    api_error,
    check_api_body,
    client_address,
    csrf_ok,
    current_session,
    login_mark,
    oversized_param,
    page_error,
    provider,
    redirect_error,
    render,
    render_with_csrf,
    secure,
)
from idp.web.login_views import check_assurance

bp = Blueprint("idp", __name__)

# -- discovery ----------------------------------------------------------------------

@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def discovery() -> Response:
    p = provider()
    policy = p.strong.policy if p.strong is not None else None
    resp = jsonify(provider_metadata(p.issuer, acr_values_supported(policy)))
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


@bp.get("/jwks")
def jwks() -> Response:
    resp = jsonify(provider().keys.jwks())
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
    if oversized_param() is not None or req.args:
        return page_error("error.invalid_request", 400)
    return redirect("/authorize?" + urlencode(list(req.form.items(multi=True))),  # type: ignore[return-value]
                    303)


@bp.route("/consent", methods=["POST"])
def consent() -> Response:
    if not csrf_ok():
        return page_error("msg.csrf", 400)
    return _authorize(decision=req.form.get("decision"))


def _malformed_authorize() -> Response | None:
    """RFC 6749 Appendix A syntax, before authlib copies a value into an error.
    A malformed client or redirect URI gets a page (there is nowhere safe to
    send the browser); anything else goes back to a registered redirect URI."""
    params = list(req.args.items(multi=True))
    name = malformed(params)
    if name is None:
        return None
    if name in ("client_id", "redirect_uri"):
        return page_error("error.invalid_redirect" if name == "redirect_uri"
                          else "error.invalid_client", 400)
    client = provider().clients.get(req.args.get("client_id") or "")
    redirect_uri = req.args.get("redirect_uri") or ""
    if client is None or redirect_uri not in client.redirect_uris:
        return page_error("error.invalid_request", 400)
    state = req.args.get("state") if name != "state" else None
    return redirect_error(redirect_uri, "invalid_request", state,
                          f"the parameter {name} has characters it may not have")


def _authorize(decision: str | None) -> Response:
    p = provider()
    if oversized_param() is not None:
        return page_error("error.invalid_request", 400)
    if (refused := _malformed_authorize()) is not None:
        return refused
    try:
        grant = p.server.get_consent_grant(end_user=None)
    except OAuth2Error as err:
        if err.redirect_uri:  # the client and redirect URI are known and exact
            return p.server.handle_error_response(None, err)
        key = ("error.invalid_client" if err.error == "invalid_client"
               else "error.invalid_redirect" if "redirect" in (err.description or "").lower()
               else "error.invalid_request")
        return page_error(key, 400)
    client = grant.request.client
    redirect_uri = grant.request.payload.redirect_uri
    state = req.args.get("state")
    scope = grant.request.scope or ""
    prompt = set((req.args.get("prompt") or "").split())
    sess = current_session()
    fresh = sess is not None and hmac.compare_digest(
        req.args.get(LOGIN_MARK, "").encode(), login_mark(sess.sid).encode())
    need_login = sess is None
    if sess is not None and not fresh:
        if "login" in prompt:
            need_login = True
        max_age = req.args.get("max_age")
        if max_age is not None:
            try:
                seconds = parse_max_age(max_age)
            except OAuth2Error:
                return redirect_error(redirect_uri, "invalid_request", state)
            if time.time() - sess.auth_time > seconds:
                need_login = True
    if need_login:
        if "none" in prompt:
            return redirect_error(redirect_uri, "login_required", state)
        query = [(k, v) for k, v in req.args.items(multi=True) if k != LOGIN_MARK]
        back = "/authorize?" + urlencode(query)
        login = "/login?" + urlencode({"return": back,
                                       **({"login_hint": req.args["login_hint"]}
                                          if req.args.get("login_hint") else {})})
        return redirect(login, 302)  # type: ignore[return-value]
    assert sess is not None

    checked = check_assurance(client, sess, redirect_uri, state, prompt)
    if isinstance(checked, Response):  # a step-up page, a refusal, or an error redirect
        return checked
    sess = checked  # acr/amr as the assurance decision says
    if decision == "deny":
        return redirect_error(redirect_uri, "access_denied", state)
    consented = client.first_party or decision == "allow" or p.has_consent(
        sess.subject, client.client_id, scope)
    if not consented:
        if "none" in prompt:
            return redirect_error(redirect_uri, "consent_required", state)
        return render_with_csrf("consent.html", client=client, scopes=scope.split(),
                          action="/consent?" + req.query_string.decode("ascii", "replace"))
    if decision == "allow":
        p.remember_consent(sess.subject, client.client_id, scope)
    return p.server.create_authorization_response(
        grant=grant, grant_user=sess)



# -- token, userinfo, introspection, revocation -------------------------------------------

def _client_id_of_request() -> str:
    auth = req.authorization
    if auth is not None and auth.type == "basic" and auth.username:
        return auth.username[:64]
    return (req.form.get("client_id") or "")[:64]


def _throttled_client_call(answer: Callable[[], Response]) -> Response:
    """Every endpoint where a client authenticates (``/token``, ``/introspect``,
    ``/revoke``) shares one failure budget per client and per address: a secret
    guessed at introspection (200 against 401 is as good an oracle as a token) is
    counted like one guessed at the token endpoint, and a client that has run out
    is refused at all three, before anything is consumed, signed or looked up.
    The read stays even for a right secret (``idp.login.throttle`` says why)."""
    p = provider()
    if (bad := check_api_body()) is not None:
        return bad
    checks = client_checks(client_address(), _client_id_of_request())
    if p.throttle.blocked(*checks):
        resp = api_error("slow_down", "too many failed requests; retry later", 429)
        resp.headers["Retry-After"] = CLIENT_RETRY_AFTER
        return resp
    resp = answer()
    if resp.status_code >= 400:
        p.throttle.failed(*checks)  # one write transaction for both
    return resp


@bp.post("/token")
def token() -> Response:
    return _throttled_client_call(lambda: provider().server.create_token_response())


@bp.post("/introspect")
def introspect() -> Response:
    return _throttled_client_call(
        lambda: provider().server.create_endpoint_response("introspection"))


@bp.post("/revoke")
def revoke() -> Response:
    return _throttled_client_call(
        lambda: provider().server.create_endpoint_response("revocation"))


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """OIDC Core 5.3; bearer token per RFC 6750 section 2.1 (header only)."""
    p = provider()
    auth = req.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    found = p.tokens.verify_access(value.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        resp = api_error("invalid_token", "the access token is not valid", 401)
        resp.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return resp
    rec, ctx = found.record, found.context
    if "openid" not in rec.scope.split():
        resp = api_error("insufficient_scope", "the openid scope is required", 403)
        resp.headers["WWW-Authenticate"] = 'Bearer error="insufficient_scope", scope="openid"'
        return resp
    if ctx is None or ctx.auth_time is None:
        # A client-credentials token: the app acting for itself, no person behind
        # it (OIDC Core 5.3 returns claims about the End-User).
        resp = api_error("invalid_token", "the access token does not stand for a person", 401)
        resp.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return resp
    return jsonify({"sub": ctx.subject, **claims_for_scope(ctx.claims, rec.scope)})


# -- logout --------------------------------------------------------------------------------

@bp.route("/logout", methods=["GET", "POST"])
def end_session() -> Response:
    p = provider()
    if oversized_param() is not None:
        return page_error("error.logout", 400)
    params = {k: v for k, v in req.values.items() if k in (
        "id_token_hint", "post_logout_redirect_uri", "state", "client_id", "ui_locales")}
    try:
        request = validate_end_session(params, p.keys, p.clients, p.issuer)
    except LogoutError:
        return page_error("error.logout", 400)
    sess = current_session()
    confirmed = req.method == "POST" and csrf_ok()
    if req.method == "POST" and not confirmed:
        return page_error("msg.csrf", 400)
    if sess is not None and not confirmed:
        hinted = request.hint_sid == sess.sid or (
            request.hint_sid is None and request.hint_sub == sess.subject)
        if not hinted:
            return render_with_csrf("logout.html", params=params)
    if sess is not None:
        p.logout.end_session(sess.sid)
        p.logout.deliver_soon()
    if request.redirect_uri:
        target = request.redirect_uri
        if request.state:
            target = add_params_to_uri(target, [("state", request.state)])
        resp = redirect(target, 302)
    else:
        resp = render("message.html", title_key="title.logged_out", message_key="logged_out")
    resp.delete_cookie(COOKIE_NAME, path="/", secure=secure(), httponly=True, samesite="Lax")
    return resp  # type: ignore[return-value]
