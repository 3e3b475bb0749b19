"""What the console shows, read from the database: sessions, sign-ins, the audit
log, dashboard counts; and the few writes the IdP's repositories do not offer
(editing a registered app).

Plain functions over a ``sessionmaker`` and plain values: no Flask here, so the
views stay thin and these can be tested without a browser.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from idp.errors import UnknownClient
from idp.login.tables import session_clients, sso_sessions
from idp.oidc.clients import Client, build_client
from idp.oidc.tables import oauth_clients
from pki.audit import AuditRecord
from pki.audit_store import audit_log
from pki.model import CertificateRecord, CertStatus
from policies.assurance import (
    Allow,
    AppFacts,
    AssurancePolicy,
    PersonFacts,
    SessionFacts,
    StepUp,
    decide,
)

LOGIN_ACTION = "idp.login"
ADMIN_GROUP = "security-admins"
ADMIN_LEVEL = 3
# The administration pages, judged as a department app of level 3 would be: the
# same rule, session ages and step-up alternatives.
ADMIN_APP = AppFacts("govtrust-console-admin", ADMIN_LEVEL)


# -- assurance ----------------------------------------------------------------------
def level_of_acr(acr: str, policy: AssurancePolicy) -> int:
    """The protection level a session's ``acr`` stands for (0 when unknown)."""
    return policy.level_for_acr(acr) or 0


@dataclass(frozen=True)
class AdminRefusal:
    """Why the administration pages are refused: ``group`` or ``level``; with
    ``level``, every smallest set of methods whose step-up would let her in."""

    reason: str
    level: int
    step_up: tuple[tuple[str, ...], ...] = ()


def admin_refusal(person: PersonFacts, counted: SessionFacts, *, now: datetime,
                  policy: AssurancePolicy) -> AdminRefusal | None:
    """``counted``: the session's methods that count (``counted_methods``), so an
    authenticator or certificate enrolled in this session does not open the pages."""
    level = policy.session_level(counted, now)
    if ADMIN_GROUP not in person.groups:
        return AdminRefusal("group", level)
    decision = decide(person, counted, ADMIN_APP, now=now, policy=policy)
    if isinstance(decision, Allow):
        return None
    # A Deny (suspended, departed) offers no step-up: no login would help.
    return AdminRefusal("level", level,
                        decision.alternatives if isinstance(decision, StepUp) else ())


# -- sessions -----------------------------------------------------------------------
@dataclass(frozen=True)
class SessionRow:
    sid: str
    auth_time: datetime
    expires_at: datetime
    acr: str
    level: int
    amr: tuple[str, ...]
    apps: tuple[str, ...]
    device: str = ""
    address: str = ""


_BROWSERS = (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chromium/", "Chromium"),
             ("Chrome/", "Chrome"), ("Safari/", "Safari"), ("curl/", "curl"),
             ("python-requests/", "python-requests"))
_SYSTEMS = (("Windows", "Windows"), ("Android", "Android"), ("iPhone", "iOS"),
            ("iPad", "iPadOS"), ("Mac OS X", "macOS"), ("UOS", "UOS"), ("Kylin", "Kylin"),
            ("Linux", "Linux"))


def device_label(user_agent: str | None) -> str:
    """A short, human name for a User-Agent ("Chrome 120 · Windows"); the raw string
    when nothing is recognised, cut to a readable length."""
    ua = (user_agent or "").strip()
    if not ua:
        return ""
    browser = ""
    for marker, name in _BROWSERS:
        at = ua.find(marker)
        if at >= 0:
            version = ua[at + len(marker):].split(" ", 1)[0].split(".", 1)[0]
            ascii_number = version.isascii() and version.isdigit()
            browser = f"{name} {version}".strip() if ascii_number else name
            break
    system = next((name for marker, name in _SYSTEMS if marker in ua), "")
    label = " · ".join(part for part in (browser, system) if part)
    return label or ua[:60]


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


SESSIONS_SHOWN = 50  # a page lists at most this many of a person's sessions


def active_sessions(db: sessionmaker[Session], subject: str, now: float,
                    policy: AssurancePolicy, limit: int | None = None) -> list[SessionRow]:
    """A person's live sessions, newest first, with the names of the apps each reached;
    at most ``limit`` of them (a page), all without it (ending them)."""
    query = select(sso_sessions).where(
        sso_sessions.c.subject == subject, sso_sessions.c.ended_at.is_(None),
        sso_sessions.c.expires_at > int(now)).order_by(sso_sessions.c.auth_time.desc())
    if limit is not None:
        query = query.limit(limit)
    with db() as s:
        rows = s.execute(query).all()
        sids = [r.sid for r in rows]
        used: dict[str, list[str]] = {}
        if sids:
            for sid, name in s.execute(
                    select(session_clients.c.sid, oauth_clients.c.name)
                    .join(oauth_clients, oauth_clients.c.client_id == session_clients.c.client_id)
                    .where(session_clients.c.sid.in_(sids))).all():
                used.setdefault(sid, []).append(name)
    return [SessionRow(r.sid, _at(r.auth_time), _at(r.expires_at), r.acr,
                       level_of_acr(r.acr, policy), tuple(r.amr.split()),
                       tuple(sorted(used.get(r.sid, ()))),
                       device_label(r.user_agent), r.address or "")
            for r in rows]


def count_person_sessions(db: sessionmaker[Session], subject: str, now: float) -> int:
    """How many live sessions a person has (a page shows the newest few)."""
    with db() as s:
        return int(s.execute(select(func.count()).select_from(sso_sessions).where(
            sso_sessions.c.subject == subject, sso_sessions.c.ended_at.is_(None),
            sso_sessions.c.expires_at > int(now))).scalar_one())


