"""Profile files load and validate; the DER helpers agree with asn1crypto."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from asn1crypto import core

from pki import der
from policies.profiles import (
    HARDWARE_KEY_POLICY,
    PROFILE_DIR,
    PROFILE_NAMES,
    KeyKind,
    ProfileError,
    load_profile,
    parse_profile,
    profiles,
)


def test_every_profile_loads() -> None:
    loaded = profiles()
    assert tuple(loaded) == PROFILE_NAMES
    assert loaded["user-encrypt"].key_usage_for(KeyKind.ED25519) == frozenset()
    assert loaded["ocsp-signing"].ocsp_nocheck
    for p in loaded.values():
        assert all(o.startswith("1.3.6.1.4.1.61000.2.1.") for o in p.policies)
        assert HARDWARE_KEY_POLICY not in p.policies


def _doc(**changes: object) -> dict[str, object]:
    data = yaml.safe_load((PROFILE_DIR / "user-auth.yaml").read_text(encoding="utf-8"))
    data.update(changes)
    return data  # type: ignore[no-any-return]


@pytest.mark.parametrize("changes", [
    {"keys": {"rsa_bits": [1024, 4096]}},
    {"keys": {"ec_curves": ["brainpoolP256r1"]}},
    {"key_usage": ["sign_everything"]},
    {"extended_key_usage": ["world_domination"]},
    {"policies": ["not-an-oid"]},
    {"subject": ["CN=nowhere"]},
    {"validity_days": 0},
    {"owner": "robot"},
    {"surprise": True},
    {"name": "other"},
], ids=lambda c: next(iter(c)))
def test_bad_profiles_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ProfileError):
        parse_profile("user-auth", _doc(**changes))


def test_missing_profile_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError):
        load_profile("user-auth", tmp_path)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 255, 256, 2**159 - 1, 2**159, -1, -129])
def test_integer_matches_asn1crypto(value: int) -> None:
    assert der.integer(value) == core.Integer(value).dump()


def test_time_switches_to_generalized_in_2050() -> None:
    assert der.time(datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC))[0] == 0x17
    assert der.time(datetime(2050, 1, 1, tzinfo=UTC))[0] == 0x18


def test_oid_and_long_lengths() -> None:
    assert der.oid("1.3.6.1.4.1.311.20.2.3") == core.ObjectIdentifier(
        "1.3.6.1.4.1.311.20.2.3").dump()
    big = b"x" * 70000
    assert der.octet_string(big) == core.OctetString(big).dump()
