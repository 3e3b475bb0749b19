"""``directory.pwhash``: the one password scheme, and the legacy checks (pure)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from directory import pwhash

PASSWORD = "Bj-Gov-2024-Secure!"
# Written by Debian's slapd 2.5 argon2 module (slappasswd -o module-load=argon2), which
# hashes with Argon2i only: still checked, and due for an upgrade.
SLAPD_ARGON2I = ("{ARGON2}$argon2i$v=19$m=4096,t=3,p=1$VLsAZQdjTtE4ZVlMRQks6Q$"
                 "bfOHKbxG1GfcQ6UeKysdkd5gc4Go2/89SHSjxsZx6T8")  # password "test"


def ssha(password: str, salt: bytes = b"saltsalt") -> str:
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def test_hash_is_argon2id_in_the_format_slapd_reads() -> None:
    value = pwhash.hash_password(PASSWORD)
    assert re.fullmatch(r"\{ARGON2\}\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}"
                        r"\$[A-Za-z0-9+/]{43}", value)
    assert pwhash.verify_password(PASSWORD, value)
    assert not pwhash.needs_upgrade(value)


def test_hash_is_salted() -> None:
    assert pwhash.hash_password(PASSWORD) != pwhash.hash_password(PASSWORD)


def test_wrong_password_does_not_verify() -> None:
    assert not pwhash.verify_password("Bj-Gov-2024-Secure?", pwhash.hash_password(PASSWORD))


def test_chinese_password_round_trips() -> None:
    assert pwhash.verify_password("长城Abc123456!", pwhash.hash_password("长城Abc123456!"))


def test_slapd_argon2i_value_verifies_and_needs_upgrade() -> None:
    assert pwhash.verify_password("test", SLAPD_ARGON2I)
    assert not pwhash.verify_password("tesT", SLAPD_ARGON2I)
    assert pwhash.needs_upgrade(SLAPD_ARGON2I)


def test_legacy_ssha_verifies_and_needs_upgrade() -> None:
    stored = ssha(PASSWORD)
    assert pwhash.verify_password(PASSWORD, stored)
    assert not pwhash.verify_password("other", stored)
    assert pwhash.needs_upgrade(stored)


def test_ssha_scheme_tag_is_case_insensitive() -> None:
    assert pwhash.verify_password(PASSWORD, "{ssha}" + ssha(PASSWORD)[6:])


def test_weaker_argon2id_cost_needs_upgrade() -> None:
    import argon2

    weak = "{ARGON2}" + argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1,
                                              type=argon2.Type.ID).hash(PASSWORD)
    assert pwhash.verify_password(PASSWORD, weak) and pwhash.needs_upgrade(weak)


@pytest.mark.parametrize("stored", [
    pytest.param("", id="empty"),
    pytest.param(PASSWORD, id="cleartext"),
    pytest.param("{CLEARTEXT}" + PASSWORD, id="unknown-scheme"),
    pytest.param("{SSHA}not base64!", id="ssha-not-base64"),
    pytest.param("{SSHA}" + base64.b64encode(b"short").decode(), id="ssha-too-short"),
    pytest.param("{ARGON2}$argon2id$garbage", id="argon2-malformed"),
    pytest.param("{ARGON2", id="unterminated-tag"),
])
def test_unusable_stored_value_never_verifies(stored: str) -> None:
    assert not pwhash.verify_password(PASSWORD, stored)


def test_non_string_password_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        pwhash.hash_password(b"bytes")  # type: ignore[arg-type]
