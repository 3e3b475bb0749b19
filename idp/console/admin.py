"""Administration pages for security administrators: dashboard, people,
certificates, department apps and the audit log.

Open to members of the directory group ``security-admins`` in a session of
protection level 3 or more (the session's ``acr``); anyone else gets a page
saying which of the two is missing. Every change is a CSRF-checked POST, is
done with the administrator's uid as the audit actor, and those that cannot be
undone (mark as left, reset an authenticator, revoke, rotate a secret) need the
confirmation box ticked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from flask import Response, redirect
from flask import request as req
from werkzeug.urls import iri_to_uri

from directory.errors import DirectoryError, NotFound
from idp.console import bp, local_zone, queries
from idp.console.chart import bar_chart_svg
from idp.console.render import (
    Viewer,
    confirmed,
    login_redirect,
    message,
    render,
    services,
    tr,
    viewer,
)
from idp.console.views import PERSON_PROFILES, cert_file, pkcs12_response, read_csr
from idp.errors import IdPError
from idp.oidc.clients import InfoClass, build_client
from idp.web.kit import csrf_ok
from pki.errors import KeyStoreError, PKIError
from pki.model import CertStatus, OwnerKind, RevocationReason
from policies.assurance import parse_ascii_int, parse_level

log = logging.getLogger(__name__)

REVOKE_REASONS = tuple(r.value for r in RevocationReason
                       if r not in (RevocationReason.CERTIFICATE_HOLD,
                                    RevocationReason.REMOVE_FROM_CRL))
SEARCH_FIELDS = ("uid", "name", "department")
MAX_LIST = 100_000


def step_up_links(who: Viewer, back: str) -> list[tuple[str, str, str]]:
    """The login pages that would raise the session to the administration level,
    each returning to ``back`` (the page she asked for): one per method of the
    policy's alternatives, the certificate first (level 3 always needs one)."""
    alternatives = who.refusal.step_up if who.refusal is not None else ()
    wanted = {m for alt in alternatives for m in alt}
    certificates = {"swk", "hwk"}
    links = []
    # A session that already counts a certificate is offered the other factor, not a
    # second certificate, unless only a (hardware) certificate would do.
    if wanted & certificates and (not certificates & set(who.counted.amr)
                                  or all(certificates & set(alt) for alt in alternatives)):
        query = {"return": back}
        if "swk" not in wanted:
            query["need"] = "hwk"
        links.append(("step-up-certificate", "/login/certificate?" + urlencode(query),
                      "stepup.certificate"))
    if ("otp",) in alternatives:  # a code alone would do: the certificate is done
        links.append(("step-up-otp", "/login/otp?" + urlencode({"return": back}),
                      "stepup.otp"))
    if ("pwd",) in alternatives:
        links.append(("step-up-password", "/login?" + urlencode(
            {"return": back, "login_hint": who.person.uid}), "stepup.password"))
    return links


def asked_for() -> str:
    """The page to return to after a step-up (a POST returns to the dashboard)."""
    # ASCII (percent-encoded), as ``safe_return`` accepts it, even with a Chinese query
    return iri_to_uri(req.full_path).rstrip("?") if req.method == "GET" else "/console/admin/"


def admin_only(view: Callable[..., Response]) -> Callable[..., Response]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        who = viewer()
        if who is None:
            return login_redirect()
        if who.refusal is not None:
            if who.refusal.reason == "group":
                return message(who, "title.denied", tr("denied.group"), 403)
            return message(who, "title.denied", tr("denied.level", level=who.refusal.level),
                           403, step_up=step_up_links(who, asked_for()))
        if req.method == "POST" and not csrf_ok():
            return message(who, "title.error", tr("msg.csrf"), 400)
        return view(who, *args, **kwargs)
    return wrapper


def failed(who: Viewer, err: Exception, back: str) -> Response:
    if isinstance(err, KeyStoreError):
        raise err  # the CA key is out of reach: the web edge's one 503 handler answers
    return message(who, "title.error", tr("err.generic", reason=str(err)), 400, back=back)


