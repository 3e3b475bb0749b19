"""The assurance policy: every row of policies/assurance.yaml, decide(), malformed files."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.assurance import (
    DEFAULT_FILE,
    Allow,
    AppFacts,
    BadValue,
    Contact,
    Deny,
    DenyReason,
    InfoClass,
    LevelOutOfRange,
    MissingSetting,
    PersonFacts,
    PolicyError,
    SessionFacts,
    StepUp,
    UnknownMethod,
    acr_for,
    amr_for,
    decide,
    department_matches,
    level_for,
    load_policy,
    load_policy_file,
    parse_policy,
    requested_level,
)

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
RAW: dict[str, Any] = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
POLICY = load_policy()

ZHANG = PersonFacts("zhangwei", "active", ("市财政局", "预算处"), frozenset({"finance-staff"}))


def session(*methods: str, age: timedelta = timedelta(minutes=1)) -> SessionFacts:
    return SessionFacts.of(methods, NOW - age)


# -- levels: every row of `levels` --------------------------------------------------
@pytest.mark.parametrize(("methods", "level"), [
    ((), 0),
    (("pwd",), 2),
    (("otp",), 2),
    (("swk",), 2),
    (("hwk",), 2),
    (("pwd", "otp"), 2),  # two factors, no certificate: not level 3
    (("pwd", "swk"), 3),
    (("otp", "swk"), 3),
    (("pwd", "hwk"), 4),
    (("otp", "hwk"), 4),
    (("swk", "hwk"), 4),
    (("pwd", "otp", "swk"), 3),
    (("pwd", "mfa"), 2),  # mfa is derived, never counted
    (("pwd", "sms"), 2),  # unknown methods do not count
])
def test_level_for(methods: tuple[str, ...], level: int) -> None:
    assert level_for(methods) == level


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_every_level_row_is_loaded(level: int) -> None:
    row = RAW["levels"][level]
    rule = POLICY.rule(level)
    assert rule.acr == row["acr"] == f"urn:govtrust:loa:{level}"
    assert acr_for(level) == row["acr"]
    assert POLICY.level_for_acr(row["acr"]) == level
    assert rule.min_methods == row["min_methods"]
    assert rule.all_of == frozenset(row["all_of"]) and rule.any_of == frozenset(row["any_of"])
    assert rule.max_session_age == timedelta(minutes=row["max_session_minutes"])


def test_level_4_session_is_short() -> None:
    assert POLICY.rule(4).max_session_age <= timedelta(minutes=15)


@pytest.mark.parametrize(("methods", "amr"), [
    (("pwd",), ("pwd",)),
    (("swk", "pwd"), ("swk", "pwd", "mfa")),
    (("otp", "hwk", "pwd"), ("hwk", "pwd", "otp", "mfa")),
    ((), ()),
])
def test_amr(methods: tuple[str, ...], amr: tuple[str, ...]) -> None:
    assert amr_for(methods) == amr


def test_requested_level_from_acr_values() -> None:
    assert requested_level(["urn:other", "urn:govtrust:loa:3", "urn:govtrust:loa:1"]) == 3
    assert requested_level(["urn:other"]) is None


# -- decide: levels and step-up -----------------------------------------------------
@pytest.mark.parametrize(("methods", "app_level", "want"), [
    (("pwd",), 1, Allow(2, "urn:govtrust:loa:2", ("pwd",))),
    (("pwd",), 2, Allow(2, "urn:govtrust:loa:2", ("pwd",))),
    # a level-1 password session opening a level-3 app needs only a certificate
    (("pwd",), 3, ("swk",)),
    (("pwd", "otp"), 3, ("swk",)),
    (("swk",), 3, ("pwd",)),
    (("pwd", "swk"), 3, Allow(3, "urn:govtrust:loa:3", ("swk", "pwd", "mfa"))),
    (("pwd", "swk"), 4, ("hwk",)),
    (("pwd",), 4, ("hwk",)),
    (("hwk",), 4, ("pwd",)),
    ((), 3, ("swk", "pwd")),
    ((), 4, ("hwk", "pwd")),
    (("hwk", "otp"), 4, Allow(4, "urn:govtrust:loa:4", ("hwk", "otp", "mfa"))),
    (("hwk", "otp"), 1, Allow(4, "urn:govtrust:loa:4", ("hwk", "otp", "mfa"))),
])
def test_decide_levels(methods: tuple[str, ...], app_level: int,
                       want: Allow | tuple[str, ...]) -> None:
    got = decide(ZHANG, session(*methods), AppFacts("app", app_level), now=NOW)
    if isinstance(want, Allow):
        assert got == want
    else:
        assert isinstance(got, StepUp)
        assert got.required_level == app_level
        assert got.acr == f"urn:govtrust:loa:{app_level}"
        assert got.missing_methods == want
        assert got.oauth_error == "unmet_authentication_requirements"


def test_step_up_lists_every_smallest_alternative() -> None:
    got = decide(ZHANG, session("pwd"), AppFacts("app", 3), now=NOW)
    assert isinstance(got, StepUp) and got.alternatives == (("swk",), ("hwk",))


def test_step_up_keeps_the_session() -> None:
    before = session("pwd", age=timedelta(hours=2))
    after = before.with_method("swk", NOW)
    got = decide(ZHANG, after, AppFacts("app", 3), now=NOW)
    assert got == Allow(3, "urn:govtrust:loa:3", ("swk", "pwd", "mfa"))


@pytest.mark.parametrize(("level", "age", "allowed"), [
    (1, timedelta(minutes=719), True),
    (1, timedelta(minutes=721), False),
    (2, timedelta(minutes=479), True),
    (2, timedelta(minutes=481), False),
    (3, timedelta(minutes=479), True),
    (3, timedelta(minutes=481), False),
    (4, timedelta(minutes=14), True),
    (4, timedelta(minutes=16), False),
])
def test_max_session_age_per_level(level: int, age: timedelta, allowed: bool) -> None:
    got = decide(ZHANG, session("hwk", "otp", age=age), AppFacts("app", level), now=NOW)
    assert isinstance(got, Allow) is allowed
    if not allowed:
        assert isinstance(got, StepUp)


def test_level_4_after_15_minutes_asks_again_for_both() -> None:
    got = decide(ZHANG, session("hwk", "pwd", age=timedelta(minutes=20)), AppFacts("a", 4),
                 now=NOW)
    assert isinstance(got, StepUp) and got.missing_methods == ("hwk", "pwd")


def test_old_level_4_session_still_reports_level_3() -> None:
    got = decide(ZHANG, session("hwk", "pwd", age=timedelta(minutes=20)), AppFacts("a", 3),
                 now=NOW)
    assert got == Allow(3, "urn:govtrust:loa:3", ("hwk", "pwd", "mfa"))


@pytest.mark.parametrize(("requested", "outcome"), [
    (None, Allow), (2, Allow), (3, StepUp), (4, StepUp), (5, Deny),
])
def test_requested_level_raises_the_bar(requested: int | None, outcome: type) -> None:
    got = decide(ZHANG, session("pwd"), AppFacts("app", 1), requested, now=NOW)
    assert isinstance(got, outcome)
    if isinstance(got, Deny):
        assert got.reason is DenyReason.LEVEL_UNAVAILABLE


# -- decide: information classes (every row of `info_classes`) ------------------------
@pytest.mark.parametrize("klass", list(InfoClass))
def test_every_info_class_row_is_loaded(klass: InfoClass) -> None:
    row = RAW["info_classes"][klass.value]
    rule = POLICY.info_classes[klass]
    assert rule.min_level == row["min_level"] and rule.needs.value == row["needs"]


@pytest.mark.parametrize(("app", "person", "want"), [
    (AppFacts("pub", 1, InfoClass.PUBLIC), ZHANG, Allow),
    (AppFacts("sh", 1, InfoClass.SHARED, ("市财政局",)), ZHANG, Allow),
    (AppFacts("sh", 1, InfoClass.SHARED, ("/市财政局/预算处/",)), ZHANG, Allow),
    (AppFacts("sh", 1, InfoClass.SHARED, ("市财政局/国库处", "市教委")), ZHANG,
     DenyReason.DEPARTMENT_NOT_ALLOWED),
    (AppFacts("sh", 1, InfoClass.SHARED, ("市财政",)), ZHANG, DenyReason.DEPARTMENT_NOT_ALLOWED),
    (AppFacts("sh", 1, InfoClass.SHARED, ()), ZHANG, DenyReason.APP_MISCONFIGURED),
    (AppFacts("rs", 1, InfoClass.RESTRICTED, group="finance-staff"), ZHANG, StepUp),
    (AppFacts("rs", 3, InfoClass.RESTRICTED, group="audit-staff"), ZHANG,
     DenyReason.NOT_IN_GROUP),
    (AppFacts("rs", 3, InfoClass.RESTRICTED), ZHANG, DenyReason.APP_MISCONFIGURED),
    (AppFacts("pub", 1), PersonFacts("lisi", "suspended", ("市财政局",)), DenyReason.SUSPENDED),
    (AppFacts("pub", 1), PersonFacts("wangwu", "left", ("市财政局",)), DenyReason.LEFT),
    (AppFacts("bad", 7), ZHANG, DenyReason.APP_MISCONFIGURED),
])
def test_decide_info_classes(app: AppFacts, person: PersonFacts,
                             want: type | DenyReason) -> None:
    got = decide(person, session("pwd"), app, now=NOW)
    if isinstance(want, DenyReason):
        assert isinstance(got, Deny) and got.reason is want
        assert got.oauth_error == "access_denied"
    else:
        assert isinstance(got, want)


def test_restricted_member_with_certificate_is_let_in() -> None:
    app = AppFacts("rs", 1, InfoClass.RESTRICTED, group="finance-staff")
    got = decide(ZHANG, session("pwd", "swk"), app, now=NOW)
    assert isinstance(got, Allow) and got.level == 3


@pytest.mark.parametrize(("path", "allowed", "match"), [
    (("市财政局", "预算处"), "市财政局", True),
    (("市财政局", "预算处"), "市财政局/预算处", True),
    (("市财政局",), "市财政局/预算处", False),
    (("市财政局二",), "市财政局", False),
    (("市财政局",), "", False),
])
def test_department_prefix(path: tuple[str, ...], allowed: str, match: bool) -> None:
    assert department_matches(path, allowed) is match


# -- deny reasons: every row names a contact; the words are the web catalog's -----------
@pytest.mark.parametrize("reason", list(DenyReason))
def test_every_deny_reason_is_explained(reason: DenyReason) -> None:
    row = RAW["deny_reasons"][reason.value]
    exp = POLICY.explain(reason)
    assert exp.contact is Contact(row["contact"])
    assert reason.message_key == exp.message_key == f"deny.{reason.value}"
    assert exp.contact_key == f"contact.{row['contact']}"


@pytest.mark.parametrize("contact", list(Contact))
def test_every_contact_has_a_message_key(contact: Contact) -> None:
    assert contact.message_key == f"contact.{contact.value}"


def test_person_facts_from_a_directory_person() -> None:
    from directory.model import Person, PersonStatus

    p = Person(uid="lisi", dn="uid=lisi", entry_uuid="u", display_name="李四",
               department=("市教委",), status=PersonStatus.SUSPENDED, groups=("g",))
    assert PersonFacts.of(p) == PersonFacts("lisi", "suspended", ("市教委",), frozenset({"g"}))


# -- malformed policy files ---------------------------------------------------------
def mutate(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(RAW)
    change(data)
    return data


def _del(d: dict[Any, Any], key: Any) -> None:
    del d[key]


@pytest.mark.parametrize(("change", "error", "key"), [
    (lambda d: d["levels"][3]["any_of"].append("sms"), UnknownMethod, "levels.3.any_of"),
    (lambda d: d["methods"].update(sms={"certificate": False, "hardware": False}),
     UnknownMethod, "methods"),
    (lambda d: d["levels"].update({5: d["levels"][4]}), LevelOutOfRange, "levels"),
    (lambda d: d["levels"].update({0: d["levels"][1]}), LevelOutOfRange, "levels"),
    (lambda d: _del(d["levels"][2], "acr"), MissingSetting, "levels.2.acr"),
    (lambda d: d["levels"][2].update(acr=""), MissingSetting, "levels.2.acr"),
    (lambda d: d["levels"][2].update(acr="urn:govtrust:loa:1"), BadValue, "levels.2.acr"),
    (lambda d: _del(d["levels"], 4), MissingSetting, "levels.4"),
    (lambda d: d["levels"][3].update(min_methods=1), BadValue, "levels.3.min_methods"),
    (lambda d: d["levels"][3].update(any_of=["pwd", "otp"]), BadValue, "levels.3"),
    (lambda d: d["levels"][4].update(all_of=["swk"]), BadValue, "levels.4"),
    (lambda d: d["levels"][4].update(max_session_minutes=600), BadValue,
     "levels.4.max_session_minutes"),
    (lambda d: d["levels"][1].update(max_session_minutes="8h"), BadValue,
     "levels.1.max_session_minutes"),
    (lambda d: d["levels"][1].update(min_methods=True), BadValue, "levels.1.min_methods"),
    (lambda d: d["levels"][1].update(extra=1), BadValue, "levels.1.extra"),
    (lambda d: d["info_classes"]["restricted"].update(min_level=2), BadValue,
     "info_classes.restricted"),
    (lambda d: d["info_classes"]["shared"].update(min_level=9), LevelOutOfRange,
     "info_classes.shared.min_level"),
    (lambda d: d["info_classes"].update(secret={"min_level": 4, "needs": "group"}), BadValue,
     "info_classes.secret"),
    (lambda d: _del(d["info_classes"], "public"), MissingSetting, "info_classes.public"),
    (lambda d: _del(d["deny_reasons"], "left"), MissingSetting, "deny_reasons.left"),
    (lambda d: _del(d["deny_reasons"]["left"], "contact"), MissingSetting,
     "deny_reasons.left.contact"),
    # words belong to the web catalog, not to the policy
    (lambda d: d["deny_reasons"]["left"].update(en="You left."), BadValue,
     "deny_reasons.left.en"),
    (lambda d: d.update(contacts={"app_owner": {"en": "Ask."}}), BadValue, "contacts"),
    (lambda d: d["deny_reasons"]["left"].update(contact="nobody"), BadValue,
     "deny_reasons.left.contact"),
    (lambda d: d.update(step_up_preference=["swk", "swk", "pwd", "otp"]), BadValue,
     "step_up_preference"),
    (lambda d: d["methods"]["otp"].update(hardware=True), BadValue, "methods.otp"),
    (lambda d: d.update(surprise=True), BadValue, "surprise"),
    (lambda d: _del(d, "levels"), MissingSetting, "levels"),
    (lambda d: d["levels"].update({"３": d["levels"].pop(3)}), LevelOutOfRange, "levels"),
    (lambda d: d["levels"].update({True: d["levels"].pop(1)}), LevelOutOfRange, "levels"),
    # self_service_certificates
    (lambda d: _del(d, "self_service_certificates"), MissingSetting,
     "self_service_certificates"),
    (lambda d: d.update(self_service_certificates=["user-auth"]), BadValue,
     "self_service_certificates"),
    (lambda d: d["self_service_certificates"].update(anyone=True), BadValue,
     "self_service_certificates.anyone"),
    (lambda d: _del(d["self_service_certificates"], "established_factors"), MissingSetting,
     "self_service_certificates.established_factors"),
    (lambda d: _del(d["self_service_certificates"], "profiles"), MissingSetting,
     "self_service_certificates.profiles"),
    (lambda d: d["self_service_certificates"].update(established_factors=["otp", "pwd"]),
     BadValue, "self_service_certificates.established_factors"),
    (lambda d: d["self_service_certificates"].update(established_factors=["otp", "sms"]),
     UnknownMethod, "self_service_certificates.established_factors"),
    (lambda d: d["self_service_certificates"].update(established_factors=[]), BadValue,
     "self_service_certificates.established_factors"),
    (lambda d: d["self_service_certificates"].update(established_factors="otp"), BadValue,
     "self_service_certificates.established_factors"),
    (lambda d: d["self_service_certificates"]["profiles"].update(
        {"tls-server": {"without_established_factor": "deny"}}), BadValue,
     "self_service_certificates.profiles.tls-server"),
    (lambda d: d["self_service_certificates"]["profiles"]["user-auth"].update(
        without_established_factor="allow"), BadValue,
     "self_service_certificates.profiles.user-auth.without_established_factor"),
    (lambda d: d["self_service_certificates"]["profiles"]["user-auth"].update(
        without_established_factor=True), BadValue,
     "self_service_certificates.profiles.user-auth.without_established_factor"),
    (lambda d: _del(d["self_service_certificates"]["profiles"]["user-sign"],
                    "without_established_factor"), MissingSetting,
     "self_service_certificates.profiles.user-sign.without_established_factor"),
    (lambda d: d["self_service_certificates"]["profiles"]["user-sign"].update(note="x"),
     BadValue, "self_service_certificates.profiles.user-sign.note"),
    (lambda d: d["self_service_certificates"]["profiles"].update({"user-auth": "approval"}),
     BadValue, "self_service_certificates.profiles.user-auth"),
])
def test_malformed_policy(change: Any, error: type[PolicyError], key: str) -> None:
    with pytest.raises(error) as info:
        parse_policy(mutate(change))
    assert info.value.key == key


def test_not_a_mapping_and_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(BadValue):
        parse_policy(["levels"])
    bad = tmp_path / "a.yaml"
    bad.write_text("levels: [", encoding="utf-8")
    with pytest.raises(PolicyError):
        load_policy_file(bad)
    with pytest.raises(PolicyError):
        load_policy_file(tmp_path / "missing.yaml")


def test_the_shipped_file_loads_into_frozen_values() -> None:
    assert parse_policy(RAW) == POLICY
    with pytest.raises(AttributeError):
        POLICY.rule(3).acr = "x"  # type: ignore[misc]
    # the mappings inside are read-only too: the value is shared by every request
    with pytest.raises(TypeError):
        POLICY.levels[3] = POLICY.levels[1]  # type: ignore[index]
    with pytest.raises(TypeError):
        POLICY.self_service.profiles["tls-server"] = POLICY.self_service.profiles["user-auth"]  # type: ignore[index]
    with pytest.raises(TypeError):
        POLICY.explanations[DenyReason.LEFT] = POLICY.explain(DenyReason.SUSPENDED)  # type: ignore[index]


def test_load_policy_defaults_to_the_shipped_file_and_loads_once(tmp_path: Path) -> None:
    assert load_policy() is load_policy(None) is load_policy(DEFAULT_FILE) is POLICY
    copy_ = tmp_path / "assurance.yaml"
    copy_.write_text(DEFAULT_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    other = load_policy(copy_)
    assert other == POLICY and other is not POLICY and load_policy(copy_) is other


def test_quoted_ascii_level_key_is_accepted() -> None:
    data = mutate(lambda d: d["levels"].update({"3": d["levels"].pop(3)}))
    assert parse_policy(data).rule(3) == POLICY.rule(3)


def test_importing_the_package_reads_no_file() -> None:
    import subprocess
    import sys

    probe = ("import pathlib\n"
             "seen = []\n"
             "real = pathlib.Path.read_text\n"
             "def spy(self, *a, **k):\n"
             "    seen.append(str(self)); return real(self, *a, **k)\n"
             "pathlib.Path.read_text = spy\n"
             "import policies.assurance, policies.passwords, policies.profiles\n"
             "assert seen == [], seen\n")
    subprocess.run([sys.executable, "-c", probe], check=True)


# -- stored sessions: each method keeps its own time ----------------------------------------
def test_method_times_round_trip_through_a_session_row() -> None:
    facts = SessionFacts.of(("pwd",), NOW - timedelta(hours=7)).with_method("hwk", NOW)
    stored = facts.method_times_json()
    back = SessionFacts.from_stored(facts.amr, int(facts.auth_time.timestamp()), stored)
    assert back.methods == facts.methods and back.amr == ("pwd", "hwk")
    # level 4: the hardware key is fresh, the password is not - one more factor, now
    got = decide(ZHANG, back, AppFacts("a", 4), now=NOW)
    assert isinstance(got, StepUp) and got.missing_methods == ("pwd",)
    # without the times every method looks as young as auth_time
    legacy = SessionFacts.from_stored(("pwd", "hwk", "mfa"), int(NOW.timestamp()), None)
    assert isinstance(decide(ZHANG, legacy, AppFacts("a", 4), now=NOW), Allow)
    assert SessionFacts.from_stored(("pwd",), 0, "not json").methods.keys() == {"pwd"}
