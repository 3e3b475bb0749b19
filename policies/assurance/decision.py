"""The app decision: may this person, with what this session did, use this app now?

:func:`decide` turns (person, session, app) into a value - :class:`Allow`,
:class:`StepUp` (only the missing methods) or :class:`Deny` (a reason the page
can explain in zh-CN or en, and whom to ask) - never a boolean, so the web edge
can explain it. GB/T 22239-2019 levels and information classes come from the
injected :class:`~policies.assurance.model.AssurancePolicy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from policies.assurance.facts import AppFacts, PersonFacts, SessionFacts
from policies.assurance.loading import load_policy
from policies.assurance.model import AssurancePolicy, Explanation
from policies.assurance.terms import DenyReason, Needs


@dataclass(frozen=True)
class Allow:
    level: int  # what the session reaches now (>= the required level)
    acr: str
    amr: tuple[str, ...]


@dataclass(frozen=True)
class StepUp:
    required_level: int
    acr: str
    missing_methods: tuple[str, ...]  # what to ask for (the preferred alternative)
    alternatives: tuple[tuple[str, ...], ...] = ()  # every smallest set that would do
    # When the person cannot be asked (prompt=none), the app receives this error.
    oauth_error: str = field(default="unmet_authentication_requirements")


@dataclass(frozen=True)
class Deny:
    reason: DenyReason
    explanation: Explanation
    oauth_error: str = "access_denied"


Decision = Allow | StepUp | Deny


def department_matches(person_department: Sequence[str], allowed: str) -> bool:
    """Path-prefix match on whole segments: ``市财政局`` covers ``市财政局/预算处``."""
    want = tuple(p for p in allowed.strip("/").split("/") if p)
    return bool(want) and tuple(person_department[: len(want)]) == want


def decide(person: PersonFacts, session: SessionFacts, app: AppFacts,
           requested_level: int | None = None, *, now: datetime,
           policy: AssurancePolicy | None = None) -> Decision:
    """May ``person``, with what ``session`` did, use ``app`` now?

    ``session`` should be :func:`~policies.assurance.facts.counted_methods` of the
    stored session, so a factor enrolled in it does not count. ``requested_level``
    comes from ``acr_values`` or an essential ``acr`` claim. Refusals that no login
    can fix come first; then the level.
    """
    pol = policy or load_policy()

    def deny(reason: DenyReason) -> Deny:
        return Deny(reason, pol.explain(reason))

    if person.status == "suspended":
        return deny(DenyReason.SUSPENDED)
    if person.status != "active":
        return deny(DenyReason.LEFT)
    klass = pol.info_classes[app.info_class]
    if klass.needs is Needs.DEPARTMENTS:
        if not app.allowed_departments:
            return deny(DenyReason.APP_MISCONFIGURED)
        if not any(department_matches(person.department, d) for d in app.allowed_departments):
            return deny(DenyReason.DEPARTMENT_NOT_ALLOWED)
    elif klass.needs is Needs.GROUP:
        if not app.group:
            return deny(DenyReason.APP_MISCONFIGURED)
        if app.group not in person.groups:
            return deny(DenyReason.NOT_IN_GROUP)
    if app.level not in pol.levels:
        return deny(DenyReason.APP_MISCONFIGURED)
    required = max(app.level, klass.min_level, requested_level or 0)
    if required not in pol.levels:
        return deny(DenyReason.LEVEL_UNAVAILABLE)
    fresh = pol.fresh_methods(session, required, now)
    if pol.rule(required).satisfied_by(fresh):
        reached = max(required, pol.session_level(session, now))
        return Allow(reached, pol.acr(reached), pol.amr(fresh))
    options = pol.missing_for(fresh, required)
    return StepUp(required, pol.acr(required), options[0] if options else (), options)
