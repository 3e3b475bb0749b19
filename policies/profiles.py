"""Certificate profiles: what each kind of certificate may contain (policy as data).

Each ``policies/profiles/<name>.yaml`` names a profile's validity, the key
algorithms and sizes it accepts, its key usage (per key type where RSA and EC
differ), extended key usage, certificate policy OIDs, and where every subject
attribute and subjectAltName comes from. Subject and SAN values always come from
the directory (or the approved DNS list of an app), never from a request.

Certificate policy OIDs live under our arc ``1.3.6.1.4.1.61000.2``:
``.1.<n>`` one per profile (software-held keys) and :data:`HARDWARE_KEY_POLICY`
for keys attested to be held in hardware; the login policy's level 4 (DESIGN:
"a hardware-held key (certificate policy OID)") checks for that one.

Pure: reading its own YAML is the only I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PROFILE_DIR = Path(__file__).with_name("profiles")
PROFILE_NAMES = ("user-auth", "user-sign", "user-encrypt", "tls-server", "ocsp-signing")

CPS_ARC = "1.3.6.1.4.1.61000.2"
# Added to a certificate whose key is attested to be held in a hardware token.
HARDWARE_KEY_POLICY = "1.3.6.1.4.1.61000.2.2"

# RFC 5280 §4.2.1.12 and RFC 6960 §4.2.2.2 purposes we issue.
EKU_OIDS: Mapping[str, str] = {
    "server_auth": "1.3.6.1.5.5.7.3.1",
    "client_auth": "1.3.6.1.5.5.7.3.2",
    "code_signing": "1.3.6.1.5.5.7.3.3",
    "email_protection": "1.3.6.1.5.5.7.3.4",
    "ocsp_signing": "1.3.6.1.5.5.7.3.9",
}

# RFC 5280 §4.2.1.3 bits, named as pyca/cryptography's KeyUsage arguments.
KEY_USAGES = frozenset({
    "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
    "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
})

# "sm2": sm2p256v1 (GM/T 0003), issued only by the SM2 hierarchy.
CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1", "sm2"})


class ProfileError(ValueError):
    """A profile file is missing or malformed (raised at load, never later)."""

    def __init__(self, profile: str, reason: str) -> None:
        self.profile = profile
        self.reason = reason
        super().__init__(f"profile {profile!r}: {reason}")


class Owner(enum.StrEnum):
    PERSON = "person"  # subject from a person's directory entry
    APP = "app"  # a department application's TLS server
    CA = "ca"  # the CA's own infrastructure (OCSP responder)


class KeyKind(enum.StrEnum):
    RSA = "rsa"
    EC = "ec"
    ED25519 = "ed25519"


class SubjectSource(enum.StrEnum):
    COUNTRY = "country"
    ORGANIZATION = "organization"
    DEPARTMENT = "department"  # one OU per component of the department path
    DISPLAY_NAME = "display_name"
    FIRST_DNS_NAME = "first_dns_name"
    FIXED = "fixed"


class SanSource(enum.StrEnum):
    EMAIL = "email"  # rfc822Name from the directory entry
    UPN = "upn"  # otherName UPN uid@realm
    APPROVED_DNS = "approved_dns"  # dNSName/iPAddress from the app's approved list


@dataclass(frozen=True)
class SubjectAttribute:
    attribute: str  # "C", "O", "OU", "CN"
    source: SubjectSource
    value: str = ""  # for FIXED


@dataclass(frozen=True)
class KeyPolicy:
    ec_curves: frozenset[str]
    rsa_min_bits: int | None  # None: RSA not accepted
    rsa_max_bits: int | None
    ed25519: bool

    def allows_rsa(self, bits: int) -> bool:
        return (self.rsa_min_bits is not None and self.rsa_max_bits is not None
                and self.rsa_min_bits <= bits <= self.rsa_max_bits)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    owner: Owner
    validity_days: int
    keys: KeyPolicy
    key_usage: Mapping[KeyKind, frozenset[str]]
    extended_key_usage: tuple[str, ...]  # dotted OIDs
    policies: tuple[str, ...]
    subject: tuple[SubjectAttribute, ...]
    subject_alt_name: tuple[SanSource, ...]
    ocsp_nocheck: bool = False
    pkcs12: bool = False

    def key_usage_for(self, kind: KeyKind) -> frozenset[str]:
        return self.key_usage.get(kind, frozenset())


_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


def _require(name: str, data: Mapping[str, Any], key: str, kind: type) -> Any:
    if key not in data:
        raise ProfileError(name, f"missing {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProfileError(name, f"{key!r} must be {kind.__name__}")
    return value


def _usages(name: str, raw: Any) -> frozenset[str]:
    if not isinstance(raw, list) or not raw:
        raise ProfileError(name, "key_usage must be a non-empty list")
    unknown = set(raw) - KEY_USAGES
    if unknown:
        raise ProfileError(name, f"unknown key usage {sorted(unknown)}")
    return frozenset(raw)


def parse_profile(name: str, data: Any) -> Profile:
    """Validate one profile document; raise :class:`ProfileError` naming the fault."""
    if not isinstance(data, Mapping):
        raise ProfileError(name, "must be a mapping")
    known = {"name", "description", "owner", "validity_days", "keys", "key_usage",
             "extended_key_usage", "policies", "subject", "subject_alt_name",
             "ocsp_nocheck", "pkcs12"}
    extra = set(data) - known
    if extra:
        raise ProfileError(name, f"unknown settings {sorted(extra)}")
    if _require(name, data, "name", str) != name:
        raise ProfileError(name, "name does not match the file name")
    try:
        owner = Owner(_require(name, data, "owner", str))
    except ValueError:
        raise ProfileError(name, "owner must be person, app or ca") from None
    validity = _require(name, data, "validity_days", int)
    if not 1 <= validity <= 3650:
        raise ProfileError(name, "validity_days must be 1..3650")

    keys = _require(name, data, "keys", Mapping)
    curves = frozenset(keys.get("ec_curves", []))
    if curves - CURVES:
        raise ProfileError(name, f"unknown curves {sorted(curves - CURVES)}")
    rsa_bits = keys.get("rsa_bits")
    rsa_min = rsa_max = None
    if rsa_bits is not None:
        if (not isinstance(rsa_bits, list) or len(rsa_bits) != 2
                or not all(isinstance(b, int) for b in rsa_bits)):
            raise ProfileError(name, "keys.rsa_bits must be [min, max]")
        rsa_min, rsa_max = int(rsa_bits[0]), int(rsa_bits[1])
        # NIST SP 800-131A: RSA below 2048 bits is disallowed.
        if rsa_min < 2048 or rsa_max < rsa_min:
            raise ProfileError(name, "keys.rsa_bits must be at least 2048 and min <= max")
    key_policy = KeyPolicy(curves, rsa_min, rsa_max, bool(keys.get("ed25519", False)))

    raw_ku = data.get("key_usage")
    if isinstance(raw_ku, Mapping):
        ku = {KeyKind(k): _usages(name, v) for k, v in raw_ku.items()}
    else:
        common = _usages(name, raw_ku)
        ku = {kind: common for kind in KeyKind}

    eku = []
    for item in _require(name, data, "extended_key_usage", list):
        if item not in EKU_OIDS:
            raise ProfileError(name, f"unknown extended key usage {item!r}")
        eku.append(EKU_OIDS[item])
    policies = tuple(str(p) for p in _require(name, data, "policies", list))
    for p in policies:
        if not _OID.match(p):
            raise ProfileError(name, f"not an OID: {p!r}")

    subject = []
    for item in _require(name, data, "subject", list):
        attr, _, source = str(item).partition("=")
        if attr not in ("C", "O", "OU", "CN"):
            raise ProfileError(name, f"unsupported subject attribute {attr!r}")
        src, _, fixed = source.partition(":")
        try:
            subject.append(SubjectAttribute(attr, SubjectSource(src), fixed))
        except ValueError:
            raise ProfileError(name, f"unknown subject source {source!r}") from None
    try:
        sans = tuple(SanSource(s) for s in _require(name, data, "subject_alt_name", list))
    except ValueError as exc:
        raise ProfileError(name, f"unknown subjectAltName source: {exc}") from None
    if not any(a.attribute == "CN" for a in subject) and not sans:
        # RFC 5280 §4.1.2.6: an empty subject needs a critical SAN; we never do that.
        raise ProfileError(name, "needs a CN or a subjectAltName")
    return Profile(
        name=name,
        description=str(data.get("description", "")),
        owner=owner,
        validity_days=validity,
        keys=key_policy,
        key_usage=ku,
        extended_key_usage=tuple(eku),
        policies=policies,
        subject=tuple(subject),
        subject_alt_name=sans,
        ocsp_nocheck=bool(data.get("ocsp_nocheck", False)),
        pkcs12=bool(data.get("pkcs12", False)),
    )


def load_profile(name: str, folder: Path = PROFILE_DIR) -> Profile:
    path = folder / f"{name}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(name, f"no profile file {path}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(name, f"not valid YAML: {exc}") from None
    return parse_profile(name, data)


@cache
def profiles(folder: Path = PROFILE_DIR) -> Mapping[str, Profile]:
    """Every profile, loaded and validated once."""
    return {name: load_profile(name, folder) for name in PROFILE_NAMES}
