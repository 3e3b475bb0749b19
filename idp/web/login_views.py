"""The login views: the password form, the assurance check at ``/authorize``, the
certificate and one-time-code steps, and TOTP enrolment.

The decisions are ``policies.assurance.decide``; certificates are validated by
``idp.login.certificate`` whatever the TLS front did (RFC 5280 path, revocation, EKU
``clientAuth``); codes by ``idp.login.totp`` (RFC 6238). This module only adapts HTTP:
it reads the client certificate from the TLS socket (gunicorn, ``CERT_OPTIONAL``)
or from the header a trusted proxy sets (nginx ``$ssl_client_escaped_cert``),
keeps the SSO session while stepping it up (with a new cookie value at every
step-up and enrolment activation: see ``idp.login.sessions``), and explains
refusals with the words of ``idp.web.catalog`` (zh-CN or en) for the enums the
cores return. A session is judged by its *counted* methods (``StrongAuth.counted``):
a factor enrolled in the session does not count in it.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flask import Blueprint, Response, redirect
from flask import request as req

from directory.model import AuthResult, Person
from idp.login.certificate import ValidatedCertificate
from idp.login.forwarded import PresentedCertificate, forwarded_certificate
from idp.login.refusals import CertificateRefused, Refusal
from idp.login.sessions import COOKIE_NAME, SsoSession
from idp.login.signature import challenge, parse_request
from idp.login.stepup import (
    CERTIFICATE_METHODS,
    UnknownEssentialAcr,
    now_utc,
    person_facts,
    requested,
)
from idp.login.throttle import LOGIN_PER_ADDRESS, LOGIN_PER_UID
from idp.login.totp import AlreadyEnrolled, OtpOutcome
from idp.web import catalog, password_views
from idp.web.kit import (
    LOGIN_MARK,
    client_address,
    csrf_ok,
    current_session,
    login_mark,
    page_lang,
    provider,
    redirect_error,
    render_with_csrf,
    safe_return,
    set_cookie,
)
from policies.assurance import Allow, AppFacts, Deny, StepUp, decide

if TYPE_CHECKING:
    from idp.login.stepup import StrongAuth
    from idp.oidc.clients import Client

bp = Blueprint("login", __name__)

CANCEL = "_cancel"
# Seconds a client is asked to wait when the directory did not answer (the
# connection pool skips a dead server for about as long, then tries again).
DIRECTORY_RETRY_AFTER = 5

def _s() -> Mapping[str, str]:
    """The ``login.*`` words of this page's language (the templates' ``s``)."""
    return catalog.scope(page_lang(), "login")


def _words(key: str) -> str:
    """Any catalog key (``refusal.*``, ``otp.*``, ``sso.msg.*``) in this page's language."""
    return catalog.text(page_lang(), key)


def _strong() -> StrongAuth:
    strong = provider().strong
    if strong is None:
        raise RuntimeError("strong authentication is not configured")
    return strong


@dataclass(frozen=True)
class _Who:
    """The ``idp.login.totp.Identity`` of the session's person."""

    uid: str
    entry_uuid: str


def _audit(action: str, target: str, details: dict[str, str]) -> None:
    audit = provider().audit
    if audit is not None:
        audit.record(actor=target[:256] or "anonymous", action=action, target=target[:256],
                     details={**details, "address": client_address()})


# -- /authorize: the assurance decision ---------------------------------------------------

def _back_url() -> str:
    query = [(k, v) for k, v in req.args.items(multi=True) if k not in (LOGIN_MARK, CANCEL)]
    return "/authorize?" + urlencode(query)