def settle_events() -> None:
    """Deliver lifecycle events now (revocations, session ends) instead of at the
    next background tick; a failure is retried by that tick."""
    try:
        services().deliver_events()
    except Exception:
        log.exception("delivering lifecycle events failed; the background tick retries")


# -- dashboard ------------------------------------------------------------------------
@bp.get("/admin/")
@admin_only
def dashboard(who: Viewer) -> Response:
    svc = services()
    now = datetime.now(UTC)
    local = now.astimezone(local_zone())
    certs = [c for c in svc.ca.find(limit=MAX_LIST) if c.owner_kind is not OwnerKind.CA]
    failures = queries.failed_sign_ins_by_hour(svc.sessions, now)
    total = sum(failures)
    chart = bar_chart_svg(failures, tr("dash.failed_total", n=total),
                          first_label=(local - timedelta(hours=24)).strftime("%H:%M"),
                          last_label=local.strftime("%H:%M %Z"))
    return render("console/admin/dashboard.html", who,
                  people=len(svc.directory.search(limit=MAX_LIST)),
                  sessions=queries.count_active_sessions(svc.sessions, time.time()),
                  by_status=queries.certificates_by_status(certs),
                  expiring=queries.expiring(certs, now, 30), chart=chart, failed_total=total)


# -- people ---------------------------------------------------------------------------
@bp.get("/admin/people")
@admin_only
def people(who: Viewer) -> Response:
    by = req.args.get("by", "name")
    q = (req.args.get("q") or "").strip()[:256]
    found = None
    error = None
    if q and by in SEARCH_FIELDS:
        try:
            found = services().directory.search(**{by: q}, limit=200)
        except DirectoryError as err:
            found, error = [], str(err)
    return render("console/admin/people.html", who, by=by, q=q, found=found, error=error,
                  fields=SEARCH_FIELDS)


@bp.get("/admin/people/<uid>")
@admin_only
def person(who: Viewer, uid: str) -> Response:
    svc = services()
    try:
        target = svc.directory.show(uid)
    except DirectoryError:
        return message(who, "title.error", tr("err.not_found"), 404, back="/console/admin/people")
    return render("console/admin/person.html", who, person=target,
                  certs=svc.ca.find(uid=uid), otp=svc.totp.status(target),
                  sessions=queries.active_sessions(svc.sessions, target.entry_uuid,
                                                   time.time(), svc.assurance_policy,
                                                   limit=queries.SESSIONS_SHOWN),
                  sign_ins=queries.recent_sign_ins(svc.sessions, uid, limit=10),
                  reasons=REVOKE_REASONS)


IRREVERSIBLE = {"leave", "reset-otp"}


@bp.post("/admin/people/<uid>/<action>")
@admin_only
def person_action(who: Viewer, uid: str, action: str) -> Response:
    svc = services()
    back = f"/console/admin/people/{uid}"
    if action in IRREVERSIBLE and not confirmed():
        return message(who, "title.error", tr("confirm.required"), 400, back=back)
    reason = (req.form.get("reason") or "")[:256]
    actor = who.person.uid
    try:
        target = svc.directory.show(uid)
        if action == "suspend":
            svc.directory.suspend(uid, actor=actor, reason=reason)
            settle_events()
        elif action == "restore":
            svc.directory.restore(uid, actor=actor, reason=reason)
            settle_events()
        elif action == "leave":
            svc.directory.leave(uid, actor=actor, reason=reason)
            settle_events()
        elif action == "reset-otp":
            svc.totp.reset(target, actor=actor)
        elif action == "end-session":
            sid = req.form.get("sid", "")
            if sid in {s.sid for s in queries.active_sessions(
                    svc.sessions, target.entry_uuid, time.time(), svc.assurance_policy)}:
                svc.provider.logout.end_session(sid)
                svc.provider.logout.deliver_soon()
                svc.audit.record(actor=actor, action="idp.session.end", target=uid,
                                 details={"by": "administrator"})
        else:
            return message(who, "title.error", tr("err.not_found"), 404, back=back)
    except NotFound:
        return message(who, "title.error", tr("err.not_found"), 404, back="/console/admin/people")
    except DirectoryError as err:
        return failed(who, err, back)
    return redirect(back, 303)  # type: ignore[return-value]


