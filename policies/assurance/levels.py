"""Levels from what a caller holds: methods, ``acr`` values, a level typed by a person.

Thin functions over :class:`~policies.assurance.model.AssurancePolicy` for call
sites that have methods or ``acr`` strings in hand. Each takes the policy; left
out, the shipped one is loaded (once, on first use - never at import).
"""

from __future__ import annotations

from collections.abc import Iterable

from policies.assurance.loading import load_policy
from policies.assurance.model import AssurancePolicy
from policies.assurance.terms import LEVELS

_ASCII_DIGITS = frozenset("0123456789")


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


def parse_level(text: str) -> int | None:
    """A protection level typed by a person (``level=3`` in a query), or None.

    ASCII digits only: ``str.isdigit`` accepts ``²`` and ``int`` then fails, and
    ``int`` alone accepts ``３``, ``+3``, `` 3`` and ``3_0``.
    """
    if not 0 < len(text) <= 1 or not set(text) <= _ASCII_DIGITS:
        return None
    level = int(text)
    return level if level in LEVELS else None


def parse_ascii_int(text: str, *, maximum: int) -> int | None:
    """A non-negative decimal number from outside input (a query, a form, a claim),
    or None when it is not one or is above ``maximum``.

    Only ``0``-``9``: Unicode digits (``²``, ``３``, ``٣``), signs, spaces and
    underscores are refused, and the length is bounded before ``int`` runs so a
    megabyte of digits costs nothing.
    """
    if not text or len(text) > len(str(maximum)) or not set(text) <= _ASCII_DIGITS:
        return None
    value = int(text)
    return value if value <= maximum else None