def check_assurance(client: Client, sess: SsoSession, redirect_uri: str, state: str | None,
                    prompt: set[str]) -> SsoSession | Response:
    """May this session use ``client`` now? The session to issue from (its ``acr``/
    ``amr`` as the decision says), or the response that asks for more or refuses."""
    strong = provider().strong
    if strong is None:  # a provider assembled without strong login: passwords only
        if client.level > 2:
            return redirect_error(redirect_uri, "access_denied", state,
                                   "this app needs a stronger login than a password")
        return sess
    try:
        level = requested(req.args.get("acr_values"), req.args.get("claims"))
    except UnknownEssentialAcr:
        return redirect_error(redirect_uri, "unmet_authentication_requirements", state)
    person = strong.person(sess)
    facts = person_facts(sess, person, looked_up=strong.people is not None)
    now = now_utc()
    d = decide(facts, strong.counted(sess, now=now), AppFacts.of(client), level,
               now=now, policy=strong.policy)
    if isinstance(d, Allow):
        return dataclasses.replace(sess, acr=d.acr, amr=d.amr)
    if isinstance(d, Deny):
        _audit("idp.access_denied", sess.uid, {"client_id": client.client_id,
                                               "reason": d.reason.value})
        if "none" in prompt:
            return redirect_error(redirect_uri, d.oauth_error, state)
        back = redirect_error(redirect_uri, d.oauth_error, state).headers["Location"]
        return render_with_csrf("strong_denied.html", status=403, s=_s(),
                          message=_explain(d), back=back)
    assert isinstance(d, StepUp)
    if "none" in prompt or req.args.get(CANCEL) == "1":
        return redirect_error(redirect_uri, d.oauth_error, state)
    back = _back_url()
    missing = set(d.missing_methods)
    if missing & set(CERTIFICATE_METHODS):
        page = "/login/certificate"
    elif "otp" in missing:
        page = "/login/otp"
    else:
        page = "/login"
    params = {"return": back}
    if page == "/login/certificate" and "swk" not in missing:
        params["need"] = "hwk"  # say that a software-held key will not do
    if page == "/login":
        params["login_hint"] = sess.uid
        if ("otp",) in d.alternatives:  # a code would do as well as the password
            params["alt"] = "otp"
    return redirect(page + "?" + urlencode(params), 302)  # type: ignore[return-value]


def _explain(d: Deny) -> str:
    """Why the app refuses, and whom to ask (the policy names the contact)."""
    return f"{_words(d.explanation.message_key)} {_words(d.explanation.contact_key)}"


def _cancel_url(return_to: str) -> str | None:
    return return_to + "&" + urlencode({CANCEL: "1"}) if return_to.startswith(
        "/authorize?") else None


def _continue(return_to: str, sess: SsoSession, cookie: str) -> Response:
    target = return_to
    if target.startswith("/authorize?"):
        target += "&" + urlencode({LOGIN_MARK: login_mark(sess.sid)})
    resp: Response = redirect(target, 302)  # type: ignore[assignment]
    set_cookie(resp, COOKIE_NAME, cookie, max_age=provider().sessions.lifetime)
    return resp


def _add_method(sess: SsoSession, method: str, cert_serial: str | None = None
                ) -> tuple[str, SsoSession]:
    """Step the session up: the method recorded at now, a new cookie value (the
    old one stops working), the same sid. The stored ``acr`` is the level of the
    methods that count."""
    strong = _strong()
    now = now_utc()
    facts = sess.facts().with_method(method, now)
    after = dataclasses.replace(sess, amr=facts.amr, method_times=facts.method_times_json(),
                                auth_time=int(now.timestamp()),
                                cert_serial=cert_serial or sess.cert_serial)
    level = max(strong.policy.session_level(strong.counted(after, now=now), now), 1)
    return provider().sessions.step_up(sess, facts, strong.policy.acr(level),
                                       cert_serial=cert_serial)


# -- certificate login -----------------------------------------------------------------

def peer_certificate() -> bytes | None:
    """The client certificate of the TLS connection gunicorn accepted (DER), if any."""
    sock: Any = req.environ.get("gunicorn.socket")
    if isinstance(sock, ssl.SSLSocket):
        try:
            return sock.getpeercert(binary_form=True)
        except (ValueError, OSError):
            return None
    return None


def presented_certificate() -> PresentedCertificate:
    p = provider()
    return forwarded_certificate(req.remote_addr or "", list(req.headers.items()),
                                 p.trusted_proxies, header=_strong().header,
                                 tls_certificate=peer_certificate())


@bp.get("/login/certificate")
def certificate_form() -> Response:
    return_to = safe_return(req.args.get("return"))
    message = _s()["cert.hwk"] if req.args.get("need") == "hwk" else None
    return render_with_csrf("strong_certificate.html", s=_s(), return_to=return_to, message=message,
                      cancel=_cancel_url(return_to))


