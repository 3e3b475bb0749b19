"""The facts an assurance decision reads: who the person is, what the session did,
what the app asks for; and which of the session's methods count.

Plain frozen values built by the web edge from a directory entry, an SSO session
row and a registered client. :func:`counted_methods` is the rule that a factor
enrolled in a session does not count as done in that session: enrolling an
authenticator proves only that whoever enrolled it knew the password, so
counting it would turn a stolen password into two factors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from policies.assurance.terms import KNOWN_METHODS, METHOD_ORDER, InfoClass


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
        return cls(methods=MappingProxyType({m: times.get(m, auth_time) for m in amr
                                             if m in KNOWN_METHODS}),
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
                # bool is an int to Python; a stored true is not a time.
                times = {str(m): datetime.fromtimestamp(int(t), UTC) for m, t in raw.items()
                         if m in KNOWN_METHODS and isinstance(t, int | float)
                         and not isinstance(t, bool)}
        return cls.of(amr, datetime.fromtimestamp(int(auth_time), UTC), times)

    def method_times_json(self) -> str:
        """``{"pwd": 1790000000, "swk": 1790000300}``: what a session row should keep."""
        return json.dumps({m: int(at.timestamp()) for m, at in sorted(self.methods.items())},
                          separators=(",", ":"))

    @property
    def amr(self) -> tuple[str, ...]:
        return tuple(m for m in METHOD_ORDER if m in self.methods)

    @classmethod
    def empty(cls, now: datetime) -> SessionFacts:
        return cls(methods=MappingProxyType({}), auth_time=now)

    def with_method(self, method: str, at: datetime) -> SessionFacts:
        """The session after ``method`` was done at ``at`` (step-up keeps the rest)."""
        if method not in KNOWN_METHODS:
            raise ValueError(f"unknown method {method!r}")
        return SessionFacts(methods=MappingProxyType({**self.methods, method: at}),
                            auth_time=at)


@dataclass(frozen=True)
class AppFacts:
    client_id: str
    level: int
    info_class: InfoClass = InfoClass.PUBLIC
    allowed_departments: tuple[str, ...] = ()  # "/"-separated paths
    group: str | None = None

    @classmethod
    def of(cls, client: Any) -> AppFacts:
        """From an ``idp.clients.Client``."""
        return cls(client_id=client.client_id, level=int(client.level),
                   info_class=InfoClass(str(client.info_class.value)),
                   allowed_departments=tuple(client.allowed_departments),
                   group=client.allowed_group)


# -- which methods count ---------------------------------------------------------------
def enrolled_during(session_started: datetime,
                    enrolled_at: Mapping[str, datetime]) -> frozenset[str]:
    """The factors enrolled since the session began (``enrolled_at``: factor -> when
    the person's current one was enrolled, e.g. an authenticator's activation time).

    ``session_started`` is when the session was created, not its ``auth_time``: a
    step-up moves ``auth_time`` forward, and an authenticator enrolled between the
    password and the step-up would then look older than the session.
    """
    return frozenset(m for m, at in enrolled_at.items() if at >= session_started)


def counted_methods(session: SessionFacts, enrolled_in_session: Iterable[str]) -> SessionFacts:
    """The session with only the methods that count: a factor enrolled in this session
    is not a factor established in it, whatever the session did with it afterwards.

    Enrolling needs only what the session already had (the password), so the first
    code from a just-enrolled authenticator proves nothing more than the password did.
    """
    fresh = frozenset(enrolled_in_session)
    return SessionFacts(methods=MappingProxyType({m: at for m, at in session.methods.items()
                                                  if m not in fresh}),
                        auth_time=session.auth_time)

