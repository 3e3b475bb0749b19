"""The forced password change of the login flow (``/login/password``).

A login whose password the directory reports expired (ppolicy ``passwordExpired``)
or reset by an administrator (``changeAfterReset``) creates no session: the
login form hands over to this page with a pending change (``idp.login.passwords``)
in a cookie. The person gives her current password again (the directory changes
it as her, so ppolicy checks history and quality) and a new one twice; then her
other sessions end, a session starts and the login goes on where it was going.
``explain`` puts a refusal into words for the console's pages as well.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from flask import Blueprint, Response, redirect
from flask import request as req

from directory.model import AuthResult
from idp.login.passwords import Refusal, Refused, change, issue_pending, read_pending
from idp.login.sessions import COOKIE_NAME
from idp.login.throttle import LOGIN_PER_ADDRESS, LOGIN_PER_UID, Limit
from idp.web import catalog
from idp.web.kit import (
    LOGIN_MARK,
    client_address,
    csrf_ok,
    login_mark,
    page_lang,
    provider,
    render,
    render_with_csrf,
    safe_return,
    set_cookie,
)

bp = Blueprint("password", __name__)

PENDING_COOKIE = "gt_pwchange"
# What the login learned, as the page tells it.
WHY = {AuthResult.PASSWORD_EXPIRED: "expired", AuthResult.MUST_CHANGE: "reset"}


def explain(refused: Refused, lang: str) -> str:
    """A refusal in the page's language (the broken rules listed for WEAK)."""
    t = catalog.scope(lang, "sso")
    text = t["pw.err." + refused.reason.value]
    if refused.reason is Refusal.WEAK and refused.rules:
        sep = "、" if lang == "zh-CN" else ", "
        text += " " + sep.join(t.get("pw.rule." + r, r) for r in refused.rules)
    return text


def throttle_keys(uid: str) -> tuple[tuple[str, Limit], ...]:
    """The login's own buckets: guessing the current password on a change page
    costs what guessing it on the login form does."""
    return (("login-addr:" + client_address(), LOGIN_PER_ADDRESS),
            ("login-uid:" + uid.lower(), LOGIN_PER_UID))


def begin(uid: str, result: AuthResult, return_to: str) -> Response | None:
    """The login's hand-over to the change page, or None when this provider cannot
    change passwords (the login form then explains the result as before)."""
    p = provider()
    if p.passwords is None or result not in WHY:
        return None
    state = p.passwords.password_state(uid)
    if state is None:
        return None
    token = issue_pending(p.cookie_key, uid, return_to, state, WHY[result], time.time())
    resp: Response = redirect("/login/password", 303)  # type: ignore[assignment]
    set_cookie(resp, PENDING_COOKIE, token, max_age=600)
    return resp


def _gone(status: int = 400) -> Response:
    resp = render("message.html", status=status, title_key="title.password",
                  message_key="pw.pending_gone")
    resp.delete_cookie(PENDING_COOKIE, path="/")
    return resp


@bp.get("/login/password")
def change_form() -> Response:
    p = provider()
    pending = read_pending(p.cookie_key, req.cookies.get(PENDING_COOKIE), time.time())
    if pending is None or p.passwords is None:
        return _gone()
    return render_with_csrf("password_change.html", uid=pending.uid,
                            why="pw.why." + pending.reason, message=None)


@bp.post("/login/password")
def change_submit() -> Response:
    p = provider()
    pending = read_pending(p.cookie_key, req.cookies.get(PENDING_COOKIE), time.time())
    if pending is None or p.passwords is None:
        return _gone()
    uid = pending.uid

    def again(message: str, status: int) -> Response:
        return render_with_csrf("password_change.html", status=status, uid=uid,
                                why="pw.why." + pending.reason, message=message)

    if not csrf_ok():
        return again(catalog.text(page_lang(), "sso.msg.csrf"), 400)
    # A spent token: the password it was issued for is no longer the current one.
    current = p.passwords.password_state(uid)
    if current is None or current != pending.state:
        return _gone()
    keys = throttle_keys(uid)
    if p.throttle.blocked(*keys):
        return again(catalog.text(page_lang(), "sso.msg.throttled"), 429)
    form = req.form
    refused = change(p.passwords, uid, form.get("old", ""), form.get("new", ""),
                     form.get("repeat", ""))
    if refused is not None:
        if refused.reason is Refusal.WRONG_OLD:
            p.throttle.failed(*keys)
        _audit(uid, "refused", refused.reason.value)
        return again(explain(refused, page_lang()), 400)
    outcome = p.authenticator.authenticate(uid, form.get("new", ""))
    if not outcome.ok or outcome.person is None:  # changed, but not usable now
        _audit(uid, "changed", outcome.result.value)
        return _gone(200)
    ended = end_sessions_of(outcome.person.entry_uuid, keep=None)
    _audit(uid, "changed", pending.reason, ended)
    p.audit_login(uid, outcome.result.value, client_address())
    cookie, sess = p.sessions.create(outcome.person, user_agent=req.user_agent.string,
                                     address=client_address())
    target = safe_return(pending.return_to)
    if target.startswith("/authorize?"):
        target += "&" + urlencode({LOGIN_MARK: login_mark(sess.sid)})
    resp: Response = redirect(target, 303)  # type: ignore[assignment]
    set_cookie(resp, COOKIE_NAME, cookie, max_age=p.sessions.lifetime)
    resp.delete_cookie(PENDING_COOKIE, path="/")
    return resp


def end_sessions_of(subject: str, keep: str | None) -> int:
    """End every session of ``subject`` but ``keep`` (its apps are told); how many."""
    p = provider()
    ended = 0
    for sid in p.sessions.active_for_subject(subject):
        if sid != keep:
            p.logout.end_session(sid)
            ended += 1
    if ended:
        p.logout.deliver_soon()
    return ended


def _audit(uid: str, result: str, reason: str, ended: int = 0) -> None:
    audit = provider().audit
    if audit is not None:
        audit.record(actor=uid[:256], action="idp.password.change", target=uid[:256],
                     details={"via": "login", "result": result, "reason": reason,
                              "sessions_ended": str(ended), "address": client_address()})
