"""The loaded assurance policy as frozen values, and the level / acr / amr mapping.

:class:`AssurancePolicy` is what :func:`policies.assurance.load_policy` returns:
every rule of ``policies/assurance.yaml`` validated into immutable values (its
mappings are read-only views). Its methods answer the questions that need no
person or app: which level a set of RFC 8176 methods reaches, which OIDC ``acr``
names a level (OIDC Core 1.0 section 2), which ``amr`` a token carries, and which
methods a step-up should ask for.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from policies.assurance.errors import LevelOutOfRange
from policies.assurance.facts import SessionFacts
from policies.assurance.terms import (
    KNOWN_METHODS,
    MFA,
    Contact,
    DenyReason,
    InfoClass,
    Needs,
    WithoutEstablishedFactor,
)

_SKEW = timedelta(seconds=60)  # a method stamped slightly in the future still counts


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
    """Why access is refused and whom the person should ask; the web edge's catalog
    has the words under ``message_key`` and ``contact_key``."""

    reason: DenyReason
    contact: Contact

    @property
    def message_key(self) -> str:
        return self.reason.message_key

    @property
    def contact_key(self) -> str:
        return self.contact.message_key


@dataclass(frozen=True)
class IssuanceRule:
    """How the console may issue one certificate profile to its own subject."""

    profile: str
    without_established_factor: WithoutEstablishedFactor


@dataclass(frozen=True)
class SelfServiceRules:
    """``self_service_certificates`` in the YAML."""

    # Methods that vouch for the person when their factor predates the session.
    established_factors: frozenset[str]
    profiles: Mapping[str, IssuanceRule]


@dataclass(frozen=True)
class AssurancePolicy:
    methods: Mapping[str, MethodInfo]
    preference: tuple[str, ...]
    levels: Mapping[int, LevelRule]
    info_classes: Mapping[InfoClass, InfoClassRule]
    explanations: Mapping[DenyReason, Explanation]
    self_service: SelfServiceRules

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
