"""The console's password pages: change my password (``/console/password``) and
set a new one after proving myself with a certificate (``/console/password/reset``).

The rules live in ``idp.login.passwords`` and the directory's ppolicy; these views
adapt HTTP. Both end the person's other sessions (this one is kept), and a wrong
current password counts against the login's throttle buckets.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from flask import Response
from flask import request as req

from idp.console import bp
from idp.console.render import Viewer, current_lang, message, render, services, tr
from idp.console.views import signed_in
from idp.login.passwords import Refusal, change, reset, reset_proof
from idp.web.kit import client_address
from idp.web.password_views import explain, throttle_keys

RESET_PATH = "/console/password/reset"


def _end_others(who: Viewer) -> int:
    """End the person's sessions but this one (their apps are told)."""
    logout = services().provider.logout
    sessions = services().provider.sessions
    ended = 0
    for sid in sessions.active_for_subject(who.person.entry_uuid):
        if sid != who.session.sid:
            logout.end_session(sid)
            ended += 1
    if ended:
        logout.deliver_soon()
    return ended


def _audit(who: Viewer, via: str, result: str, detail: str, ended: int = 0) -> None:
    services().audit.record(actor=who.person.uid, action="idp.password.change",
                            target=who.person.uid,
                            details={"via": via, "result": result, "reason": detail,
                                     "sessions_ended": str(ended),
                                     "address": client_address()})


@bp.get("/password")
@signed_in
def password_form(who: Viewer) -> Response:
    return render("console/password.html", who, result=None)


@bp.post("/password")
@signed_in
def password_change(who: Viewer) -> Response:
    provider = services().provider
    keys = throttle_keys(who.person.uid)
    if provider.throttle.blocked(*keys):
        return render("console/password.html", who, status=429, result=tr("msg.throttled"))
    form = req.form
    refused = change(services().directory, who.person.uid, form.get("old", ""),
                     form.get("new", ""), form.get("repeat", ""))
    if refused is not None:
        if refused.reason is Refusal.WRONG_OLD:
            provider.throttle.failed(*keys)
        _audit(who, "console", "refused", refused.reason.value)
        return render("console/password.html", who, status=400,
                      result=explain(refused, current_lang()))
    ended = _end_others(who)
    _audit(who, "console", "changed", "own", ended)
    return message(who, "title.password", tr("pw.done"), back="/console/")


def _proof(who: Viewer) -> str | None:
    return reset_proof(dict(who.session.facts().methods), who.level, datetime.now(UTC))


@bp.get("/password/reset")
@signed_in
def password_reset_form(who: Viewer) -> Response:
    return render("console/password_reset.html", who, proof=_proof(who), result=None,
                  cert_link="/login/certificate?" + urlencode({"return": RESET_PATH}),
                  otp_link="/login/otp?" + urlencode({"return": RESET_PATH}))


@bp.post("/password/reset")
@signed_in
def password_reset(who: Viewer) -> Response:
    proof = _proof(who)
    if proof is None:
        return render("console/password_reset.html", who, status=403, proof=None,
                      result=tr("pw.reset_needs"),
                      cert_link="/login/certificate?" + urlencode({"return": RESET_PATH}),
                      otp_link="/login/otp?" + urlencode({"return": RESET_PATH}))
    refused = reset(services().directory, who.person.uid, req.form.get("new", ""),
                    req.form.get("repeat", ""), proof)
    if refused is not None:
        _audit(who, "certificate", "refused", refused.reason.value)
        return render("console/password_reset.html", who, status=400, proof=proof,
                      result=explain(refused, current_lang()), cert_link="", otp_link="")
    ended = _end_others(who)
    _audit(who, "certificate", "reset", proof, ended)
    return message(who, "title.password_reset", tr("pw.reset_done"), back="/console/")
