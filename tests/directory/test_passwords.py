"""The password policy file and the complexity check (pure)."""

from __future__ import annotations

import pytest

from policies.passwords import (
    PasswordPolicy,
    PasswordPolicyError,
    Weakness,
    load_policy,
    parse_policy,
)

POLICY = PasswordPolicy()


def test_shipped_policy_loads_with_the_agreed_values() -> None:
    p = load_policy()
    assert (p.min_length, p.min_classes, p.history, p.max_failures, p.lockout_seconds) == (
        12, 3, 5, 5, 900)


@pytest.mark.parametrize(("candidate", "expected"), [
    pytest.param("Tr0ub4dor&3x!", [], id="good"),
    pytest.param("长城Abc123456!", [], id="good-chinese"),
    pytest.param("Ab1!", [Weakness.TOO_SHORT], id="too-short"),
    pytest.param("abcdefghijklmn", [Weakness.TOO_FEW_CLASSES], id="one-class"),
    pytest.param("abcdefgh12345", [Weakness.TOO_FEW_CLASSES], id="two-classes"),
    pytest.param("Abcdefgh1234\x00", [Weakness.CONTROL_CHARACTER], id="nul"),
    pytest.param("A1!" + "x" * 200, [Weakness.TOO_LONG], id="too-long"),
    pytest.param("Zhangwei-2024!", [Weakness.CONTAINS_UID], id="contains-uid"),
])
def test_check_password(candidate: str, expected: list[Weakness]) -> None:
    assert POLICY.check_password(candidate, uid="zhangwei") == expected


@pytest.mark.parametrize(("change", "key"), [
    pytest.param({"min_length": 0}, "min_length", id="zero-length"),
    pytest.param({"min_classes": 5}, "min_classes", id="five-classes"),
    pytest.param({"history": "5"}, "history", id="string"),
    pytest.param({"max_failures": True}, "max_failures", id="bool"),
    pytest.param({"surprise": 1}, "surprise", id="unknown-key"),
    pytest.param({"max_length": 8}, "max_length", id="max-below-min"),
])
def test_bad_policy_names_the_setting(change: dict[str, object], key: str) -> None:
    data: dict[str, object] = dict(vars(POLICY))
    data.update(change)
    with pytest.raises(PasswordPolicyError) as err:
        parse_policy(data)
    assert err.value.key == key


def test_missing_setting_is_named() -> None:
    data = dict(vars(POLICY))
    del data["history"]
    with pytest.raises(PasswordPolicyError) as err:
        parse_policy(data)
    assert err.value.key == "history"
