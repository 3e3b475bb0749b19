"""Strong login at the authorization endpoint: which assurance level a request asks
for, what the SSO session has done, and the certificate and one-time-code factors
that step a session up.

Framework-free: the web edge (``idp.web.login_views`` and ``idp.web.kit``) passes plain
values in and maps the results (``policies.assurance`` decisions, ``certauth``
refusals, ``totp`` outcomes) to pages and OAuth errors. The level an app needs
comes from GB/T 22239-2019 via ``policies/assurance.yaml``; ``acr_values`` and an
essential ``acr`` claim (OIDC Core 1.0 sections 3.1.2.1 and 5.5.1.1) can raise it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from directory.model import Person
from idp.errors import IdPError
from idp.login.certificate import ValidatedCertificate, check_person
from idp.login.forwarded import PresentedCertificate
from idp.login.refusals import CertificateRefused, Refusal
from pki.errors import PKIError
from pki.model import CertificateRecord, CertStatus
from policies.assurance import (
    AssurancePolicy,
    PersonFacts,
    SessionFacts,
    counted_methods,
    enrolled_during,
    load_policy,
    requested_level,
)

if TYPE_CHECKING:
    from directory.gateway import LdapGateway
    from idp.login.certificate import CertificateValidator
    from idp.login.sessions import SsoSession
    from idp.login.signature import NonceStore, SignatureRequest
    from idp.login.totp import TotpService

CERTIFICATE_METHODS = ("swk", "hwk")

# Directory attributes a certificate may name its owner by (``Owner.lookup``); the
# filters are fixed templates, values go through ``filter_format``.
_FILTERS = {
    "entryUUID": "(&(objectClass=inetOrgPerson)(entryUUID=%s))",
    "mail": "(&(objectClass=inetOrgPerson)(mail=%s))",
    "uid": "(&(objectClass=inetOrgPerson)(uid=%s))",
}


class UnknownEssentialAcr(IdPError):
    """An essential ``acr`` claim names no level we offer (OIDC Core 5.5.1.1)."""

    def __init__(self, values: tuple[str, ...]) -> None:
        self.values = values
        super().__init__("no requested acr value is supported: " + " ".join(values))


class PeopleFinder(Protocol):
    """Finds one person by a directory attribute (``entryUUID``, ``mail``, ``uid``)."""

    def find(self, attribute: str, value: str) -> Person | None: ...


class DirectoryPeople:
    """:class:`PeopleFinder` over the LDAP gateway: one search per lookup."""

    def __init__(self, gateway: LdapGateway) -> None:
        self._gateway = gateway

    def find(self, attribute: str, value: str) -> Person | None:
        from directory import entries

        template = _FILTERS.get(attribute)
        if template is None or not value:
            return None
        g = self._gateway
        found = g.search(g.container("people"), template, [value], scope="one",
                         attrs=entries.READ)
        return g.to_person(*found[0]) if len(found) == 1 else None


class CertificateRecords(Protocol):
    """The CA's inventory, read by serial (``pki.authority.CertificateAuthority``)."""

    def get(self, serial: str) -> CertificateRecord: ...


@dataclass(frozen=True)
class FactorTimes:
    """When the session's person got each factor beyond the password.

    ``enrolled``: every known enrolment time (the active authenticator's activation,
    the issuance of the certificate the session logged in with), to tell which
    factors were enrolled in the session. ``held``: the same, only for factors the
    person still holds (the certificate still valid and theirs): what
    ``policies.assurance.IssuanceFacts.enrolled_at`` wants.
    """

    enrolled: Mapping[str, datetime]
    held: Mapping[str, datetime]


@dataclass(frozen=True)
class _Who:
    uid: str
    entry_uuid: str


def requested(acr_values: str | None, claims: str | None) -> int | None:
    """The level an RP asks for: ``acr_values`` (voluntary, first known wins) or an
    essential ``acr`` claim in the ``claims`` parameter (unknown -> refused)."""
    level = requested_level((acr_values or "").split())
    if not claims:
        return level
    try:
        parsed = json.loads(claims)
    except (ValueError, RecursionError):
        return level  # the authorization endpoint refused it already (idp.oidc.params)
    # Every step checks its type: the endpoint validates the claims request, and
    # this reader never trusts that it did.
    id_token = parsed.get("id_token") if isinstance(parsed, dict) else None
    acr = id_token.get("acr") if isinstance(id_token, dict) else None
    if not isinstance(acr, dict):
        return level
    listed = acr.get("values")
    values = ([acr["value"]] if isinstance(acr.get("value"), str) else
              [v for v in listed if isinstance(v, str)] if isinstance(listed, list) else [])
    asked = requested_level(values)
    if acr.get("essential") is True and values and asked is None:
        raise UnknownEssentialAcr(tuple(values))
    return max(x for x in (level, asked, 0) if x is not None) or None


