"""Self-service certificates and the factors a session may count.

The attack these rules close (issue 9, hostile input 1): with an administrator's
password only, enrol a first authenticator, use it once, obtain a ``user-auth``
certificate from the console, log in with it: level 3, administration. Each path
through :func:`counted_methods` and :func:`decide_issuance` is one named case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from policies.assurance import (
    Allow,
    AppFacts,
    IssuanceDecision,
    IssuanceDenied,
    IssuanceDenyReason,
    IssuanceFacts,
    IssueNow,
    NeedsApproval,
    PersonFacts,
    SessionFacts,
    StepUp,
    counted_methods,
    decide,
    decide_issuance,
    enrolled_during,
    load_policy,
)

POLICY = load_policy()
START = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # the session was created here
BEFORE = START - timedelta(days=30)  # a factor enrolled in an earlier session
ADMIN = PersonFacts("admin", "active", ("市大数据局",), frozenset({"security-admins"}))


def at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


def session(**methods: datetime) -> SessionFacts:
    facts = SessionFacts.empty(START)
    for method, when in methods.items():
        facts = facts.with_method(method, when)
    return facts


# -- rule (a): a factor enrolled in a session does not count in it ------------------------
@dataclass(frozen=True)
class Counted:
    session: SessionFacts
    enrolled_at: dict[str, datetime]
    counts: tuple[str, ...]


COUNTED = {
    "password_only": Counted(session(pwd=at(0)), {}, ("pwd",)),
    "authenticator_enrolled_in_session_and_used":
        Counted(session(pwd=at(0), otp=at(6)), {"otp": at(5)}, ("pwd",)),
    "authenticator_enrolled_before_session":
        Counted(session(pwd=at(0), otp=at(1)), {"otp": BEFORE}, ("pwd", "otp")),
    "enrolled_the_instant_the_session_began":
        Counted(session(pwd=at(0), otp=at(1)), {"otp": START}, ("pwd",)),
    "certificate_issued_in_session_and_used":
        Counted(session(pwd=at(0), swk=at(9)), {"swk": at(8)}, ("pwd",)),
    "certificate_issued_before_session":
        Counted(session(pwd=at(0), swk=at(1)), {"swk": BEFORE}, ("pwd", "swk")),
    # A later step-up moves auth_time past the enrolment; the session's start does not.
    "step_up_after_enrolment_does_not_launder_it":
        Counted(session(pwd=at(0), otp=at(6)).with_method("pwd", at(60)), {"otp": at(5)},
                ("pwd",)),
}


@pytest.mark.parametrize("case", list(COUNTED.values()), ids=list(COUNTED))
def test_counted_methods(case: Counted) -> None:
    fresh = enrolled_during(START, case.enrolled_at)
    counted = counted_methods(case.session, fresh)
    assert counted.amr == case.counts
    assert counted.auth_time == case.session.auth_time
    for method in counted.methods:
        assert counted.methods[method] == case.session.methods[method]


def test_a_certificate_issued_in_the_session_does_not_reach_level_3() -> None:
    """The last step of the attack, at the app: the new certificate is no second factor."""
    stored = session(pwd=at(0), swk=at(9))
    admin_console = AppFacts("console-admin", 3)
    assert isinstance(decide(ADMIN, stored, admin_console, now=at(10), policy=POLICY), Allow)
    counted = counted_methods(stored, enrolled_during(START, {"swk": at(8)}))
    got = decide(ADMIN, counted, admin_console, now=at(10), policy=POLICY)
    assert isinstance(got, StepUp) and got.missing_methods == ("swk",)


# -- rule (b): self-service issuance needs a factor established before the session ---------
@dataclass(frozen=True)
class Case:
    profile: str
    session: SessionFacts
    enrolled_at: dict[str, datetime] = field(default_factory=dict)
    want: IssuanceDecision = NeedsApproval("user-auth")


CASES = {
    # the attack: password, first authenticator enrolled now and used now
    "stolen_password_plus_new_authenticator_needs_approval":
        Case("user-auth", session(pwd=at(0), otp=at(6)), {"otp": at(5)},
             NeedsApproval("user-auth")),
    "password_only_holding_nothing_needs_approval":
        Case("user-auth", session(pwd=at(0)), {}, NeedsApproval("user-auth")),
    "authenticator_enrolled_earlier_and_used_now_issues":
        Case("user-auth", session(pwd=at(0), otp=at(1)), {"otp": BEFORE},
             IssueNow("user-auth", ("otp",))),
    "authenticator_enrolled_earlier_but_not_used_asks_for_it":
        Case("user-auth", session(pwd=at(0)), {"otp": BEFORE},
             IssuanceDenied(IssuanceDenyReason.VERIFY_FIRST, ("otp",))),
    "renewal_with_valid_software_certificate_issues":
        Case("user-auth", session(swk=at(0), pwd=at(0)), {"swk": BEFORE},
             IssueNow("user-auth", ("swk",))),
    "renewal_with_valid_hardware_certificate_issues":
        Case("user-auth", session(hwk=at(0), pwd=at(0)), {"hwk": BEFORE},
             IssueNow("user-auth", ("hwk",))),
    "certificate_alone_renews":
        Case("user-auth", session(swk=at(0)), {"swk": BEFORE},
             IssueNow("user-auth", ("swk",))),
    "two_established_factors_are_both_recorded":
        Case("user-auth", session(pwd=at(0), otp=at(1), swk=at(2)),
             {"otp": BEFORE, "swk": BEFORE}, IssueNow("user-auth", ("otp", "swk"))),
    # the certificate the session showed has since been revoked/expired: not held
    "certificate_no_longer_valid_needs_approval":
        Case("user-auth", session(swk=at(0), pwd=at(0)), {}, NeedsApproval("user-auth")),
    "certificate_issued_in_this_session_needs_approval":
        Case("user-auth", session(pwd=at(0), swk=at(9)), {"swk": at(8)},
             NeedsApproval("user-auth")),
    # used at login, then reset and re-enrolled in this session
    "authenticator_reenrolled_in_session_needs_approval":
        Case("user-auth", session(pwd=at(0), otp=at(1)), {"otp": at(3)},
             NeedsApproval("user-auth")),
    "authenticator_used_then_removed_needs_approval":
        Case("user-auth", session(pwd=at(0), otp=at(1)), {}, NeedsApproval("user-auth")),
    "step_up_after_enrolment_needs_approval":
        Case("user-auth", session(pwd=at(0), otp=at(6)).with_method("pwd", at(60)),
             {"otp": at(5)}, NeedsApproval("user-auth")),
    # profiles whose policy says deny rather than approval
    "signing_certificate_with_new_authenticator_is_refused":
        Case("user-sign", session(pwd=at(0), otp=at(6)), {"otp": at(5)},
             IssuanceDenied(IssuanceDenyReason.NO_ESTABLISHED_FACTOR)),
    "signing_certificate_with_earlier_authenticator_issues":
        Case("user-sign", session(pwd=at(0), otp=at(1)), {"otp": BEFORE},
             IssueNow("user-sign", ("otp",))),
    "encryption_certificate_password_only_is_refused":
        Case("user-encrypt", session(pwd=at(0)), {},
             IssuanceDenied(IssuanceDenyReason.NO_ESTABLISHED_FACTOR)),
    # profiles that are never self-service, whatever the session shows
    "tls_server_is_not_self_service":
        Case("tls-server", session(pwd=at(0), swk=at(0)), {"swk": BEFORE},
             IssuanceDenied(IssuanceDenyReason.NOT_SELF_SERVICE)),
    "unknown_profile_is_not_self_service":
        Case("admin", session(pwd=at(0), otp=at(1)), {"otp": BEFORE},
             IssuanceDenied(IssuanceDenyReason.NOT_SELF_SERVICE)),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_decide_issuance(case: Case) -> None:
    facts = IssuanceFacts(profile=case.profile, session=case.session, session_started=START,
                          enrolled_at=case.enrolled_at)
    assert decide_issuance(facts, POLICY) == case.want


def test_password_never_vouches_even_if_configured_elsewhere() -> None:
    # A password "enrolled" long ago is still just the password.
    facts = IssuanceFacts("user-auth", session(pwd=at(0)), START, {"pwd": BEFORE})
    assert decide_issuance(facts, POLICY) == NeedsApproval("user-auth")


def test_every_person_profile_of_the_shipped_policy_is_decided() -> None:
    assert set(POLICY.self_service.profiles) == {"user-auth", "user-sign", "user-encrypt"}
    assert POLICY.self_service.established_factors == frozenset({"otp", "swk", "hwk"})


def test_deny_reasons_have_message_keys() -> None:
    assert {r.message_key for r in IssuanceDenyReason} == {
        "issuance.not_self_service", "issuance.verify_first", "issuance.no_established_factor"}


def test_inputs_and_decisions_are_frozen() -> None:
    facts = IssuanceFacts("user-auth", session(pwd=at(0)), START, {})
    with pytest.raises(AttributeError):
        facts.profile = "tls-server"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        decide_issuance(facts, POLICY).profile = "x"  # type: ignore[union-attr,misc]