# -- certificates ---------------------------------------------------------------------
@bp.get("/admin/certificates")
@admin_only
def admin_certificates(who: Viewer) -> Response:
    svc = services()
    status = req.args.get("status", "")
    profile = req.args.get("profile", "")
    department = (req.args.get("department") or "").strip()[:256]
    days = req.args.get("expiring", "")
    wanted = CertStatus(status) if status in {s.value for s in CertStatus} else None
    count = parse_ascii_int(days, maximum=99_999)  # ASCII digits: "²" is not a number
    within = timedelta(days=count) if count is not None else None
    certs = svc.ca.find(status=wanted, expiring_within=within, limit=MAX_LIST)
    certs = [c for c in certs if c.owner_kind is not OwnerKind.CA]
    owners = None
    error = None
    if department:
        try:
            owners = {p.uid for p in svc.directory.search(department=department,
                                                          limit=MAX_LIST)}
        except DirectoryError as err:
            owners, error = set(), str(err)
    shown = queries.filter_certificates(certs, profile=profile, owners=owners)
    return render("console/admin/certificates.html", who, certs=shown[:500], status_filter=status,
                  profile=profile, department=department, expiring=days, error=error,
                  statuses=[s.value for s in CertStatus],
                  profiles=(*PERSON_PROFILES, "tls-server"))


@bp.get("/admin/certificates/<serial>")
@admin_only
def admin_certificate(who: Viewer, serial: str) -> Response:
    try:
        rec = services().ca.get(serial)
    except PKIError:
        return message(who, "title.error", tr("err.not_found"), 404,
                       back="/console/admin/certificates")
    return render("console/admin/certificate.html", who, rec=rec, reasons=REVOKE_REASONS)


@bp.get("/admin/certificates/<serial>.<fmt>")
@admin_only
def admin_certificate_download(who: Viewer, serial: str, fmt: str) -> Response:
    try:
        rec = services().ca.get(serial)
    except PKIError:
        rec = None
    if rec is None or fmt not in ("pem", "der"):
        return message(who, "title.error", tr("err.not_found"), 404)
    return cert_file(rec.der, fmt, rec.serial)


@bp.post("/admin/certificates/<serial>/<action>")
@admin_only
def admin_certificate_action(who: Viewer, serial: str, action: str) -> Response:
    ca = services().ca
    back = f"/console/admin/certificates/{serial}"
    actor = who.person.uid
    try:
        if action == "revoke":
            if not confirmed():
                return message(who, "title.error", tr("confirm.required"), 400, back=back)
            ca.revoke(serial, req.form.get("reason") or "unspecified", actor=actor)
        elif action == "hold":
            ca.hold(serial, actor=actor)
        elif action == "release":
            ca.release(serial, actor=actor)
        else:
            return message(who, "title.error", tr("err.not_found"), 404, back=back)
    except PKIError as err:
        return failed(who, err, back)
    return redirect(back, 303)  # type: ignore[return-value]


@bp.route("/admin/certificates/issue", methods=["GET", "POST"])
@admin_only
def admin_issue(who: Viewer) -> Response:
    svc = services()
    uid = (req.values.get("uid") or "").strip()[:256]
    if req.method == "GET":
        return render("console/admin/issue.html", who, uid=uid, profiles=PERSON_PROFILES)
    back = "/console/admin/certificates/issue"
    profile = req.form.get("profile", "")
    if profile not in PERSON_PROFILES:
        return message(who, "title.error", tr("error.invalid_request"), 400, back=back)
    try:
        target = svc.directory.show(uid)
        passphrase = req.form.get("passphrase", "")
        if req.form.get("mode") == "pkcs12":
            pair = svc.ca.issue_pkcs12(target, profile, passphrase.encode()[:256],
                                       actor=who.person.uid)
            return pkcs12_response(pair.pkcs12, pair.issued.record.serial)
        csr = read_csr()
        if csr is None:
            return message(who, "title.error", tr("error.invalid_request"), 400, back=back)
        issued = svc.ca.issue_from_csr(target, profile, csr, actor=who.person.uid)
    except (DirectoryError, PKIError) as err:
        return failed(who, err, back)
    return render("console/issued.html", who, rec=issued.record,
                  download_base=f"/console/admin/certificates/{issued.record.serial}")


