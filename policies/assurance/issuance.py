"""Self-service certificates: may the console issue this profile to the person signed in?

A ``user-auth`` certificate reaches level 3 with the password, so it is a
credential a registration authority vouches for, not a download. The console
issues it to its own subject only when the session shows a factor *established
before this session*: renewal with a currently valid certificate of the person
(the session logged in with it), or an authenticator enrolled before this session
and used in it. Otherwise an administrator approves the request, or it is refused
(``self_service_certificates`` in ``policies/assurance.yaml`` says which, per
profile). A factor enrolled in this session never counts
(:func:`~policies.assurance.facts.counted_methods`): with a stolen password one
could enrol a first authenticator, use it once, and mint a level-3 certificate.

Pure: the web edge gathers :class:`IssuanceFacts` and turns the decision into a
page; nothing here reads a clock, a database or a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from policies.assurance.facts import SessionFacts, counted_methods, enrolled_during
from policies.assurance.model import AssurancePolicy
from policies.assurance.terms import METHOD_ORDER, IssuanceDenyReason, WithoutEstablishedFactor


@dataclass(frozen=True)
class IssuanceFacts:
    """What the edge knows when a person asks the console for a certificate.

    ``enrolled_at`` has one entry per factor the person *holds now*, dated when it
    was enrolled: ``otp`` the active authenticator's activation time; ``swk`` /
    ``hwk`` the issuance time of the certificate this session logged in with, only
    while that certificate is still valid (not expired, revoked or on hold) and the
    person's. A factor missing from it does not vouch, whatever the session did.
    """

    profile: str  # the certificate profile asked for, e.g. "user-auth"
    session: SessionFacts  # what this session did, each method with its time
    session_started: datetime  # when this session was created (not its auth_time)
    enrolled_at: Mapping[str, datetime]


@dataclass(frozen=True)
class IssueNow:
    """Issue it: ``established_by`` are the methods that vouched (for the audit log)."""

    profile: str
    established_by: tuple[str, ...]


@dataclass(frozen=True)
class NeedsApproval:
    """Record the request for an administrator to approve; issue nothing now."""

    profile: str


@dataclass(frozen=True)
class IssuanceDenied:
    """Refused. With ``VERIFY_FIRST``, ``verify_with`` lists the established factors
    the person holds and this session has not used: the page offers that step-up."""

    reason: IssuanceDenyReason
    verify_with: tuple[str, ...] = ()


IssuanceDecision = IssueNow | NeedsApproval | IssuanceDenied


def established_factors(facts: IssuanceFacts, policy: AssurancePolicy) -> tuple[str, ...]:
    """The session's methods that vouch for the person: counted (not enrolled in this
    session), listed in ``established_factors``, and still held (in ``enrolled_at``)."""
    fresh = enrolled_during(facts.session_started, facts.enrolled_at)
    counted = counted_methods(facts.session, fresh).methods
    allowed = policy.self_service.established_factors
    return tuple(m for m in METHOD_ORDER
                 if m in allowed and m in counted and m in facts.enrolled_at)


def decide_issuance(facts: IssuanceFacts, policy: AssurancePolicy) -> IssuanceDecision:
    """May the console issue ``facts.profile`` to the person of ``facts.session``?"""
    rule = policy.self_service.profiles.get(facts.profile)
    if rule is None:
        return IssuanceDenied(IssuanceDenyReason.NOT_SELF_SERVICE)
    vouching = established_factors(facts, policy)
    if vouching:
        return IssueNow(facts.profile, vouching)
    # Held and older than the session, but not used in it: ask for it before bothering
    # an administrator (an approval is for people who have nothing else).
    fresh = enrolled_during(facts.session_started, facts.enrolled_at)
    unused = tuple(m for m in METHOD_ORDER
                   if m in policy.self_service.established_factors
                   and m in facts.enrolled_at and m not in fresh)
    if unused:
        return IssuanceDenied(IssuanceDenyReason.VERIFY_FIRST, unused)
    if rule.without_established_factor is WithoutEstablishedFactor.APPROVAL:
        return NeedsApproval(facts.profile)
    return IssuanceDenied(IssuanceDenyReason.NO_ESTABLISHED_FACTOR)
