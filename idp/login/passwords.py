"""Password changes a person makes: in the console, when a login demands one, and
after proving herself with a certificate (what Keycloak's "update password"
required action and LemonLDAP::NG's password module do). Framework-free.

The directory does the work and its password policy (slapd's ppolicy) decides:
quality, history and the change itself are checked there; this module turns its
refusals into one ``Refusal`` value the web edge puts into words, and keeps the
two rules of the flows:

- A login that ends in "expired" or "reset by an administrator" is not a session.
  It continues to the change page with a ``PendingChange``: a short-lived token,
  MAC'd with the cookie key, bound to the uid, the page to return to, and the
  directory's password state at the time. Once the password is changed the state
  differs, so the token is spent (no store, no database table).
- A reset without the old password needs a session at level 3 or more whose
  certificate method was done within ``RESET_FRESH_SECONDS``: a certificate alone
  must not mint a password, since certificate + password is itself level 3.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from directory.errors import DirectoryUnavailable, NotFound, WeakPassword, WrongPassword

PENDING_SECONDS = 600
RESET_FRESH_SECONDS = 600
RESET_MIN_LEVEL = 3
CERTIFICATE_METHODS = ("swk", "hwk")
MAX_PASSWORD = 1024
# ppolicy's refusals (draft-behera §6.2) the person can act on; the rest is WEAK.
_PPOLICY = {"passwordInHistory": "in_history", "passwordTooYoung": "too_young"}


class PasswordChanger(Protocol):
    """What the flows need from the directory (``directory.service.DirectoryService``)."""

    def change_password(self, uid: str, old: str, new: str) -> None: ...

    def reset_password(self, uid: str, new: str, *, proof: str) -> None: ...

    def password_state(self, uid: str) -> str | None: ...


class Refusal(enum.StrEnum):
    """Why a change was refused; the web edge's catalog says it in words."""

    MISSING = "missing"
    MISMATCH = "mismatch"
    WRONG_OLD = "wrong_old"
    WEAK = "weak"
    IN_HISTORY = "in_history"
    TOO_YOUNG = "too_young"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Refused:
    reason: Refusal
    rules: tuple[str, ...] = ()  # for WEAK: the policy rules broken (Weakness values)


def _pair(new: str, repeat: str) -> Refused | None:
    if not new or len(new) > MAX_PASSWORD:
        return Refused(Refusal.MISSING)
    if not hmac.compare_digest(new.encode(), repeat.encode()):
        return Refused(Refusal.MISMATCH)
    return None


def _weak(err: WeakPassword) -> Refused:
    for rule in err.reasons:
        if rule in _PPOLICY:
            return Refused(Refusal(_PPOLICY[rule]))
    return Refused(Refusal.WEAK, tuple(err.reasons))


def change(passwords: PasswordChanger, uid: str, old: str, new: str,
           repeat: str) -> Refused | None:
    """The person changes her password, proving the old one; None when done."""
    if not old or len(old) > MAX_PASSWORD:
        return Refused(Refusal.MISSING)
    if (bad := _pair(new, repeat)) is not None:
        return bad
    try:
        passwords.change_password(uid, old, new)
    except WrongPassword:
        return Refused(Refusal.WRONG_OLD)
    except NotFound:  # said like a wrong password: the page must not tell who exists
        return Refused(Refusal.WRONG_OLD)
    except WeakPassword as err:
        return _weak(err)
    except DirectoryUnavailable:
        return Refused(Refusal.UNAVAILABLE)
    return None


def reset(passwords: PasswordChanger, uid: str, new: str, repeat: str,
          proof: str) -> Refused | None:
    """The person sets a new password without the old one (``proof`` checked by
    ``may_reset`` first); None when done."""
    if (bad := _pair(new, repeat)) is not None:
        return bad
    try:
        passwords.reset_password(uid, new, proof=proof)
    except WeakPassword as err:
        return _weak(err)
    except (DirectoryUnavailable, NotFound):
        return Refused(Refusal.UNAVAILABLE)
    return None


def reset_proof(methods: dict[str, datetime], level: int, now: datetime) -> str | None:
    """The certificate method that allows a reset in this session, or None: the
    session is at ``RESET_MIN_LEVEL`` and a certificate was shown in the last
    ``RESET_FRESH_SECONDS`` (a session from yesterday's certificate will not do)."""
    if level < RESET_MIN_LEVEL:
        return None
    fresh = now - timedelta(seconds=RESET_FRESH_SECONDS)
    done = [m for m in CERTIFICATE_METHODS if m in methods and methods[m] >= fresh]
    return done[0] if done else None


# -- the pending change after a login ------------------------------------------------

@dataclass(frozen=True)
class PendingChange:
    uid: str
    return_to: str
    expires_at: int
    state: str  # ``PasswordChanger.password_state`` when the login asked for the change
    reason: str  # "expired" or "reset": what the page tells the person


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, b"password-change:" + body.encode(), hashlib.sha256).digest())


def issue_pending(key: bytes, uid: str, return_to: str, state: str, reason: str,
                  now: float) -> str:
    """The cookie value of a pending change (``body.mac``, URL-safe)."""
    body = _b64(json.dumps({"u": uid, "r": return_to, "e": int(now) + PENDING_SECONDS,
                            "s": state, "w": reason}, separators=(",", ":")).encode())
    return body + "." + _mac(key, body)


def read_pending(key: bytes, token: str | None, now: float) -> PendingChange | None:
    """The pending change a cookie holds, or None (absent, forged, or expired).
    The caller still compares ``state`` with the directory's: a spent token reads
    fine here but names a password that is no longer the current one."""
    if not token or len(token) > 2048 or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    if not hmac.compare_digest(_mac(key, body).encode(), mac.encode()):
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        pending = PendingChange(uid=str(raw["u"]), return_to=str(raw["r"]),
                                expires_at=int(raw["e"]), state=str(raw["s"]),
                                reason=str(raw["w"]))
    except (ValueError, KeyError, TypeError):
        return None
    return pending if pending.expires_at > now else None
