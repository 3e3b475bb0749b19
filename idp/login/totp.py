"""One-time codes: TOTP (RFC 6238, over HOTP RFC 4226) enrolment and verification.

The framework-free core behind the login flow's code step and ``govtrust otp``.
GB/T 22239-2019 (8.1.4.1) asks for two or more authentication techniques at
level 3; a TOTP authenticator is the second one a person without a certificate
at hand can add (``amr`` value ``otp``, RFC 8176).

- Enrolment: a random 160-bit secret (32 base32 characters), an ``otpauth://``
  URI with issuer ``GovTrust`` and the uid, and the QR code as SVG and as text.
  The secret stays *pending* until the first correct code activates it.
- Verification: 6 digits, 30-second steps, a window of one step either side
  (RFC 6238 section 5.2). A step once accepted is never accepted again for that
  person, nor any earlier one - decided by one conditional UPDATE, so two
  concurrent requests with the same code cannot both win.
- Letters or a wrong length are refused before any database work. Wrong codes
  are counted (``failures``) for the login flow's lockout, and audited; with
  ``max_failures`` set, that many in a row lock the authenticator for a while
  (the password policy's ``max_failures``/``lockout_seconds`` by default).
- Ten single-use recovery codes, kept as HMAC-SHA256 digests, shown once.
- Secrets are encrypted at rest with AES-256-GCM under a key derived (HKDF) from
  the home's ``otp-key`` secret, the person's entryUUID as associated data, so a
  ciphertext moved to another person's row does not decrypt.

Neither secrets nor codes are ever logged or audited.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import io
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import pyotp
import qrcode
import qrcode.image.svg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from idp.errors import IdPError

if TYPE_CHECKING:
    from idp.login.otp_store import Audit, CredentialRow

ISSUER = "GovTrust"
DIGITS = 6
STEP_SECONDS = 30
WINDOW = 1  # steps accepted either side of now (RFC 6238 section 5.2)
SECRET_BYTES = 20  # 160 bits, the RFC 4226 section 4 recommendation; 32 base32 chars
RECOVERY_CODES = 10
RECOVERY_LEN = 10  # base32 characters: 50 bits each, shown as xxxxx-xxxxx
_RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_BLOB_VERSION = b"\x01"


# -- errors and outcomes ----------------------------------------------------------
class OtpError(IdPError):
    """Base of the one-time code errors (enrolment state, bad stored data)."""


class NotEnrolled(OtpError, LookupError):
    def __init__(self, uid: str) -> None:
        self.uid = uid
        super().__init__(f"{uid} has no active one-time code authenticator")


class AlreadyEnrolled(OtpError):
    def __init__(self, uid: str) -> None:
        self.uid = uid
        super().__init__(f"{uid} already has an active authenticator (reset it first)")


class UndecryptableSecret(OtpError):
    """The stored secret does not decrypt: a changed otp-key or a moved row."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        super().__init__(f"the stored one-time code secret of {uid} does not decrypt")


class OtpResult(enum.StrEnum):
    OK = "ok"
    MALFORMED = "malformed"  # letters, wrong length: refused before any database work
    WRONG = "wrong"  # a guess: counted toward lockout
    REPLAYED = "replayed"  # a step (or recovery code) already used
    NOT_ENROLLED = "not_enrolled"
    LOCKED = "locked"  # too many failures in a row: not even checked until the lock ends

    @property
    def message_key(self) -> str:
        """The words the login page shows are ``idp.web.catalog``'s, under this key."""
        return f"otp.{self.value}"


@dataclass(frozen=True)
class OtpOutcome:
    result: OtpResult
    failures: int = 0  # consecutive wrong codes, for the login flow's lockout
    step: int | None = None  # the accepted time step
    recovery_codes_left: int | None = None  # after a recovery code was used

    @property
    def ok(self) -> bool:
        return self.result is OtpResult.OK

    # The session method a success adds (a recovery code stands in for the authenticator).
    method = "otp"


@dataclass(frozen=True)
class Enrolment:
    """What is shown once when enrolling. ``secret`` is never stored in clear."""

    uid: str
    secret: str
    uri: str
    svg: str
    text_qr: str


@dataclass(frozen=True)
class OtpStatus:
    enrolled: bool
    active: bool
    failures: int
    recovery_codes_left: int
    activated_at: datetime | None


