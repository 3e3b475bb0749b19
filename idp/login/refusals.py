"""Why a certificate is refused: the reasons (words in ``idp.web.catalog``, keys
``refusal.<reason>``) and the one exception every certificate check raises."""

from __future__ import annotations

import enum

from idp.errors import IdPError


# -- refusals --------------------------------------------------------------------
class Refusal(enum.StrEnum):
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    UNKNOWN_CA = "unknown_ca"
    FORGED_CHAIN = "forged_chain"  # a known CA's name, not its signature
    NOT_A_CA = "not_a_ca"  # an issuer in the path may not issue certificates
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    IS_A_CA = "is_a_ca"
    NO_DIGITAL_SIGNATURE = "no_digital_signature"
    NO_CLIENT_AUTH = "no_client_auth"
    REVOKED = "revoked"
    ON_HOLD = "on_hold"
    NOT_ISSUED_HERE = "not_issued_here"  # our CA's signature, but not in our records
    REVOCATION_UNAVAILABLE = "revocation_unavailable"  # OCSP and CRL failed: closed
    NOT_A_PERSON = "not_a_person"  # our certificate, but issued to an app or the CA
    NO_MAPPING = "no_mapping"  # an external certificate the mapping rule finds nothing in
    OWNER_MISMATCH = "owner_mismatch"
    PERSON_SUSPENDED = "person_suspended"
    PERSON_LEFT = "person_left"
    UNTRUSTED_PROXY = "untrusted_proxy"
    # Signature login (``idp.login.signature``): the challenge and its signature.
    NONCE_UNKNOWN = "nonce_unknown"  # never issued, or issued to another browser
    NONCE_USED = "nonce_used"
    NONCE_EXPIRED = "nonce_expired"
    BAD_SIGNATURE = "bad_signature"  # not the leaf key's signature over this challenge
    MALFORMED_REQUEST = "malformed_request"  # a nonce or signature field we cannot read

    @property
    def message_key(self) -> str:
        """The words the login page shows are ``idp.web.catalog``'s, under this key."""
        return f"refusal.{self.value}"


class CertificateRefused(IdPError):
    """A client certificate that does not log anyone in; ``reason`` says why."""

    def __init__(self, reason: Refusal, detail: str = "", *, serial: str | None = None,
                 subject: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.serial = serial
        self.subject = subject
        super().__init__(f"client certificate refused ({reason.value})"
                         + (f": {detail}" if detail else ""))

    def audit_details(self) -> dict[str, str]:
        out = {"reason": self.reason.value}
        if self.serial:
            out["serial"] = self.serial
        if self.subject:
            out["subject"] = self.subject
        return out