@bp.post("/login/certificate")
def certificate_submit() -> Response:
    strong = _strong()
    return_to = safe_return(req.form.get("return"))

    def again(message: str, status: int) -> Response:
        return render_with_csrf("strong_certificate.html", status=status, s=_s(),
                          return_to=return_to, message=message, cancel=_cancel_url(return_to))

    if not csrf_ok():
        return again(_words("sso.msg.csrf"), 400)
    presented = presented_certificate()
    if presented.ignored is not None:
        _audit("certauth.untrusted_proxy", presented.remote_addr,
               {"reason": presented.ignored.value})
    if not presented.data:
        if presented.ignored is not None:
            return again(_words(presented.ignored.message_key), 403)
        return again(_s()["cert.none"], 400)
    try:
        person, validated = strong.certificate_login(presented)
    except CertificateRefused as e:
        _audit("certauth.refused", e.serial or "", {**e.audit_details(),
                                                      "source": presented.source})
        return again(_words(e.reason.message_key), 403)
    return _certificate_session(person, validated, return_to, presented.source)


def _certificate_session(person: Person, validated: ValidatedCertificate, return_to: str,
                         source: str) -> Response:
    """The session a validated certificate gives, however it was presented (TLS or
    a signed challenge): the session of the same person stepped up (``swk``/``hwk``
    recorded, a new cookie value, ``cert_serial``), or a new one; a session of
    another person on this browser ends first."""
    p = provider()
    strong = _strong()
    previous = current_session()
    _audit("idp.login", person.uid, {"result": "ok", "method": validated.amr,
                                     **validated.audit_details(), "source": source})
    if previous is not None and previous.subject == person.entry_uuid:
        cookie, stepped = _add_method(previous, validated.amr, validated.serial)
        return _continue(return_to, stepped, cookie)
    if previous is not None:  # another person on this browser: end the first session
        p.logout.end_session(previous.sid)
        p.logout.deliver_soon()
    level = max(strong.policy.level_for([validated.amr]), 1)
    cookie, sess = p.sessions.create(person, amr=(validated.amr,),
                                     acr=strong.policy.acr(level),
                                     user_agent=req.user_agent.string,
                                     address=client_address(), cert_serial=validated.serial)
    return _continue(return_to, sess, cookie)


# -- certificate signature login (USB keys; idp.login.signature) ---------------------------

SIGNATURE_COOKIE = "gt_sigbind"  # binds a challenge to the browser it was handed to


def _signature_page(return_to: str, *, status: int = 200, message: str | None = None
                    ) -> Response:
    """The page with a fresh single-use challenge bound to this browser's cookie."""
    p = provider()
    issued = _strong().nonces.issue(req.cookies.get(SIGNATURE_COOKIE))
    resp = render_with_csrf("strong_signature.html", status=status, s=_s(),
                            return_to=return_to, message=message,
                            cancel=_cancel_url(return_to), nonce=issued.nonce,
                            issuer=p.issuer, seconds=_strong().nonces.seconds,
                            challenge=challenge(p.issuer, issued.nonce).decode())
    set_cookie(resp, SIGNATURE_COOKIE, issued.binding)
    return resp


@bp.get("/login/signature")
def signature_form() -> Response:
    return _signature_page(safe_return(req.args.get("return")))


@bp.post("/login/signature")
def signature_submit() -> Response:
    strong = _strong()
    return_to = safe_return(req.form.get("return"))
    if not csrf_ok():
        return _signature_page(return_to, status=400, message=_words("sso.msg.csrf"))
    try:
        request = parse_request(req.form.get("nonce", ""), req.form.get("chain", ""),
                                req.form.get("signature", ""))
        person, validated = strong.signature_login(
            request, req.cookies.get(SIGNATURE_COOKIE, ""), provider().issuer)
        previous = current_session()
        if previous is not None and previous.subject != person.entry_uuid:
            # A signature proves a key, not that the person at this browser changed:
            # another person's key does not step up (or replace) this session.
            raise CertificateRefused(Refusal.OWNER_MISMATCH, person.uid,
                                     serial=validated.serial, subject=validated.subject)
    except CertificateRefused as e:
        _audit("certauth.refused", e.serial or "", {**e.audit_details(),
                                                      "source": "signature"})
        return _signature_page(return_to, status=403, message=_words(e.reason.message_key))
    return _certificate_session(person, validated, return_to, "signature")