class Identity(Protocol):
    """Who: ``directory.model.Person`` fits."""

    @property
    def uid(self) -> str: ...

    @property
    def entry_uuid(self) -> str: ...


class OtpStore(Protocol):
    """The storage edge (``idp.login.otp_store.SqlOtpStore``)."""

    def get(self, person_uuid: str) -> CredentialRow | None: ...

    def save_pending(self, person_uuid: str, uid: str, secret: bytes, at: datetime,
                     audit: Audit) -> bool: ...

    def activate(self, person_uuid: str, secret: bytes, step: int, at: datetime,
                 audit: Audit) -> bool: ...

    def accept_step(self, person_uuid: str, step: int, audit: Audit) -> bool: ...

    def count_failure(self, person_uuid: str, at: datetime, audit: Audit) -> int: ...

    def reset_failures(self, person_uuid: str) -> None: ...

    def delete(self, person_uuid: str, audit: Audit) -> bool: ...

    def replace_recovery_codes(self, person_uuid: str, hashes: Sequence[str], at: datetime,
                               audit: Audit) -> bool: ...

    def recovery_codes(self, person_uuid: str) -> list[tuple[int, str, bool]]: ...

    def use_recovery_code(self, person_uuid: str, code_id: int, at: datetime,
                          audit: Audit) -> bool: ...

    def recovery_codes_left(self, person_uuid: str) -> int: ...


# -- pure helpers -------------------------------------------------------------------
def well_formed_code(code: str) -> str | None:
    """The code if it is exactly six ASCII digits (spaces around or inside ignored)."""
    c = "".join(code.split()) if isinstance(code, str) else ""
    if len(c) != DIGITS or not all("0" <= ch <= "9" for ch in c):
        return None
    return c


def normalize_recovery_code(code: str) -> str | None:
    c = "".join(code.split()).replace("-", "").lower() if isinstance(code, str) else ""
    if len(c) != RECOVERY_LEN or any(ch not in _RECOVERY_ALPHABET for ch in c):
        return None
    return c


def provisioning_uri(secret: str, uid: str, issuer: str = ISSUER) -> str:
    """Key URI Format (Google Authenticator's otpauth://totp/ISSUER:uid?...)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=uid, issuer_name=issuer)


def qr_svg(data: str) -> str:
    img = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    svg = img.to_string(encoding="unicode")
    return svg if isinstance(svg, str) else svg.decode("utf-8")


def qr_text(data: str) -> str:
    qr = qrcode.QRCode(border=1)
    qr.add_data(data)
    qr.make(fit=True)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"govtrust/otp/" + purpose).derive(master)


class SecretBox:
    """AES-256-GCM for TOTP secrets; associated data = the person's entryUUID."""

    def __init__(self, otp_key: bytes) -> None:
        if len(otp_key) < 16:
            raise ValueError("the otp-key secret is too short")
        self._aead = AESGCM(_derive(otp_key, b"aes-gcm/v1"))
        self.recovery_key = _derive(otp_key, b"recovery-hmac/v1")

    def seal(self, secret: str, person_uuid: str) -> bytes:
        nonce = os.urandom(12)
        return _BLOB_VERSION + nonce + self._aead.encrypt(nonce, secret.encode("ascii"),
                                                          person_uuid.encode("utf-8"))

    def open(self, blob: bytes, person_uuid: str) -> str | None:
        if len(blob) < 1 + 12 + 16 or blob[:1] != _BLOB_VERSION:
            return None
        try:
            return self._aead.decrypt(blob[1:13], blob[13:],
                                      person_uuid.encode("utf-8")).decode("ascii")
        except (InvalidTag, UnicodeDecodeError):
            return None


# -- the service --------------------------------------------------------------------
class AuditAction(enum.StrEnum):
    ENROLL = "otp.enroll"
    ACTIVATE = "otp.activate"
    VERIFY = "otp.verify"
    FAILED = "otp.failed"
    REPLAYED = "otp.replayed"
    RECOVERY_ISSUED = "otp.recovery_issued"
    RECOVERY_USED = "otp.recovery_used"
    RECOVERY_FAILED = "otp.recovery_failed"
    RECOVERY_REPLAYED = "otp.recovery_replayed"
    RESET = "otp.reset"


