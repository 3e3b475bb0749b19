"""Login assurance: protection levels, information classes, and the decisions.

GB/T 22239-2019 (等保 2.0) asks level 3 systems for "two or more combined
authentication techniques, at least one of them cryptographic"; this package is
where that is decided, once, for every department app and for the console's
self-service certificates. ``policies/assurance.yaml`` says which combinations of
RFC 8176 methods (``pwd``, ``otp``, ``swk``, ``hwk``) reach which level, each
level's OIDC ``acr`` value and maximum session age, what the information classes
(社会公开类 public, 部门共享类 shared, 依法专用类 restricted) add, and who may
obtain which certificate in the console.

One module per concern:

- ``terms``: the methods, levels and enums every other module shares;
- ``errors``: :class:`PolicyError` and its subclasses, each naming a key;
- ``facts``: the person, session and app facts, and :func:`counted_methods`
  (a factor enrolled in a session does not count in that session);
- ``model``: the loaded policy as frozen values; the level / ``acr`` / ``amr`` mapping;
- ``loading``: :func:`load_policy` - read and validate the YAML, once, when called;
- ``decision``: :func:`decide` for apps (:class:`Allow`, :class:`StepUp`, :class:`Deny`);
- ``issuance``: :func:`decide_issuance` for self-service certificates;
- ``levels``: levels from ``acr_values`` and from text a person typed (ASCII digits).

Pure: no I/O but reading its own YAML, and only when :func:`load_policy` is
called (never at import); the caller passes ``now``. Every name below is
importable from ``policies.assurance``.
"""

from __future__ import annotations

from policies.assurance.decision import Allow, Decision, Deny, StepUp, decide, department_matches
from policies.assurance.errors import (
    BadValue,
    LevelOutOfRange,
    MissingSetting,
    PolicyError,
    UnknownMethod,
)
from policies.assurance.facts import (
    AppFacts,
    PersonFacts,
    SessionFacts,
    counted_methods,
    enrolled_during,
)
from policies.assurance.issuance import (
    IssuanceDecision,
    IssuanceDenied,
    IssuanceFacts,
    IssueNow,
    NeedsApproval,
    decide_issuance,
    established_factors,
)
from policies.assurance.levels import (
    acr_for,
    amr_for,
    level_for,
    parse_ascii_int,
    parse_level,
    requested_level,
)
from policies.assurance.loading import (
    DEFAULT_FILE,
    PERSON_PROFILES,
    load_policy,
    load_policy_file,
    parse_policy,
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
    MFA,
    Contact,
    DenyReason,
    InfoClass,
    IssuanceDenyReason,
    Needs,
    WithoutEstablishedFactor,
)

__all__ = [
    "DEFAULT_FILE", "KNOWN_METHODS", "LEVELS", "MFA", "PERSON_PROFILES",
    "Allow", "AppFacts", "AssurancePolicy", "BadValue", "Contact", "Decision", "Deny",
    "DenyReason", "Explanation", "InfoClass", "InfoClassRule", "IssuanceDecision",
    "IssuanceDenied", "IssuanceDenyReason", "IssuanceFacts", "IssuanceRule", "IssueNow",
    "LevelOutOfRange", "LevelRule", "MethodInfo", "MissingSetting", "Needs", "NeedsApproval",
    "PersonFacts", "PolicyError", "SelfServiceRules", "SessionFacts", "StepUp",
    "UnknownMethod", "WithoutEstablishedFactor",
    "acr_for", "amr_for", "counted_methods", "decide", "decide_issuance",
    "department_matches", "enrolled_during", "established_factors", "level_for",
    "load_policy", "load_policy_file", "parse_ascii_int", "parse_level", "parse_policy",
    "requested_level",
]