# -- department apps ------------------------------------------------------------------
def lines(field: str) -> list[str]:
    return [x.strip() for x in (req.form.get(field) or "").splitlines() if x.strip()]


def level_of_form() -> int:
    return parse_level(req.form.get("level", "")) or 0  # ASCII digits only


@bp.get("/admin/apps")
@admin_only
def apps(who: Viewer) -> Response:
    return render("console/admin/apps.html", who, apps=services().provider.clients.list(),
                  classes=[c.value for c in InfoClass])


@bp.post("/admin/apps")
@admin_only
def app_register(who: Viewer) -> Response:
    svc = services()
    try:
        client = build_client(
            name=req.form.get("name", ""), redirect_uris=lines("redirect_uris"),
            level=level_of_form(), public=req.form.get("public") == "yes",
            info_class=req.form.get("info_class", "public"),
            allowed_departments=lines("departments"),
            allowed_group=(req.form.get("group") or "").strip() or None)
        stored, secret = svc.provider.clients.add(client)
    except IdPError as err:
        return failed(who, err, "/console/admin/apps")
    svc.audit.record(actor=who.person.uid, action="client.register", target=stored.client_id,
                     details={"name": stored.name, "level": str(stored.level),
                              "info_class": stored.info_class.value})
    return render("console/admin/secret.html", who, client=stored, secret=secret)


def client_or_none(client_id: str) -> Any:
    return services().provider.clients.get(client_id)


@bp.route("/admin/apps/<client_id>", methods=["GET", "POST"])
@admin_only
def app_edit(who: Viewer, client_id: str) -> Response:
    svc = services()
    client = client_or_none(client_id)
    if client is None:
        return message(who, "title.error", tr("err.not_found"), 404, back="/console/admin/apps")
    if req.method == "POST":
        try:
            client = queries.edit_client(
                svc.sessions, client, name=req.form.get("name", ""),
                redirect_uris=lines("redirect_uris"), level=level_of_form(),
                info_class=req.form.get("info_class", ""),
                allowed_departments=lines("departments"),
                allowed_group=(req.form.get("group") or "").strip() or None)
        except IdPError as err:
            return failed(who, err, f"/console/admin/apps/{client_id}")
        svc.audit.record(actor=who.person.uid, action="client.edit", target=client_id,
                         details={"name": client.name, "level": str(client.level),
                                  "info_class": client.info_class.value})
        return redirect("/console/admin/apps", 303)  # type: ignore[return-value]
    return render("console/admin/app.html", who, client=client,
                  classes=[c.value for c in InfoClass])


@bp.post("/admin/apps/<client_id>/rotate")
@admin_only
def app_rotate(who: Viewer, client_id: str) -> Response:
    svc = services()
    back = f"/console/admin/apps/{client_id}"
    if not confirmed():
        return message(who, "title.error", tr("confirm.required"), 400, back=back)
    try:
        secret = svc.provider.clients.rotate_secret(client_id)
    except IdPError as err:
        return failed(who, err, back)
    svc.audit.record(actor=who.person.uid, action="client.rotate_secret", target=client_id)
    return render("console/admin/secret.html", who, client=client_or_none(client_id),
                  secret=secret)


# -- audit log -------------------------------------------------------------------------
@bp.get("/admin/audit")
@admin_only
def audit(who: Viewer) -> Response:
    svc = services()
    flt = queries.AuditFilter(
        actor=(req.args.get("actor") or "").strip()[:256],
        action=(req.args.get("action") or "").strip()[:64],
        person=(req.args.get("person") or "").strip()[:256],
        since=queries.parse_day(req.args.get("since")),
        until=queries.parse_day(req.args.get("until")))
    report = svc.verify_audit(sign=False)
    return render("console/admin/audit.html", who, flt=flt,
                  records=queries.audit_records(
                      svc.sessions, flt,
                      zone=local_zone()),
                  report=report)