def person_facts(sess: SsoSession, person: Person | None, *,
                 looked_up: bool = True) -> PersonFacts:
    """From the directory's answer; an entry the directory no longer has is treated
    as departed. Without a directory to ask (``looked_up`` False: a unit test's
    stand-in authenticator) the login snapshot is used."""
    if person is not None:
        return PersonFacts.of(person)
    claims: Mapping[str, Any] = sess.claims
    dept = str(claims.get("department") or "")
    return PersonFacts(uid=sess.uid, status="left" if looked_up else "active",
                       department=tuple(p for p in dept.split("/") if p),
                       groups=frozenset(str(g) for g in claims.get("groups") or ()))


def now_utc() -> datetime:
    return datetime.now(UTC)


class StrongAuth:
    """The factors beyond a password, built lazily (a home without a CA still serves
    password logins): one-time codes, client certificates, and the directory."""

    def __init__(self, *, totp: Callable[[], TotpService],
                 certificates: Callable[[], CertificateValidator],
                 people: PeopleFinder | None, realm: str,
                 policy: AssurancePolicy | None = None,
                 records: Callable[[], CertificateRecords] | None = None,
                 nonces: Callable[[], NonceStore] | None = None) -> None:
        self._totp = totp
        self._nonces = nonces
        self._certificates = certificates
        self._records = records
        self.people = people
        self.realm = realm
        self.policy = policy or load_policy()

    @cached_property
    def totp(self) -> TotpService:
        return self._totp()

    @cached_property
    def certificates(self) -> CertificateValidator:
        return self._certificates()

    @cached_property
    def nonces(self) -> NonceStore:
        """The challenges of signature login (``idp.login.signature``)."""
        if self._nonces is None:
            raise RuntimeError("signature login is not configured")
        return self._nonces()

    @property
    def header(self) -> str:
        return self.certificates.settings.header

    def person(self, sess: SsoSession) -> Person | None:
        """The session's person as the directory has them now."""
        return None if self.people is None else self.people.find("entryUUID", sess.subject)

    def factor_times(self, sess: SsoSession, *, now: datetime) -> FactorTimes:
        """When the session's person enrolled the factors the session can show."""
        enrolled: dict[str, datetime] = {}
        held: dict[str, datetime] = {}
        status = self.totp.status(_Who(sess.uid, sess.subject))
        if status.active and status.activated_at is not None:
            enrolled["otp"] = held["otp"] = status.activated_at
        record = self._certificate_record(sess.cert_serial)
        if record is not None and record.owner_entry_uuid == sess.subject:
            method = "hwk" if record.hardware_key else "swk"
            # issued_at, not notBefore: a CA may backdate notBefore for clock skew.
            enrolled[method] = record.issued_at
            if record.status is CertStatus.VALID and record.not_after > now:
                held[method] = record.issued_at
        return FactorTimes(enrolled, held)

    def _certificate_record(self, serial: str | None) -> CertificateRecord | None:
        # A certificate from an external CA has no record here: its issuance is
        # nobody's self-service, so it counts, but it vouches for no new certificate.
        if not serial or self._records is None:
            return None
        try:
            return self._records().get(serial)
        except PKIError:
            return None

    def counted(self, sess: SsoSession, *, now: datetime) -> SessionFacts:
        """The session's methods that count: not those enrolled during the session
        (``policies.assurance.counted_methods``)."""
        fresh = enrolled_during(sess.started, self.factor_times(sess, now=now).enrolled)
        return counted_methods(sess.facts(), fresh)

    def certificate_login(self, presented: PresentedCertificate
                          ) -> tuple[Person, ValidatedCertificate]:
        """Validate the presented certificate and find its owner; raises
        :class:`CertificateRefused` with the reason."""
        if not presented.data:
            raise CertificateRefused(Refusal.MALFORMED, "no certificate presented")
        validated = self.certificates.validate(presented.data)
        return self.owner(validated), validated

    def signature_login(self, request: SignatureRequest, binding: str, issuer: str
                        ) -> tuple[Person, ValidatedCertificate]:
        """Consume the nonce (bound to the browser's ``binding``), check the leaf's
        signature over ``idp.login.signature.challenge(issuer, nonce)``, then the
        chain and its owner exactly as for a TLS client certificate; raises
        :class:`CertificateRefused` with the reason."""
        from idp.login.signature import challenge, check_signature

        self.nonces.consume(request.nonce, binding)
        check_signature(request.chain[0], request.signature, challenge(issuer, request.nonce))
        validated = self.certificates.validate_chain(request.chain)
        return self.owner(validated), validated

    def owner(self, validated: ValidatedCertificate) -> Person:
        """The person a validated certificate belongs to, still allowed to log in."""
        where = validated.owner.lookup(self.realm)
        person = None
        if where is not None and self.people is not None:
            person = self.people.find(*where)
        if person is None:
            raise CertificateRefused(Refusal.NO_MAPPING, validated.owner.value,
                                     serial=validated.serial, subject=validated.subject)
        check_person(validated, person)
        return person


def acr_values_supported(policy: AssurancePolicy | None = None) -> list[str]:
    """Discovery's ``acr_values_supported``, from the policy (levels 1-4)."""
    pol = policy or load_policy()
    return [pol.acr(level) for level in sorted(pol.levels)]
