"""Login assurance: protection levels, information classes, and the access decision.

GB/T 22239-2019 (等保 2.0) asks level 3 systems for "two or more combined
authentication techniques, at least one of them cryptographic"; this module is
where that is decided, once, for every department app. ``policies/assurance.yaml``
says which combinations of RFC 8176 methods (``pwd``, ``otp``, ``swk``,
``hwk``) reach which level, each level's OIDC ``acr`` value and maximum session
age, and what the information classes (社会公开类 public, 部门共享类 shared,
依法专用类 restricted) add. :func:`decide` turns (person, session, app) into a
value: :class:`Allow`, :class:`StepUp` (only the missing methods) or
:class:`Deny` (a reason the page can explain in zh-CN or en, and whom to ask).

Pure: no I/O but reading its own YAML; the caller passes ``now``.
"""

from __future__ import annotations

import enum
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_FILE = Path(__file__).with_name("assurance.yaml")
LEVELS = (1, 2, 3, 4)
LANGS = ("zh-CN", "en")
# RFC 8176 section 2: "mfa" says two or more factors were used; it is derived, never done.
MFA = "mfa"
KNOWN_METHODS = frozenset({"pwd", "otp", "swk", "hwk"})


# -- errors -----------------------------------------------------------------------
class PolicyError(ValueError):
    """The assurance policy file is missing or malformed (raised at load, never later)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"assurance policy {key}: {reason}")


class UnknownMethod(PolicyError):
    def __init__(self, key: str, method: object) -> None:
        self.method = method
        super().__init__(key, f"unknown method {method!r} (known: {sorted(KNOWN_METHODS)})")


class LevelOutOfRange(PolicyError):
    def __init__(self, key: str, level: object) -> None:
        self.level = level
        super().__init__(key, f"level {level!r} is not one of {list(LEVELS)}")


class MissingSetting(PolicyError):
    def __init__(self, key: str) -> None:
        super().__init__(key, "missing")


class BadValue(PolicyError):
    pass


# -- values ----------------------------------------------------------------------
class InfoClass(enum.StrEnum):
    PUBLIC = "public"  # 社会公开类
    SHARED = "shared"  # 部门共享类
    RESTRICTED = "restricted"  # 依法专用类


class Needs(enum.StrEnum):
    NONE = "none"
    DEPARTMENTS = "departments"
    GROUP = "group"


class Contact(enum.StrEnum):
    SECURITY_ADMIN = "security_admin"
    PERSONNEL_OFFICE = "personnel_office"
    APP_OWNER = "app_owner"
    GROUP_ADMIN = "group_admin"


class DenyReason(enum.StrEnum):
    SUSPENDED = "suspended"
    LEFT = "left"
    DEPARTMENT_NOT_ALLOWED = "department_not_allowed"
    NOT_IN_GROUP = "not_in_group"
    APP_MISCONFIGURED = "app_misconfigured"
    LEVEL_UNAVAILABLE = "level_unavailable"

    @property
    def message_key(self) -> str:
        """The key of the explanation, e.g. for ``idp.web.i18n`` (``deny.suspended``)."""
        return f"deny.{self.value}"


@dataclass(frozen=True)
class MethodInfo:
    name: str
    certificate: bool
    hardware: bool


@dataclass(frozen=True)
class LevelRule:
    level: int
    acr: str
    min_methods: int
    all_of: frozenset[str]
    any_of: frozenset[str]
    max_session_age: timedelta

    def satisfied_by(self, methods: Iterable[str]) -> bool:
        done = frozenset(methods) & KNOWN_METHODS
        return (len(done) >= self.min_methods and self.all_of <= done
                and (not self.any_of or bool(self.any_of & done)))


@dataclass(frozen=True)
class InfoClassRule:
    info_class: InfoClass
    min_level: int
    needs: Needs


@dataclass(frozen=True)
class Explanation:
    reason: DenyReason
    contact: Contact
    text: Mapping[str, str]  # language -> sentence
    contact_text: Mapping[str, str]

    def message(self, lang: str = "zh-CN") -> str:
        lang = lang if lang in LANGS else "zh-CN"
        return f"{self.text[lang]} {self.contact_text[lang]}"


@dataclass(frozen=True)
class AssurancePolicy:
    methods: Mapping[str, MethodInfo]
    preference: tuple[str, ...]
    levels: Mapping[int, LevelRule]
    info_classes: Mapping[InfoClass, InfoClassRule]
    explanations: Mapping[DenyReason, Explanation]

    # -- levels and acr -------------------------------------------------------
    def rule(self, level: int) -> LevelRule:
        if level not in self.levels:
            raise LevelOutOfRange("level", level)
        return self.levels[level]

    def acr(self, level: int) -> str:
        return self.rule(level).acr

    def level_for_acr(self, acr: str) -> int | None:
        for rule in self.levels.values():
            if rule.acr == acr:
                return rule.level
        return None

    def level_for(self, methods: Iterable[str]) -> int:
        """The highest level the methods reach, ignoring time (0 when none)."""
        done = frozenset(methods)
        return max((r.level for r in self.levels.values() if r.satisfied_by(done)), default=0)

    def fresh_methods(self, session: SessionFacts, level: int, now: datetime) -> frozenset[str]:
        """The session's methods still young enough to count toward ``level``."""
        oldest = now - self.rule(level).max_session_age
        return frozenset(m for m, at in session.methods.items()
                         if m in KNOWN_METHODS and at >= oldest and at <= now + _SKEW)

    def session_level(self, session: SessionFacts, now: datetime) -> int:
        """The highest level the session's methods reach now, each level with its own age."""
        return max((lvl for lvl in sorted(self.levels)
                    if self.levels[lvl].satisfied_by(self.fresh_methods(session, lvl, now))),
                   default=0)

    def missing_for(self, have: Iterable[str], level: int) -> tuple[tuple[str, ...], ...]:
        """Every smallest set of methods that, added to ``have``, reaches ``level``.

        Ordered by ``step_up_preference``, so the first is what the page asks for.
        """
        done = frozenset(have) & KNOWN_METHODS
        rule = self.rule(level)
        if rule.satisfied_by(done):
            return ((),)
        candidates = [m for m in self.preference if m not in done]
        for size in range(1, len(candidates) + 1):
            found = [combo for combo in itertools.combinations(candidates, size)
                     if rule.satisfied_by(done | frozenset(combo))]
            if found:
                # One certificate is asked for, not two, when one would do.
                rank = {m: i for i, m in enumerate(self.preference)}
                found.sort(key=lambda c: (sum(self.methods[m].certificate for m in c),
                                          [rank[m] for m in c]))
                return tuple(found)
        return ()

    def amr(self, methods: Iterable[str]) -> tuple[str, ...]:
        """RFC 8176 ``amr`` for the methods done: in preference order, ``mfa`` when 2+."""
        done = [m for m in self.preference if m in frozenset(methods)]
        return (*done, MFA) if len(done) >= 2 else tuple(done)

    def explain(self, reason: DenyReason) -> Explanation:
        return self.explanations[reason]


