"""The console's pages for the key management centre (``pki.kmc``).

``/console/keys``: a person's escrowed encryption keys — a new escrowed
``user-encrypt`` certificate (the key comes back as a PKCS#12 under the
passphrase they type) and recovery of their own key, in a level-3 session.

``/console/key-recovery``: organisational or judicial recovery of someone
else's key. A member of a requester group files a request with a reason; members
of the key recovery agents group approve it, each in their own level-3 session;
once m have, the requester (and only they) collects the key, once. The rules
live in the KMC core; this edge passes the session's level and shows refusals.
"""

from __future__ import annotations

from typing import Any

from flask import Response, redirect
from flask import request as req

from idp.console import bp
from idp.console.render import Viewer, message, render, services, tr
from idp.console.views import audit_issuance, issuance, pkcs12_response, signed_in
from idp.web import catalog
from pki.errors import KmcRefused, PKIError
from pki.kmc import KeyManagementCentre, Pkcs12

MAX_PASSPHRASE = 256
MAX_REASON_FORM = 2000


def kmc() -> KeyManagementCentre:
    return services().kmc


@bp.app_context_processor
def kmc_navigation() -> dict[str, Any]:
    """Which groups see the key recovery page in the menu (the page itself and the
    KMC core decide what each may do)."""
    def member(groups: tuple[str, ...]) -> bool:
        try:
            settings = kmc().settings
        except PKIError:
            return False
        wanted = {settings.agents_group, *settings.requester_groups}
        return bool(wanted & set(groups))
    return {"kmc_member": member}


def refused(who: Viewer, err: KmcRefused, back: str) -> Response:
    """A KMC refusal in words; 403 for who/level, 400 for the rest."""
    key = f"kmc.refused.{err.reason.value}"
    text = tr(key) if key in _keys() else tr("err.generic", reason=err.reason.value)
    status = 403 if err.reason.value in _FORBIDDEN else 400
    return message(who, "title.error", text, status, back=back)


_FORBIDDEN = frozenset({"level_too_low", "not_agent", "not_allowed_to_request",
                        "requester_approval", "not_requester", "not_owner", "no_session"})


def _keys() -> frozenset[str]:
    return frozenset(k.removeprefix("console.") for k in catalog.words("zh-CN"))


def _passphrase() -> bytes | None:
    value = req.form.get("passphrase", "")
    return value.encode() if value and len(value) <= MAX_PASSPHRASE else None


# -- my encryption keys ------------------------------------------------------------------
@bp.get("/keys")
@signed_in
def my_keys(who: Viewer) -> Response:
    escrowed = kmc().escrowed_keys(who.person.uid)
    records = {e.serial: services().ca.get(e.serial) for e in escrowed if e.serial}
    return render("console/keys.html", who, keys=list(records.values()),
                  required=kmc().settings.required_level)


@bp.post("/keys/issue")
@signed_in
def my_keys_issue(who: Viewer) -> Response:
    # an encryption certificate is self-service under the same assurance rule as the
    # certificates page (policies/assurance.yaml: self_service_certificates)
    decided = issuance(who, "user-encrypt")
    if isinstance(decided, Response):
        return decided
    passphrase = _passphrase()
    if passphrase is None:
        return message(who, "title.error", tr("error.invalid_request"), 400, back="/console/keys")
    try:
        done = kmc().issue_escrowed(who.person, Pkcs12(passphrase), actor=who.person.uid)
    except KmcRefused as err:
        return refused(who, err, "/console/keys")
    except PKIError as err:
        return message(who, "title.error", tr("err.generic", reason=str(err)), 400,
                       back="/console/keys")
    audit_issuance(who, done.issued.record.serial, decided)
    return pkcs12_response(done.key.data, done.issued.record.serial)


@bp.post("/keys/recover")
@signed_in
def my_keys_recover(who: Viewer) -> Response:
    serial, passphrase = req.form.get("serial", "")[:64], _passphrase()
    if not serial or passphrase is None:
        return message(who, "title.error", tr("error.invalid_request"), 400, back="/console/keys")
    try:
        got = kmc().recover_own(who.person, serial, Pkcs12(passphrase), level=who.level,
                                actor=who.person.uid)
    except KmcRefused as err:
        return refused(who, err, "/console/keys")
    return pkcs12_response(got.data, got.serial)


# -- organisational recovery ----------------------------------------------------------------
@bp.get("/key-recovery")
@signed_in
def recovery(who: Viewer) -> Response:
    centre = kmc()
    settings = centre.settings
    groups = set(who.person.groups)
    may_request = bool(groups & set(settings.requester_groups))
    is_agent = settings.agents_group in groups
    if not (may_request or is_agent):
        return message(who, "title.error", tr("kmc.refused.not_agent"), 403)
    return render("console/key_recovery.html", who, requests=centre.requests(),
                  may_request=may_request, is_agent=is_agent, settings=settings)


@bp.post("/key-recovery/request")
@signed_in
def recovery_request(who: Viewer) -> Response:
    serial = req.form.get("serial", "").strip().lower()[:64]
    reason = req.form.get("reason", "")[:MAX_REASON_FORM]
    try:
        kmc().request_recovery(who.person, serial, reason, level=who.level)
    except KmcRefused as err:
        return refused(who, err, "/console/key-recovery")
    return redirect("/console/key-recovery", 303)  # type: ignore[return-value]


@bp.post("/key-recovery/<request_id>/approve")
@signed_in
def recovery_approve(who: Viewer, request_id: str) -> Response:
    try:
        kmc().approve(request_id, who.person, level=who.level)
    except KmcRefused as err:
        return refused(who, err, "/console/key-recovery")
    return redirect("/console/key-recovery", 303)  # type: ignore[return-value]


@bp.post("/key-recovery/<request_id>/collect")
@signed_in
def recovery_collect(who: Viewer, request_id: str) -> Response:
    passphrase = _passphrase()
    if passphrase is None:
        return message(who, "title.error", tr("error.invalid_request"), 400,
                       back="/console/key-recovery")
    try:
        got = kmc().collect(request_id, who.person, Pkcs12(passphrase), level=who.level)
    except KmcRefused as err:
        return refused(who, err, "/console/key-recovery")
    return pkcs12_response(got.data, got.serial)