def count_active_sessions(db: sessionmaker[Session], now: float) -> int:
    with db() as s:
        return int(s.execute(select(func.count()).select_from(sso_sessions).where(
            sso_sessions.c.ended_at.is_(None), sso_sessions.c.expires_at > int(now))
        ).scalar_one())


# -- the audit log ------------------------------------------------------------------
@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    action: str = ""
    person: str = ""
    since: date | None = None
    until: date | None = None  # inclusive


def parse_day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _record(r: object) -> AuditRecord:
    try:
        details = json.loads(r.details)  # type: ignore[attr-defined]
    except ValueError:
        details = {"<unparseable>": r.details}  # type: ignore[attr-defined]
    at = r.at  # type: ignore[attr-defined]
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    return AuditRecord(r.seq, at, r.actor, r.action, r.target,  # type: ignore[attr-defined]
                       details, r.prev_hash, r.hash)  # type: ignore[attr-defined]


def audit_records(db: sessionmaker[Session], flt: AuditFilter, limit: int = 200,
                  zone: tzinfo = UTC
                  ) -> list[AuditRecord]:
    """Newest first. ``person`` matches the target or a value in the details (a
    certificate's owner, a login's uid)."""
    q = select(audit_log)
    if flt.actor:
        q = q.where(audit_log.c.actor == flt.actor)
    if flt.action:
        q = q.where(audit_log.c.action.startswith(flt.action, autoescape=True))
    if flt.person:
        q = q.where(or_(audit_log.c.target == flt.person,
                        audit_log.c.details.contains(json.dumps(flt.person, ensure_ascii=False),
                                                     autoescape=True)))
    # Days are the reader's days (``zone``), compared as UTC instants.
    if flt.since:
        q = q.where(audit_log.c.at >= datetime.combine(flt.since, time(), zone).astimezone(UTC))
    if flt.until:
        q = q.where(audit_log.c.at < datetime.combine(flt.until + timedelta(days=1), time(),
                                                      zone).astimezone(UTC))
    with db() as s:
        rows = s.execute(q.order_by(audit_log.c.seq.desc()).limit(limit)).all()
    return [_record(r) for r in rows]


def recent_sign_ins(db: sessionmaker[Session], uid: str, limit: int = 20) -> list[AuditRecord]:
    with db() as s:
        rows = s.execute(select(audit_log).where(
            audit_log.c.action == LOGIN_ACTION, audit_log.c.target == uid)
            .order_by(audit_log.c.seq.desc()).limit(limit)).all()
    return [_record(r) for r in rows]


def failed_sign_ins_by_hour(db: sessionmaker[Session], now: datetime, hours: int = 24
                            ) -> list[int]:
    """Failed logins per hour, oldest hour first; the last bucket ends at ``now``."""
    start = now - timedelta(hours=hours)
    with db() as s:
        rows = s.execute(select(audit_log.c.at, audit_log.c.details).where(
            audit_log.c.action == LOGIN_ACTION, audit_log.c.at >= start)).all()
    buckets = [0] * hours
    for at, details in rows:
        try:
            result = json.loads(details).get("result")
        except ValueError:
            result = None
        if result == "ok":
            continue
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        index = int((at - start).total_seconds() // 3600)
        buckets[min(max(index, 0), hours - 1)] += 1
    return buckets


# -- certificates -------------------------------------------------------------------
def certificates_by_status(records: Sequence[CertificateRecord]) -> dict[str, int]:
    counts = Counter(r.status.value for r in records)
    return {s.value: counts.get(s.value, 0) for s in CertStatus}


def expiring(records: Sequence[CertificateRecord], now: datetime, days: int
             ) -> list[CertificateRecord]:
    limit = now + timedelta(days=days)
    return [r for r in records if r.status is CertStatus.VALID and now <= r.not_after <= limit]


def filter_certificates(records: Sequence[CertificateRecord], *, profile: str = "",
                        owners: set[str] | None = None) -> list[CertificateRecord]:
    """``owners``: the uids of a department (None: no department filter)."""
    return [r for r in records
            if (not profile or r.profile == profile)
            and (owners is None or r.owner_uid in owners)]


# -- department apps ------------------------------------------------------------------
def edit_client(db: sessionmaker[Session], current: Client, *, name: str,
                redirect_uris: Sequence[str], level: int, info_class: str,
                allowed_departments: Sequence[str], allowed_group: str | None) -> Client:
    """Validate the new values as a registration would, then store them. Every
    worker's client cache expires within its TTL (seconds)."""
    checked = build_client(
        name=name, redirect_uris=redirect_uris, level=level, public=current.public,
        first_party=current.first_party, info_class=info_class,
        post_logout_redirect_uris=current.post_logout_redirect_uris,
        backchannel_logout_uri=current.backchannel_logout_uri,
        allowed_departments=allowed_departments, allowed_group=allowed_group,
        auth_method=None if current.public else current.auth_method.value,
        id_token_alg=current.id_token_alg, jwks=current.jwks)
    with db.begin() as s:
        done = s.execute(update(oauth_clients).where(
            oauth_clients.c.client_id == current.client_id).values(
            name=checked.name, redirect_uris=json.dumps(list(checked.redirect_uris)),
            level=checked.level, info_class=checked.info_class.value,
            allowed_departments=json.dumps(list(checked.allowed_departments),
                                           ensure_ascii=False),
            allowed_group=checked.allowed_group))
        if not done.rowcount:  # type: ignore[attr-defined]
            raise UnknownClient(current.client_id)
    return replace(current, name=checked.name, redirect_uris=checked.redirect_uris,
                   level=checked.level, info_class=checked.info_class,
                   allowed_departments=checked.allowed_departments,
                   allowed_group=checked.allowed_group)
