"""Numbers from outside input are ASCII digits only (issue 9, hostile input 6).

``"²".isdigit()`` is True and ``int("²")`` raises; ``int("３")`` is 3. Each
refused spelling is a named case.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policies.assurance import SessionFacts, parse_ascii_int, parse_level


@pytest.mark.parametrize(("text", "level"), [
    ("1", 1), ("3", 3), ("4", 4),
])
def test_parse_level_accepts(text: str, level: int) -> None:
    assert parse_level(text) == level


REFUSED_LEVELS = {
    "superscript_two": "²",
    "fullwidth_three": "３",
    "arabic_indic_three": "٣",
    "plus_sign": "+3",
    "minus_sign": "-3",
    "leading_space": " 3",
    "trailing_newline": "3\n",
    "leading_zero": "03",
    "zero": "0",
    "five": "5",
    "underscore": "3_0",
    "empty": "",
    "word": "three",
    "long_digits": "3" * 10_000,
}


@pytest.mark.parametrize("text", list(REFUSED_LEVELS.values()), ids=list(REFUSED_LEVELS))
def test_parse_level_refuses(text: str) -> None:
    assert parse_level(text) is None


@pytest.mark.parametrize(("text", "value"), [
    ("0", 0), ("30", 30), ("86400", 86400), ("007", 7),
])
def test_parse_ascii_int_accepts(text: str, value: int) -> None:
    assert parse_ascii_int(text, maximum=86400) == value


REFUSED_NUMBERS = {
    "superscript_two": "²",
    "fullwidth_digits": "３０",
    "devanagari_digits": "३०",
    "plus_sign": "+30",
    "negative": "-1",
    "space": " 30",
    "underscore": "1_000",
    "above_maximum": "86401",
    "too_long_for_maximum": "000000030",
    "huge": "9" * 100_000,
    "empty": "",
    "float": "3.0",
    "hex": "0x1e",
}


@pytest.mark.parametrize("text", list(REFUSED_NUMBERS.values()), ids=list(REFUSED_NUMBERS))
def test_parse_ascii_int_refuses(text: str) -> None:
    assert parse_ascii_int(text, maximum=86400) is None


def test_stored_method_time_true_is_not_a_time() -> None:
    # bool is an int to Python: a stored true must not become 1970-01-01T00:00:01.
    now = datetime(2026, 11, 27, tzinfo=UTC)
    facts = SessionFacts.from_stored(("pwd",), int(now.timestamp()), '{"pwd": true}')
    assert facts.methods["pwd"] == now
