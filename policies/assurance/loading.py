"""Loading ``policies/assurance.yaml`` into a frozen :class:`AssurancePolicy`.

The file is read and validated once, when the composition root calls
:func:`load_policy`, and the value is passed to whoever decides; nothing here
runs at import. Every malformed value is a :class:`PolicyError` naming its key
(``levels.3.min_methods``), and GB/T 22239-2019's floors are checked so an edit
cannot quietly weaken level 3 or 4.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import timedelta
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from policies.assurance.errors import (
    BadValue,
    LevelOutOfRange,
    MissingSetting,
    PolicyError,
    UnknownMethod,
)
from policies.assurance.model import (
    AssurancePolicy,
    Explanation,
    InfoClassRule,
    IssuanceRule,
    LevelRule,
    MethodInfo,
    SelfServiceRules,
)
from policies.assurance.terms import (
    KNOWN_METHODS,
    LEVELS,
    PASSWORD,
    Contact,
    DenyReason,
    InfoClass,
    Needs,
    WithoutEstablishedFactor,
)

# policies/assurance.yaml, beside this package.
DEFAULT_FILE = Path(__file__).resolve().parent.parent / "assurance.yaml"
# The certificate profiles a person may hold (policies/profiles/*.yaml with owner:
# person); tls-server and ocsp-signing belong to apps and the CA, never to self-service.
PERSON_PROFILES = ("user-auth", "user-sign", "user-encrypt")

_TOP = ("methods", "step_up_preference", "levels", "info_classes", "deny_reasons",
        "self_service_certificates")
_SELF_SERVICE_KEYS = ("established_factors", "profiles")
_ISSUANCE_KEYS = ("without_established_factor",)
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


def _level_key(raw: Any) -> int:
    """A key of ``levels``: YAML gives 3 as an int; "3" (quoted) is accepted too, but
    only in ASCII digits (``int("３")`` would be 3)."""
    if isinstance(raw, bool):
        raise LevelOutOfRange("levels", raw)
    if isinstance(raw, int):
        level = raw
    elif isinstance(raw, str) and len(raw) == 1 and raw in "0123456789":
        level = int(raw)
    else:
        raise LevelOutOfRange("levels", raw)
    if level not in LEVELS:
        raise LevelOutOfRange("levels", raw)
    return level


def _self_service(value: Any) -> SelfServiceRules:
    """``self_service_certificates``: which profiles the console issues to their own
    subject, and what stands in for an established factor when there is none."""
    top = _mapping(value, "self_service_certificates")
    for k in top:
        if k not in _SELF_SERVICE_KEYS:
            raise BadValue(f"self_service_certificates.{k}", "unknown setting")
    for k in _SELF_SERVICE_KEYS:
        if k not in top:
            raise MissingSetting(f"self_service_certificates.{k}")
    key = "self_service_certificates.established_factors"
    established = _methods(top["established_factors"], key)
    if not established:
        raise BadValue(key, "must name at least one method")
    if PASSWORD in established:
        # The password is what a thief has; it cannot vouch for a new credential.
        raise BadValue(key, "the password cannot vouch for a new credential")
    profiles: dict[str, IssuanceRule] = {}
    for raw, body in _mapping(top["profiles"], "self_service_certificates.profiles").items():
        pkey = f"self_service_certificates.profiles.{raw}"
        if raw not in PERSON_PROFILES:
            raise BadValue(pkey, f"not a person's certificate profile (one of "
                                 f"{list(PERSON_PROFILES)})")
        entry = _mapping(body, pkey)
        for k in entry:
            if k not in _ISSUANCE_KEYS:
                raise BadValue(f"{pkey}.{k}", "unknown setting")
        if "without_established_factor" not in entry:
            raise MissingSetting(f"{pkey}.without_established_factor")
        try:
            without = WithoutEstablishedFactor(entry["without_established_factor"])
        except ValueError:
            raise BadValue(f"{pkey}.without_established_factor",
                           f"must be one of {[w.value for w in WithoutEstablishedFactor]}, "
                           f"got {entry['without_established_factor']!r}") from None
        profiles[raw] = IssuanceRule(raw, without)
    return SelfServiceRules(established, MappingProxyType(profiles))


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

    # Whom to ask is policy; the words are the web edge's (idp.web.catalog).
    explanations: dict[DenyReason, Explanation] = {}
    for raw, body in _mapping(top["deny_reasons"], "deny_reasons").items():
        try:
            reason = DenyReason(raw)
        except ValueError:
            raise BadValue(f"deny_reasons.{raw}", "unknown reason") from None
        entry = _mapping(body, f"deny_reasons.{raw}")
        for key in entry:
            if key != "contact":
                raise BadValue(f"deny_reasons.{raw}.{key}",
                               "unknown setting (the words are in the web catalog)")
        if "contact" not in entry:
            raise MissingSetting(f"deny_reasons.{raw}.contact")
        try:
            contact = Contact(str(entry["contact"]))
        except ValueError:
            raise BadValue(f"deny_reasons.{raw}.contact",
                           f"must be one of {[c.value for c in Contact]}") from None
        explanations[reason] = Explanation(reason, contact)
    for reason in DenyReason:
        if reason not in explanations:
            raise MissingSetting(f"deny_reasons.{reason.value}")

    # Read-only views: the policy is shared by every request of the process.
    return AssurancePolicy(methods=MappingProxyType(methods), preference=tuple(pref),
                           levels=MappingProxyType(dict(sorted(levels.items()))),
                           info_classes=MappingProxyType(classes),
                           explanations=MappingProxyType(explanations),
                           self_service=_self_service(top["self_service_certificates"]))


def load_policy_file(path: Path) -> AssurancePolicy:
    """Read and validate one file (uncached: for tools and tests)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(str(path), "file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), f"not valid YAML: {exc}") from None
    return parse_policy(data)


def load_policy(path: Path | None = None) -> AssurancePolicy:
    """The policy at ``path`` (default: the shipped ``policies/assurance.yaml``), read
    and validated once per process per path; a frozen value to inject."""
    return _load_cached(path or DEFAULT_FILE)


@cache
def _load_cached(path: Path) -> AssurancePolicy:
    return load_policy_file(path)