# -- one-time codes ------------------------------------------------------------------------

def _needs_session(return_to: str) -> Response:
    return redirect("/login?" + urlencode({"return": return_to}), 302)  # type: ignore[return-value]


@bp.get("/login/otp")
def otp_form() -> Response:
    return_to = safe_return(req.args.get("return"))
    if current_session() is None:
        return _needs_session(return_to)
    return render_with_csrf("strong_otp.html", s=_s(), return_to=return_to, message=None,
                      cancel=_cancel_url(return_to))


@bp.post("/login/otp")
def otp_submit() -> Response:
    p = provider()
    strong = _strong()
    return_to = safe_return(req.form.get("return"))
    sess = current_session()
    if sess is None:
        return _needs_session(return_to)

    def again(message: str, status: int) -> Response:
        return render_with_csrf("strong_otp.html", status=status, s=_s(), return_to=return_to,
                          message=message, cancel=_cancel_url(return_to))

    if not csrf_ok():
        return again(_words("sso.msg.csrf"), 400)
    address = client_address()
    keys = (("otp-addr:" + address, LOGIN_PER_ADDRESS), ("otp-uid:" + sess.uid, LOGIN_PER_UID))
    if p.throttle.blocked(*keys):
        return again(_words("sso.msg.throttled"), 429)
    who = _Who(sess.uid, sess.subject)
    recovery = (req.form.get("recovery") or "").strip()
    out: OtpOutcome = (strong.totp.use_recovery_code(who, recovery[:64]) if recovery
                       else strong.totp.verify(who, (req.form.get("code") or "")[:64]))
    _audit("idp.otp", sess.uid, {"result": out.result.value,
                                 "kind": "recovery" if recovery else "totp"})
    if not out.ok:
        p.throttle.failed(*keys)
        return again(_words(out.result.message_key), 401)
    cookie, stepped = _add_method(sess, out.method)
    return _continue(return_to, stepped, cookie)


@bp.get("/otp/enrol")
def otp_enrol_page() -> Response:
    """Safe (RFC 9110 section 9.2.1): only shows a button. Starting an enrolment
    writes a pending secret and an audit record, so it is a POST with a CSRF token;
    a cross-site link cannot replace an enrolment in progress."""
    strong = _strong()
    return_to = safe_return(req.args.get("return"))
    sess = current_session()
    if sess is None:
        return _needs_session(return_to)
    s = _s()
    if strong.totp.status(_Who(sess.uid, sess.subject)).active:
        return _enrol_page(return_to, message=s["enrol.active"])
    return _enrol_page(return_to, start=True)


def _enrol_page(return_to: str, *, status: int = 200, message: str | None = None,
                start: bool = False, svg: str | None = None, secret: str | None = None,
                codes: Sequence[str] | None = None) -> Response:
    return render_with_csrf("strong_enrol.html", status=status, s=_s(), return_to=return_to,
                            message=message, start=start, svg=svg, secret=secret, codes=codes)


@bp.post("/otp/enrol")
def otp_enrol() -> Response:
    strong = _strong()
    return_to = safe_return(req.form.get("return"))
    sess = current_session()
    if sess is None:
        return _needs_session(return_to)
    who = _Who(sess.uid, sess.subject)
    s = _s()
    if not csrf_ok():
        return _enrol_page(return_to, status=400, message=_words("sso.msg.csrf"), start=True)
    if req.form.get("begin") == "1":
        try:
            e = strong.totp.begin_enrolment(who)
        except AlreadyEnrolled:
            return _enrol_page(return_to, message=s["enrol.active"])
        return _enrol_page(return_to, svg=e.svg, secret=e.secret)
    try:
        out = strong.totp.activate(who, (req.form.get("code") or "")[:64])
    except AlreadyEnrolled:
        return _enrol_page(return_to, message=s["enrol.active"])
    if not out.ok:
        return _enrol_page(return_to, status=401, message=_words(out.result.message_key))
    codes = strong.totp.new_recovery_codes(who)
    # Enrolling is not authenticating: the session gains no method (a code from this
    # authenticator will not count in this session either), but what it may do
    # changed, so it gets a new cookie value.
    resp = _enrol_page(return_to, codes=codes)
    set_cookie(resp, COOKIE_NAME, provider().sessions.rotate(sess),
               max_age=provider().sessions.lifetime)
    return resp


