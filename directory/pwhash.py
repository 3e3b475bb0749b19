"""How GovTrust stores a password: ``{ARGON2}`` with Argon2id (RFC 9106), pure.

One scheme for every password GovTrust writes (people, service accounts, the
managed slapd's rootdn): ``hash_password``. The value is the PHC string that
argon2-cffi writes behind the ``{ARGON2}`` tag, exactly what Debian slapd's
``argon2`` module (slappw-argon2(5)) reads: ``{ARGON2}$argon2id$v=19$m=...,t=...,p=...$salt$hash``.

The cost follows OWASP's Password Storage Cheat Sheet for Argon2id (19 MiB,
2 passes, 1 lane): every login makes slapd verify one hash, so the cost is paid
on each bind and several binds run at once on a small machine.

Debian's slapd 2.5 module hashes only with Argon2i (it verifies all three
variants); a value slapd wrote itself (a person's own change through RFC 3062)
is therefore re-hashed to Argon2id at the next login, like an ``{SSHA}`` one:
``needs_upgrade`` says which values to replace.

``verify_password`` checks a stored value in Python (the lockout path needs it):
``{ARGON2}`` of any variant, and ``{SSHA}`` for values written before the
switch — for checking only, never written again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

SCHEME = "{ARGON2}"
# OWASP Password Storage Cheat Sheet, Argon2id minimum: m=19 MiB, t=2, p=1.
MEMORY_KIB = 19456
TIME_COST = 2
PARALLELISM = 1
# slapd's module takes the same cost for the hashes it writes itself (moduleload args).
SLAPD_MODULE_ARGS = f"m={MEMORY_KIB} t={TIME_COST} p={PARALLELISM}"

_HASHER = argon2.PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_KIB,
                                parallelism=PARALLELISM, hash_len=32, salt_len=16,
                                type=argon2.Type.ID)
_WANTED = f"{SCHEME}$argon2id$v=19$m={MEMORY_KIB},t={TIME_COST},p={PARALLELISM}$"
_SSHA = "{SSHA}"
_SHA1_LEN = 20


def hash_password(password: str) -> str:
    """The ``userPassword`` value for ``password``: ``{ARGON2}`` + an Argon2id PHC string."""
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    return SCHEME + _HASHER.hash(password)


def scheme(stored: str) -> str:
    """The ``{SCHEME}`` tag of a stored value, upper-cased ("" when there is none)."""
    if not stored.startswith("{"):
        return ""
    end = stored.find("}")
    return stored[:end + 1].upper() if end > 0 else ""


def needs_upgrade(stored: str) -> bool:
    """Whether ``stored`` is anything but ``hash_password``'s current scheme and cost."""
    return not stored.startswith(_WANTED)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (``{ARGON2}`` or legacy ``{SSHA}``).

    Argon2 compares in constant time inside libargon2; SSHA with
    ``hmac.compare_digest``. An unknown scheme or a malformed value is False.
    """
    tag = scheme(stored)
    if tag == SCHEME:
        try:
            # The variant (i, d, id) and cost are read from the PHC string itself.
            return bool(_HASHER.verify(stored[len(SCHEME):], password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    if tag == _SSHA:
        return _check_ssha(password, stored[len(_SSHA):])
    return False


def _check_ssha(password: str, encoded: str) -> bool:
    """RFC 2307-style salted SHA-1: base64(SHA1(password ‖ salt) ‖ salt)."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        return False
    if len(raw) <= _SHA1_LEN:
        return False
    digest, salt = raw[:_SHA1_LEN], raw[_SHA1_LEN:]
    return hmac.compare_digest(hashlib.sha1(password.encode("utf-8") + salt).digest(), digest)