_SKEW = timedelta(seconds=60)  # a method stamped slightly in the future still counts


# -- the facts decide() reads ----------------------------------------------------------
@dataclass(frozen=True)
class PersonFacts:
    uid: str
    status: str  # directory.model.PersonStatus value: active | suspended | left
    department: tuple[str, ...]  # path from the top, e.g. ("市财政局", "预算处")
    groups: frozenset[str] = frozenset()

    @classmethod
    def of(cls, person: Any) -> PersonFacts:
        """From a ``directory.model.Person`` (duck-typed: policies imports nothing above)."""
        return cls(uid=person.uid, status=str(person.status.value),
                   department=tuple(person.department), groups=frozenset(person.groups))


@dataclass(frozen=True)
class SessionFacts:
    """What the SSO session has done: each method with the time it was last done."""

    methods: Mapping[str, datetime]
    auth_time: datetime

    @classmethod
    def of(cls, amr: Iterable[str], auth_time: datetime,
           method_times: Mapping[str, datetime] | None = None) -> SessionFacts:
        """From a stored ``amr`` list; ``mfa`` and unknown values are dropped."""
        times = dict(method_times or {})
        return cls(methods={m: times.get(m, auth_time) for m in amr if m in KNOWN_METHODS},
                   auth_time=auth_time)

    @classmethod
    def from_stored(cls, amr: Iterable[str], auth_time: int | float,
                    method_times: str | None) -> SessionFacts:
        """From an SSO session row: ``amr``, ``auth_time`` (epoch seconds) and the JSON
        made by :meth:`method_times_json` (absent: every method dated ``auth_time``,
        which over-states the freshness of earlier methods - store the times)."""
        times: dict[str, datetime] = {}
        if method_times:
            try:
                raw = json.loads(method_times)
            except ValueError:
                raw = {}
            if isinstance(raw, dict):
                times = {str(m): datetime.fromtimestamp(int(t), UTC) for m, t in raw.items()
                         if m in KNOWN_METHODS and isinstance(t, int | float)}
        return cls.of(amr, datetime.fromtimestamp(int(auth_time), UTC), times)

    def method_times_json(self) -> str:
        """``{"pwd": 1790000000, "swk": 1790000300}``: what a session row should keep."""
        return json.dumps({m: int(at.timestamp()) for m, at in sorted(self.methods.items())},
                          separators=(",", ":"))

    @property
    def amr(self) -> tuple[str, ...]:
        return tuple(m for m in ("pwd", "otp", "swk", "hwk") if m in self.methods)

    @classmethod
    def empty(cls, now: datetime) -> SessionFacts:
        return cls(methods={}, auth_time=now)

    def with_method(self, method: str, at: datetime) -> SessionFacts:
        """The session after ``method`` was done at ``at`` (step-up keeps the rest)."""
        if method not in KNOWN_METHODS:
            raise ValueError(f"unknown method {method!r}")
        return SessionFacts(methods={**self.methods, method: at}, auth_time=at)