class TotpService:
    """Enrol, verify, recover and reset one-time code authenticators."""

    def __init__(self, store: OtpStore, otp_key: bytes, *,
                 clock: Callable[[], float] = time.time, issuer: str = ISSUER,
                 max_failures: int = 0, lockout_seconds: int = 900) -> None:
        """``max_failures`` wrong codes in a row lock the authenticator for
        ``lockout_seconds`` (0: no lock here; the login flow decides alone)."""
        self._store = store
        self._box = SecretBox(otp_key)
        self._clock = clock
        self.issuer = issuer
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds

    # -- time -------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def current_step(self) -> int:
        return int(self._clock()) // STEP_SECONDS

    @staticmethod
    def _audit(actor: str, action: AuditAction, who: Identity,
               details: Mapping[str, str] | None = None) -> Audit:
        from idp.login.otp_store import Audit

        return Audit(actor, action.value, f"person:{who.uid}",
                     {"entry_uuid": who.entry_uuid, **(details or {})})

    # -- enrolment --------------------------------------------------------------
    def begin_enrolment(self, person: Identity, *, actor: str | None = None) -> Enrolment:
        """A fresh pending secret (replacing a pending one); refused if one is active."""
        secret = pyotp.random_base32(length=32)  # 160 bits
        sealed = self._box.seal(secret, person.entry_uuid)
        if not self._store.save_pending(person.entry_uuid, person.uid, sealed, self.now(),
                                        self._audit(actor or person.uid, AuditAction.ENROLL,
                                                    person)):
            raise AlreadyEnrolled(person.uid)
        uri = provisioning_uri(secret, person.uid, self.issuer)
        return Enrolment(person.uid, secret, uri, qr_svg(uri), qr_text(uri))

    def activate(self, person: Identity, code: str, *, actor: str | None = None) -> OtpOutcome:
        """Activate a pending secret with its first correct code."""
        clean = well_formed_code(code)
        if clean is None:
            return OtpOutcome(OtpResult.MALFORMED)
        row = self._store.get(person.entry_uuid)
        if row is None:
            return OtpOutcome(OtpResult.NOT_ENROLLED)
        if row.active:
            raise AlreadyEnrolled(person.uid)
        if self.locked(row):
            return OtpOutcome(OtpResult.LOCKED, failures=row.failures)
        step = self._match(row, person, clean)
        who = actor or person.uid
        if step is None:
            return self._failure(person, who)
        if not self._store.activate(person.entry_uuid, row.secret, step, self.now(),
                                    self._audit(who, AuditAction.ACTIVATE, person)):
            return OtpOutcome(OtpResult.REPLAYED)
        return OtpOutcome(OtpResult.OK, step=step)

    # -- verification -----------------------------------------------------------
    def verify(self, person: Identity, code: str, *, actor: str | None = None) -> OtpOutcome:
        """Check a code from the person's active authenticator (one use per step)."""
        clean = well_formed_code(code)
        if clean is None:  # before any database work
            return OtpOutcome(OtpResult.MALFORMED)
        row = self._store.get(person.entry_uuid)
        if row is None or not row.active:
            return OtpOutcome(OtpResult.NOT_ENROLLED)
        if self.locked(row):
            return OtpOutcome(OtpResult.LOCKED, failures=row.failures)
        step = self._match(row, person, clean)
        who = actor or person.uid
        if step is None:
            return self._failure(person, who)
        if self._store.accept_step(person.entry_uuid, step,
                                   self._audit(who, AuditAction.VERIFY, person,
                                               {"step": str(step)})):
            return OtpOutcome(OtpResult.OK, step=step)
        # Seen before: RFC 6238 section 5.2 "MUST NOT accept the second attempt".
        failures = self._store.count_failure(
            person.entry_uuid, self.now(),
            self._audit(who, AuditAction.REPLAYED, person, {"step": str(step)}))
        return OtpOutcome(OtpResult.REPLAYED, failures=failures)

    def locked(self, row: CredentialRow | None) -> bool:
        """True while ``max_failures`` wrong codes lock the authenticator."""
        if row is None or not self.max_failures or row.failures < self.max_failures:
            return False
        last = row.last_failure_at
        return last is None or (self.now() - last).total_seconds() < self.lockout_seconds

    def _match(self, row: CredentialRow, person: Identity, code: str) -> int | None:
        secret = self._box.open(row.secret, person.entry_uuid)
        if secret is None:
            raise UndecryptableSecret(person.uid)
        totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
        now = self.current_step()
        found = None
        for step in range(now - WINDOW, now + WINDOW + 1):
            # Compare every candidate, in constant time, whatever matched first.
            if hmac.compare_digest(totp.at(step * STEP_SECONDS).encode(), code.encode()):
                found = step if found is None else found
        return found

    def _failure(self, person: Identity, actor: str) -> OtpOutcome:
        failures = self._store.count_failure(person.entry_uuid, self.now(),
                                             self._audit(actor, AuditAction.FAILED, person))
        return OtpOutcome(OtpResult.WRONG, failures=failures)

    def failures(self, person: Identity) -> int:
        """Consecutive wrong codes (reset by a success), for the lockout decision."""
        row = self._store.get(person.entry_uuid)
        return row.failures if row else 0

    def reset_failures(self, person: Identity) -> None:
        """Called by the login flow once a lockout has been served or lifted."""
        self._store.reset_failures(person.entry_uuid)

    def status(self, person: Identity) -> OtpStatus:
        row = self._store.get(person.entry_uuid)
        if row is None:
            return OtpStatus(False, False, 0, 0, None)
        return OtpStatus(True, row.active, row.failures,
                         self._store.recovery_codes_left(person.entry_uuid), row.activated_at)

    # -- recovery codes ------------------------------------------------------------
    def _digest(self, normalized: str) -> str:
        return hmac.new(self._box.recovery_key, normalized.encode("ascii"),
                        hashlib.sha256).hexdigest()

    def new_recovery_codes(self, person: Identity, *, actor: str | None = None
                           ) -> tuple[str, ...]:
        """Ten fresh codes (the old ones stop working); shown once, stored as digests."""
        codes = tuple("".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(RECOVERY_LEN))
                      for _ in range(RECOVERY_CODES))
        if not self._store.replace_recovery_codes(
                person.entry_uuid, [self._digest(c) for c in codes], self.now(),
                self._audit(actor or person.uid, AuditAction.RECOVERY_ISSUED, person,
                            {"count": str(len(codes))})):
            raise NotEnrolled(person.uid)
        return tuple(f"{c[:5]}-{c[5:]}" for c in codes)

    def use_recovery_code(self, person: Identity, code: str, *, actor: str | None = None
                          ) -> OtpOutcome:
        """Accept one unused recovery code once; a second use is refused."""
        clean = normalize_recovery_code(code)
        if clean is None:
            return OtpOutcome(OtpResult.MALFORMED)
        if self.locked(self._store.get(person.entry_uuid)):
            return OtpOutcome(OtpResult.LOCKED, failures=self.failures(person))
        want = self._digest(clean)
        match: tuple[int, bool] | None = None
        for code_id, digest, used in self._store.recovery_codes(person.entry_uuid):
            if hmac.compare_digest(digest, want):
                match = (code_id, used)
        who = actor or person.uid
        if match is not None and not match[1] and self._store.use_recovery_code(
                person.entry_uuid, match[0], self.now(),
                self._audit(who, AuditAction.RECOVERY_USED, person)):
            return OtpOutcome(OtpResult.OK,
                              recovery_codes_left=self._store.recovery_codes_left(
                                  person.entry_uuid))
        if match is not None:
            # Used before (or by a concurrent request): a stolen code, most likely.
            failures = self._store.count_failure(
                person.entry_uuid, self.now(),
                self._audit(who, AuditAction.RECOVERY_REPLAYED, person))
            return OtpOutcome(OtpResult.REPLAYED, failures=failures)
        failures = self._store.count_failure(
            person.entry_uuid, self.now(),
            self._audit(who, AuditAction.RECOVERY_FAILED, person))
        return OtpOutcome(OtpResult.WRONG, failures=failures)

    # -- administration -----------------------------------------------------------------
    def reset(self, person: Identity, *, actor: str) -> bool:
        """Remove the authenticator and its recovery codes (administrator; audited)."""
        return self._store.delete(person.entry_uuid,
                                  self._audit(actor, AuditAction.RESET, person))