def step_up_with(return_to: str, sess: SsoSession, method: str) -> Response:
    """Continue after ``method`` was done by the session's own person."""
    cookie, stepped = _add_method(sess, method)
    return _continue(return_to, stepped, cookie)


# -- password login ------------------------------------------------------------------

@bp.get("/login")
def login_form() -> Response:
    return render_with_csrf("login.html", uid=req.args.get("login_hint", "")[:256],
                      return_to=safe_return(req.args.get("return")), message_key=None,
                      otp_link=req.args.get("alt") == "otp")  # a step-up may use a code


@bp.post("/login")
def login_submit() -> Response:
    p = provider()
    uid = (req.form.get("uid") or "").strip()
    password = req.form.get("password") or ""
    return_to = safe_return(req.form.get("return"))

    def again(key: str, status: int = 200) -> Response:
        return render_with_csrf("login.html", status=status, uid=uid[:256], return_to=return_to,
                          message_key=key)

    if not csrf_ok():
        return again("msg.csrf", 400)
    if not uid or not password or len(uid) > 256 or len(password) > 1024:
        return again("msg.missing", 400)
    if not uid.isprintable() or "\x00" in password:
        # No directory entry has a control character in its uid, and no password
        # holds a NUL: refused before the throttle, the directory or the audit log
        # (PostgreSQL text cannot hold a NUL), so nothing is written.
        return again("msg.missing", 400)
    address = client_address()
    if p.throttle.blocked(("login-addr:" + address, LOGIN_PER_ADDRESS),
                          ("login-uid:" + uid.lower(), LOGIN_PER_UID)):
        return again("msg.throttled", 429)
    outcome = p.authenticator.authenticate(uid, password)
    p.audit_login(uid, outcome.result.value, address)  # the audit log keeps the truth
    # A lockout is answered exactly as a wrong password (same words, same throttle
    # count): "locked" would tell anyone that the uid exists, since an unknown uid
    # is never locked. The person learns of the lock from an administrator.
    shown = (AuthResult.BAD_CREDENTIALS if outcome.result is AuthResult.LOCKED
             else outcome.result)
    if shown is AuthResult.BAD_CREDENTIALS:
        p.throttle.failed(("login-addr:" + address, LOGIN_PER_ADDRESS),
                          ("login-uid:" + uid.lower(), LOGIN_PER_UID))
    # expired, or reset by an administrator: no session until it is changed
    if (change := password_views.begin(uid, outcome.result, return_to)) is not None:
        return change
    if shown is AuthResult.UNAVAILABLE:
        # Not the person's fault and not a page to cache: 503 tells a load balancer,
        # a monitor and a retrying client what happened, and when to try again.
        busy = again("msg." + shown.value, 503)
        busy.headers["Retry-After"] = str(DIRECTORY_RETRY_AFTER)
        return busy
    if not outcome.ok or outcome.person is None:
        return again("msg." + shown.value, 200)
    previous = current_session()
    if previous is not None and previous.subject == outcome.person.entry_uuid \
            and p.strong is not None:
        # the same person adds a password to a session (step-up): keep the session
        return step_up_with(return_to, previous, "pwd")
    if previous is not None and previous.subject != outcome.person.entry_uuid:
        # another person logs in on this browser: the first one's apps are told
        p.logout.end_session(previous.sid)
        p.logout.deliver_soon()
    cookie, sess = p.sessions.create(outcome.person, user_agent=req.user_agent.string,
                                     address=client_address())
    target = return_to
    if target.startswith("/authorize?"):
        target += "&" + urlencode({LOGIN_MARK: login_mark(sess.sid)})
    resp = redirect(target, 302)
    set_cookie(resp, COOKIE_NAME, cookie, max_age=p.sessions.lifetime)  # type: ignore[arg-type]
    return resp  # type: ignore[return-value]


@bp.get("/")
def home() -> Response:
    sess = current_session()
    return render_with_csrf("home.html", sess=sess)


