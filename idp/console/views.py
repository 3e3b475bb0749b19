"""Self-service pages: my profile, certificates, authenticator, sessions, sign-ins.

Any signed-in civil servant; anyone else is sent to the IdP login and back.
Every POST checks the IdP's CSRF token; what a person may touch is always
looked up by their own session (a serial or sid from the form must be theirs).

Certificates are issued here only as ``policies.assurance.decide_issuance`` says:
a ``user-auth`` certificate reaches level 3, so it needs a factor established
before this session (a valid certificate the session logged in with, an
authenticator enrolled earlier and used now). Without one, an administrator
issues it from the administration pages (a queue of requests for approval is
not built yet: the page says whom to ask).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Response, redirect
from flask import request as req

from idp.console import bp, queries
from idp.console.render import (
    Viewer,
    confirmed,
    current_lang,
    login_redirect,
    message,
    render,
    services,
    tr,
    viewer,
)
from idp.login.sessions import COOKIE_NAME
from idp.login.totp import AlreadyEnrolled, NotEnrolled
from idp.web import catalog
from idp.web.kit import csrf_ok, set_cookie
from pki.errors import KeyStoreError, PKIError
from pki.model import OwnerKind
from policies.assurance import (
    IssuanceDenyReason,
    IssuanceFacts,
    IssueNow,
    NeedsApproval,
    decide_issuance,
)

PERSON_PROFILES = ("user-auth", "user-sign", "user-encrypt")
MAX_CSR = 16 * 1024

View = Callable[..., Response]


def signed_in(view: Callable[..., Response]) -> View:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        who = viewer()
        if who is None:
            return login_redirect()
        if req.method == "POST" and not csrf_ok():
            return message(who, "title.error", tr("msg.csrf"), 400)
        return view(who, *args, **kwargs)
    return wrapper


def pki_reason(err: Exception) -> str:
    return tr("err.generic", reason=str(err))


# -- profile ------------------------------------------------------------------------
@bp.get("/")
@signed_in
def profile(who: Viewer) -> Response:
    otp = services().totp.status(who.person)
    return render("console/profile.html", who, person=who.person, otp=otp)


# -- certificates ---------------------------------------------------------------------
@bp.get("/certificates")
@signed_in
def certificates(who: Viewer) -> Response:
    certs = services().ca.find(uid=who.person.uid)
    mine = [c for c in certs if c.owner_kind is OwnerKind.PERSON]
    # "renew" links here with the profile chosen: a new certificate (new key), the
    # old one stays valid until it expires or is revoked
    chosen = req.args.get("profile", "")
    return render("console/certificates.html", who, certs=mine, profiles=PERSON_PROFILES,
                  chosen=chosen if chosen in PERSON_PROFILES else "")


def cert_file(der: bytes, fmt: str, name: str) -> Response:
    if fmt == "pem":
        body = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
        mime = "application/x-pem-file"
    else:
        body, mime = der, "application/pkix-cert"
    resp = Response(body, mimetype=mime)
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return resp


@bp.get("/certificates/<serial>.<fmt>")
@signed_in
def certificate_download(who: Viewer, serial: str, fmt: str) -> Response:
    if fmt not in ("pem", "der"):
        return message(who, "title.error", tr("err.not_found"), 404)
    try:
        rec = services().ca.get(serial)
    except PKIError:
        return message(who, "title.error", tr("err.not_found"), 404)
    if rec.owner_kind is not OwnerKind.PERSON or rec.owner_uid != who.person.uid:
        return message(who, "title.error", tr("err.not_found"), 404)
    return cert_file(rec.der, fmt, rec.serial)


def read_csr() -> bytes | None:
    upload = req.files.get("csr_file")
    data = upload.read(MAX_CSR + 1) if upload is not None and upload.filename else b""
    if not data:
        data = (req.form.get("csr") or "").strip().encode("utf-8")
    return data if data and len(data) <= MAX_CSR else None


# Methods that prove more than the password. Replacing an active authenticator or
# its recovery codes needs one of them, counted, in this session: else a stolen
# password alone could swap the victim's second factor for the thief's.
SECOND_FACTORS = frozenset({"otp", "swk", "hwk"})
CERTIFICATES = "/console/certificates"


def _verify_first(who: Viewer, back_to: str, with_code: bool = True) -> Response:
    if with_code:
        link = "/login/otp?" + urlencode({"return": back_to})
        return message(who, "title.error", tr("auth.verify_first"), 403, back=link,
                       back_label="auth.verify_link")
    link = "/login/certificate?" + urlencode({"return": back_to})
    return message(who, "title.error", tr("auth.verify_first"), 403, back=link,
                   back_label="stepup.certificate")


def _needs_second_factor(who: Viewer) -> Response | None:
    """For the authenticator: only once one is active (the first enrolment is how a
    person gets a second factor at all)."""
    if not services().totp.status(who.person).active or SECOND_FACTORS & set(who.counted.amr):
        return None
    return _verify_first(who, "/console/authenticator")


def issuance(who: Viewer, profile_name: str) -> IssueNow | Response:
    """``decide_issuance`` for this session: what to issue, or the page that says why
    not and what would do."""
    svc = services()
    strong = svc.provider.strong
    now = datetime.now(UTC)
    held = {} if strong is None else dict(strong.factor_times(who.session, now=now).held)
    decision = decide_issuance(IssuanceFacts(profile=profile_name, session=who.session.facts(),
                                             session_started=who.session.started,
                                             enrolled_at=held), svc.assurance_policy)
    if isinstance(decision, IssueNow):
        return decision
    if isinstance(decision, NeedsApproval):
        return message(who, "title.issue", tr("issue.approval"), 403, back=CERTIFICATES)
    if decision.reason is IssuanceDenyReason.VERIFY_FIRST:
        return _verify_first(who, CERTIFICATES, with_code="otp" in decision.verify_with)
    key = ("issue.not_self_service" if decision.reason is IssuanceDenyReason.NOT_SELF_SERVICE
           else "issue.no_factor")
    return message(who, "title.issue", tr(key), 403, back=CERTIFICATES)


def audit_issuance(who: Viewer, serial: str, decided: IssueNow) -> None:
    """Which established factors let the console issue it (the CA records the rest)."""
    services().audit.record(actor=who.person.uid, action="console.certificate.self_service",
                            target=serial, details={
                                "profile": decided.profile,
                                "established_by": " ".join(decided.established_by)})


@bp.post("/certificates/csr")
@signed_in
def certificate_from_csr(who: Viewer) -> Response:
    profile_name = req.form.get("profile", "")
    csr = read_csr()
    if profile_name not in PERSON_PROFILES or csr is None:
        return message(who, "title.error", tr("error.invalid_request"), 400,
                       back=CERTIFICATES)
    decided = issuance(who, profile_name)
    if not isinstance(decided, IssueNow):
        return decided
    try:
        issued = services().ca.issue_from_csr(who.person, profile_name, csr,
                                               actor=who.person.uid)
    except KeyStoreError:
        raise  # the CA key is out of reach: the web edge's one 503 handler answers
    except PKIError as err:
        return message(who, "title.error", pki_reason(err), 400, back=CERTIFICATES)
    audit_issuance(who, issued.record.serial, decided)
    return render("console/issued.html", who, rec=issued.record,
                  download_base=f"/console/certificates/{issued.record.serial}")


def pkcs12_response(p12: bytes, serial: str) -> Response:
    resp = Response(p12, mimetype="application/x-pkcs12")
    resp.headers["Content-Disposition"] = f'attachment; filename="{serial}.p12"'
    return resp


@bp.post("/certificates/pkcs12")
@signed_in
def certificate_pkcs12(who: Viewer) -> Response:
    profile_name = req.form.get("profile", "")
    passphrase = req.form.get("passphrase", "")
    if profile_name not in PERSON_PROFILES or not passphrase or len(passphrase) > 256:
        return message(who, "title.error", tr("error.invalid_request"), 400,
                       back=CERTIFICATES)
    decided = issuance(who, profile_name)
    if not isinstance(decided, IssueNow):
        return decided
    try:
        pair = services().ca.issue_pkcs12(who.person, profile_name, passphrase.encode(),
                                          actor=who.person.uid)
    except KeyStoreError:
        raise  # the CA key is out of reach: the web edge's one 503 handler answers
    except PKIError as err:
        return message(who, "title.error", pki_reason(err), 400, back=CERTIFICATES)
    audit_issuance(who, pair.issued.record.serial, decided)
    return pkcs12_response(pair.pkcs12, pair.issued.record.serial)


# -- authenticator ---------------------------------------------------------------------
@bp.get("/authenticator")
@signed_in
def authenticator(who: Viewer) -> Response:
    return render("console/authenticator.html", who, otp=services().totp.status(who.person))


def strip_xml_declaration(svg: str) -> str:
    return svg[svg.find("<svg"):] if "<svg" in svg else ""


@bp.post("/authenticator/enrol")
@signed_in
def authenticator_enrol(who: Viewer) -> Response:
    totp = services().totp
    if req.form.get("again") == "yes":
        if not confirmed():
            return message(who, "title.error", tr("confirm.required"), 400,
                           back="/console/authenticator")
        refused = _needs_second_factor(who)
        if refused is not None:
            return refused
        totp.reset(who.person, actor=who.person.uid)
    try:
        enrolment = totp.begin_enrolment(who.person)
    except AlreadyEnrolled:
        return redirect("/console/authenticator", 303)  # type: ignore[return-value]
    return render("console/enrol.html", who, secret=enrolment.secret,
                  qr=strip_xml_declaration(enrolment.svg), result=None)


@bp.post("/authenticator/confirm")
@signed_in
def authenticator_confirm(who: Viewer) -> Response:
    totp = services().totp
    outcome = totp.activate(who.person, req.form.get("code", "")[:16])
    if not outcome.ok:
        return render("console/enrol.html", who, status=400, secret=None, qr=None,
                      result=catalog.text(current_lang(), outcome.result.message_key))
    codes = totp.new_recovery_codes(who.person)
    resp = render("console/recovery.html", who, codes=codes, activated=True)
    # What the session may do changed (it holds an authenticator now): a new cookie
    # value, as at every step-up. The session gains no method by enrolling.
    set_cookie(resp, COOKIE_NAME, services().provider.sessions.rotate(who.session),
               max_age=services().provider.sessions.lifetime)
    return resp


@bp.post("/authenticator/recovery")
@signed_in
def authenticator_recovery(who: Viewer) -> Response:
    if not confirmed():
        return message(who, "title.error", tr("confirm.required"), 400,
                       back="/console/authenticator")
    refused = _needs_second_factor(who)
    if refused is not None:
        return refused
    try:
        codes = services().totp.new_recovery_codes(who.person)
    except NotEnrolled:
        return redirect("/console/authenticator", 303)  # type: ignore[return-value]
    return render("console/recovery.html", who, codes=codes, activated=False)


# -- sessions and sign-ins ---------------------------------------------------------------
@bp.get("/sessions")
@signed_in
def my_sessions(who: Viewer) -> Response:
    # A page, not every session: a person who never logs out may hold hundreds, and a
    # page growing with them costs every render (and the worker's memory) more.
    now = time.time()
    rows = queries.active_sessions(services().sessions, who.person.entry_uuid, now,
                                   services().assurance_policy, limit=queries.SESSIONS_SHOWN)
    total = queries.count_person_sessions(services().sessions, who.person.entry_uuid, now)
    return render("console/sessions.html", who, rows=rows, total=total)


@bp.post("/sessions/end")
@signed_in
def end_sessions(who: Viewer) -> Response:
    provider = services().provider
    rows = queries.active_sessions(services().sessions, who.person.entry_uuid, time.time(),
                                   services().assurance_policy)
    wanted = req.form.get("sid", "")
    ended = 0
    for row in rows:
        if (wanted == "others" and row.sid != who.session.sid) or row.sid == wanted:
            provider.logout.end_session(row.sid)
            ended += 1
    if ended:
        provider.logout.deliver_soon()
    if wanted == who.session.sid:
        return redirect("/", 303)  # type: ignore[return-value]
    return redirect("/console/sessions", 303)  # type: ignore[return-value]


@bp.get("/sign-ins")
@signed_in
def sign_ins(who: Viewer) -> Response:
    records = queries.recent_sign_ins(services().sessions, who.person.uid)
    return render("console/signins.html", who, records=records)

