"""The PKI package's one exception tree. Subclasses carry data; never match on text.

The CLI maps a :class:`PKIError` to a message and a non-zero exit, the HTTP edge
to a 4xx status (or, for OCSP, to the RFC 6960 response status named here).
"""

from __future__ import annotations

import enum


class PKIError(Exception):
    """Base of every error the pki package raises."""


class KeyStoreError(PKIError):
    """A key could not be created, found, unlocked or used."""

    def __init__(self, label: str, reason: str) -> None:
        self.label = label
        self.reason = reason
        # "*": the key store itself (module, token, PIN), not one key in it.
        super().__init__(f"CA key store: {reason}" if label == "*" else
                         f"key {label!r}: {reason}")


class ProfileError(PKIError):
    """A certificate profile file is missing or malformed."""

    def __init__(self, profile: str, reason: str) -> None:
        self.profile = profile
        self.reason = reason
        super().__init__(f"profile {profile!r}: {reason}")


class UnknownProfile(ProfileError):
    def __init__(self, profile: str) -> None:
        super().__init__(profile, "no such certificate profile")


class BadRequest(PKIError):
    """A certificate request (CSR or its parameters) that is refused.

    ``reason`` is a short machine-readable code (``garbage``, ``too_large``,
    ``bad_signature``, ``weak_key``, ``ca_requested``, ``extension_not_granted``,
    ``dns_not_approved``, ...); ``detail`` says what exactly.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"certificate request refused ({reason}): {detail}")


class KmcRefusal(enum.StrEnum):
    """Why the key management centre (``pki.kmc``) refused: the audit record's
    ``reason`` and the key of the message the edges show."""

    SIGNING_KEY = "signing_key"  # signing keys are never escrowed nor recovered
    NOT_ESCROWED = "not_escrowed"  # no escrowed key for this certificate
    NOT_OWNER = "not_owner"  # not the person's own certificate
    LEVEL_TOO_LOW = "level_too_low"  # the session is below the required level
    NO_SESSION = "no_session"  # only a delivery to the owner's own certificate
    NOT_AGENT = "not_agent"  # not a member of the key recovery agents group
    NOT_ALLOWED_TO_REQUEST = "not_allowed_to_request"
    REQUESTER_APPROVAL = "requester_approval"  # the requester cannot approve
    ALREADY_APPROVED = "already_approved"  # one approval per agent
    NOT_PENDING = "not_pending"  # already approved, delivered or expired
    NOT_APPROVED = "not_approved"  # collected before enough approvals
    NOT_REQUESTER = "not_requester"  # delivered only to the requester
    EXPIRED = "expired"
    UNKNOWN_REQUEST = "unknown_request"
    UNKNOWN_CERTIFICATE = "unknown_certificate"
    BAD_RECIPIENT = "bad_recipient"  # the wrap-to certificate is not usable
    WEAK_PASSPHRASE = "weak_passphrase"
    NO_REASON = "no_reason"  # an organisational recovery must say why
    KEK_UNAVAILABLE = "kek_unavailable"
    SM2_ENVELOPE_ONLY = "sm2_envelope_only"  # SM2 keys: SM2EnvelopedKey, no PKCS#12


class KmcRefused(PKIError):
    """The KMC refused an escrow, recovery or export; nothing was exported.

    ``reason`` is a :class:`KmcRefusal`; ``serial`` the certificate concerned
    (empty when unknown); ``detail`` says what exactly, for logs and the CLI.
    """

    def __init__(self, reason: KmcRefusal, serial: str = "", detail: str = "") -> None:
        self.reason = reason
        self.serial = serial
        self.detail = detail
        super().__init__(f"key management refused ({reason.value})"
                         + (f" for {serial}" if serial else "") + (f": {detail}" if detail
                                                                   else ""))


class NotInitialized(PKIError):
    """The CA hierarchy has not been created (run ``govtrust init``)."""

    def __init__(self, role: str) -> None:
        self.role = role
        super().__init__(f"no {role} CA certificate: run govtrust init")


class UnknownSerial(PKIError):
    def __init__(self, serial: str) -> None:
        self.serial = serial
        super().__init__(f"no certificate with serial {serial}")


class InvalidSerial(PKIError):
    def __init__(self, serial: str) -> None:
        self.serial = serial
        super().__init__(f"not a serial number (lowercase hex without colons): {serial!r}")


class InvalidTransition(PKIError):
    """Revoking a revoked certificate, releasing one that is not on hold, ..."""

    def __init__(self, serial: str, status: str, wanted: str) -> None:
        self.serial = serial
        self.status = status
        self.wanted = wanted
        super().__init__(f"certificate {serial} is {status}: cannot {wanted}")


class AlreadyRevoked(InvalidTransition):
    def __init__(self, serial: str, status: str = "revoked") -> None:
        super().__init__(serial, status, "revoke")


class NotOnHold(InvalidTransition):
    def __init__(self, serial: str, status: str) -> None:
        super().__init__(serial, status, "release")


class InvalidReason(PKIError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"not a usable RFC 5280 revocation reason: {reason!r}")


class BadSetting(PKIError):
    """A ``[pki]`` setting has a value the CA cannot use."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"pki.{key}: {reason}")


class PublishError(PKIError):
    """Publishing a certificate or CRL to the directory failed."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"publishing to {target} failed: {reason}")


class OCSPRequestError(PKIError):
    """An OCSP request answered with a non-successful RFC 6960 §4.2.1 status."""

    def __init__(self, status: str, detail: str) -> None:
        self.status = status  # "malformed_request" or "unauthorized"
        self.detail = detail
        super().__init__(f"OCSP {status}: {detail}")


class RootKeyProblem(enum.StrEnum):
    """Why the root CA's key could not be used (``pki.offline``)."""

    OFFLINE = "offline"  # not in the home's key store, and no medium given
    MISSING = "missing"  # no key file where the medium should hold it
    WRONG_PASSPHRASE = "wrong_passphrase"  # the file does not decrypt
    OTHER_CA = "other_ca"  # the key is not the one the root certificate names
    SAME_PASSPHRASE = "same_passphrase"  # the root passphrase is the home's own
    MEDIUM_NOT_EMPTY = "medium_not_empty"  # init would overwrite or reuse a root key
    NO_MEDIUM = "no_medium"  # the medium folder does not exist
    ONLINE_ROOT = "online_root"  # init --offline-root on a home whose root key is in it


class RootKeyError(PKIError):
    """The root key (kept offline, on a medium) is missing, locked or not this CA's."""

    def __init__(self, problem: RootKeyProblem, detail: str) -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(f"root CA key ({problem.value}): {detail}")