@dataclass(frozen=True)
class AppFacts:
    client_id: str
    level: int
    info_class: InfoClass = InfoClass.PUBLIC
    allowed_departments: tuple[str, ...] = ()  # "/"-separated paths
    group: str | None = None

    @classmethod
    def of(cls, client: Any) -> AppFacts:
        """From an ``idp.oidc.clients.Client``."""
        return cls(client_id=client.client_id, level=int(client.level),
                   info_class=InfoClass(str(client.info_class.value)),
                   allowed_departments=tuple(client.allowed_departments),
                   group=client.allowed_group)


# -- decisions ---------------------------------------------------------------------
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

    ``requested_level`` comes from ``acr_values`` or an essential ``acr`` claim.
    Refusals that no login can fix come first; then the level.
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


# -- loading ---------------------------------------------------------------------
_TOP = ("methods", "step_up_preference", "levels", "info_classes", "deny_reasons", "contacts")
_LEVEL_KEYS = ("acr", "min_methods", "all_of", "any_of", "max_session_minutes")


def _mapping(value: Any, key: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise BadValue(key, "must be a mapping")
    return value


def _int(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue(key, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise BadValue(key, f"must be between {low} and {high}, got {value}")
    return value


def _methods(value: Any, key: str) -> frozenset[str]:
    if not isinstance(value, list):
        raise BadValue(key, "must be a list of methods")
    for m in value:
        if m not in KNOWN_METHODS:
            raise UnknownMethod(key, m)
    return frozenset(value)


def _texts(value: Any, key: str) -> dict[str, str]:
    entry = _mapping(value, key)
    out = {}
    for lang in LANGS:
        text = entry.get(lang)
        if not isinstance(text, str) or not text.strip():
            raise MissingSetting(f"{key}.{lang}")
        out[lang] = text.strip()
    return out


def _level_key(raw: Any) -> int:
    try:
        level = int(raw)
    except (TypeError, ValueError):
        raise LevelOutOfRange("levels", raw) from None
    if isinstance(raw, bool) or level not in LEVELS or str(raw) != str(level):
        raise LevelOutOfRange("levels", raw)
    return level


def parse_policy(data: Any) -> AssurancePolicy:
    """Validate the YAML's top level into an :class:`AssurancePolicy`."""
    top = _mapping(data, "<file>")
    for key in top:
        if key not in _TOP:
            raise BadValue(str(key), "unknown setting")
    for key in _TOP:
        if key not in top:
            raise MissingSetting(key)

    methods: dict[str, MethodInfo] = {}
    for name, flags in _mapping(top["methods"], "methods").items():
        if name not in KNOWN_METHODS:
            raise UnknownMethod("methods", name)
        f = _mapping(flags, f"methods.{name}")
        cert, hard = f.get("certificate"), f.get("hardware")
        if not isinstance(cert, bool) or not isinstance(hard, bool):
            raise BadValue(f"methods.{name}", "certificate and hardware must be true or false")
        if hard and not cert:
            raise BadValue(f"methods.{name}", "a hardware key is a certificate method")
        methods[name] = MethodInfo(name, cert, hard)
    if set(methods) != KNOWN_METHODS:
        raise MissingSetting(f"methods.{sorted(KNOWN_METHODS - set(methods))[0]}")

    pref = top["step_up_preference"]
    _methods(pref, "step_up_preference")
    if sorted(pref) != sorted(KNOWN_METHODS):
        raise BadValue("step_up_preference", "must list every method exactly once")

    levels: dict[int, LevelRule] = {}
    acrs: set[str] = set()
    for raw, body in _mapping(top["levels"], "levels").items():
        level = _level_key(raw)
        key = f"levels.{level}"
        entry = _mapping(body, key)
        for k in entry:
            if k not in _LEVEL_KEYS:
                raise BadValue(f"{key}.{k}", "unknown setting")
        for k in _LEVEL_KEYS:
            if k not in entry:
                raise MissingSetting(f"{key}.{k}")
        acr = entry["acr"]
        if not isinstance(acr, str) or not acr.strip():
            raise MissingSetting(f"{key}.acr")
        if acr in acrs:
            raise BadValue(f"{key}.acr", f"{acr!r} is used by another level")
        acrs.add(acr)
        rule = LevelRule(
            level=level, acr=acr,
            min_methods=_int(entry["min_methods"], f"{key}.min_methods", 1, len(KNOWN_METHODS)),
            all_of=_methods(entry["all_of"], f"{key}.all_of"),
            any_of=_methods(entry["any_of"], f"{key}.any_of"),
            max_session_age=timedelta(minutes=_int(entry["max_session_minutes"],
                                                   f"{key}.max_session_minutes", 1, 7 * 1440)))
        if not rule.satisfied_by(KNOWN_METHODS):
            raise BadValue(key, "no combination of methods can reach this level")
        levels[level] = rule
    for level in LEVELS:
        if level not in levels:
            raise MissingSetting(f"levels.{level}")
    # GB/T 22239-2019 floors, so an edit cannot quietly weaken level 3 or 4.
    certs = frozenset(m for m, i in methods.items() if i.certificate)
    hardware = frozenset(m for m, i in methods.items() if i.hardware)
    for level in (3, 4):
        rule = levels[level]
        if rule.min_methods < 2:
            raise BadValue(f"levels.{level}.min_methods", "level 3 and above need 2 or more")
        if not (rule.all_of & certs or (rule.any_of and rule.any_of <= certs)):
            raise BadValue(f"levels.{level}", "level 3 and above need a certificate method")
    if not (levels[4].all_of & hardware or (levels[4].any_of and levels[4].any_of <= hardware)):
        raise BadValue("levels.4", "level 4 needs a hardware-held key")
    for low, high in itertools.pairwise(LEVELS):
        if levels[high].max_session_age > levels[low].max_session_age:
            raise BadValue(f"levels.{high}.max_session_minutes",
                           f"is longer than level {low}'s")

    classes: dict[InfoClass, InfoClassRule] = {}
    for raw, body in _mapping(top["info_classes"], "info_classes").items():
        try:
            klass = InfoClass(raw)
        except ValueError:
            raise BadValue(f"info_classes.{raw}", "unknown information class") from None
        entry = _mapping(body, f"info_classes.{raw}")
        if "min_level" not in entry:
            raise MissingSetting(f"info_classes.{raw}.min_level")
        min_level = entry["min_level"]
        if isinstance(min_level, bool) or min_level not in LEVELS:
            raise LevelOutOfRange(f"info_classes.{raw}.min_level", min_level)
        try:
            needs = Needs(str(entry.get("needs")))
        except ValueError:
            raise BadValue(f"info_classes.{raw}.needs",
                           f"must be one of {[n.value for n in Needs]}") from None
        classes[klass] = InfoClassRule(klass, min_level, needs)
    for klass in InfoClass:
        if klass not in classes:
            raise MissingSetting(f"info_classes.{klass.value}")
    if classes[InfoClass.RESTRICTED].min_level < 3 or classes[InfoClass.RESTRICTED].needs \
            is not Needs.GROUP:
        raise BadValue("info_classes.restricted", "needs a group and level 3 or more")

    contacts: dict[Contact, dict[str, str]] = {}
    for raw, body in _mapping(top["contacts"], "contacts").items():
        try:
            contact = Contact(raw)
        except ValueError:
            raise BadValue(f"contacts.{raw}", "unknown contact") from None
        contacts[contact] = _texts(body, f"contacts.{raw}")
    explanations: dict[DenyReason, Explanation] = {}
    for raw, body in _mapping(top["deny_reasons"], "deny_reasons").items():
        try:
            reason = DenyReason(raw)
        except ValueError:
            raise BadValue(f"deny_reasons.{raw}", "unknown reason") from None
        entry = _mapping(body, f"deny_reasons.{raw}")
        try:
            contact = Contact(str(entry.get("contact")))
        except ValueError:
            raise BadValue(f"deny_reasons.{raw}.contact", "unknown contact") from None
        if contact not in contacts:
            raise MissingSetting(f"contacts.{contact.value}")
        explanations[reason] = Explanation(reason, contact, _texts(entry, f"deny_reasons.{raw}"),
                                           contacts[contact])
    for reason in DenyReason:
        if reason not in explanations:
            raise MissingSetting(f"deny_reasons.{reason.value}")

    return AssurancePolicy(methods=methods, preference=tuple(pref),
                           levels=dict(sorted(levels.items())), info_classes=classes,
                           explanations=explanations)


def load_policy_file(path: Path) -> AssurancePolicy:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(str(path), "file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), f"not valid YAML: {exc}") from None
    return parse_policy(data)


@cache
def load_policy(path: Path = DEFAULT_FILE) -> AssurancePolicy:
    """The shipped policy, loaded and validated once per process."""
    return load_policy_file(path)


def level_for(methods: Iterable[str], policy: AssurancePolicy | None = None) -> int:
    """The highest level ``methods`` reach (0 when none), time aside."""
    return (policy or load_policy()).level_for(methods)


def amr_for(methods: Iterable[str], policy: AssurancePolicy | None = None) -> tuple[str, ...]:
    return (policy or load_policy()).amr(methods)


def acr_for(level: int, policy: AssurancePolicy | None = None) -> str:
    return (policy or load_policy()).acr(level)


def requested_level(acr_values: Iterable[str], policy: AssurancePolicy | None = None
                    ) -> int | None:
    """The level an RP asks for with ``acr_values`` / an essential ``acr`` claim.

    OIDC Core 1.0 section 3.1.2.1 lists acr_values in order of preference; the
    first one we know wins (unknown values are ignored: voluntary unless essential).
    """
    pol = policy or load_policy()
    for acr in acr_values:
        level = pol.level_for_acr(acr)
        if level is not None:
            return level
    return None
