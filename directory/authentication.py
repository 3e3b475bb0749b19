"""Password login and password writes against the directory (python-ldap).

``authenticate`` binds as the person with the password policy request control
(draft-behera-ldap-password-policy-10 §6) and reads the response control, also
from a failed bind, where slapd reports a lockout or an expired password. It
never tells a caller who does not know the password whether a uid exists.

Every password GovTrust writes is hashed here with ``directory.pwhash`` (Argon2id
behind ``{ARGON2}``), and a stored value in any other scheme (``{SSHA}`` from
before the switch, or Argon2i written by slapd itself) is replaced after the
next successful bind: see ``upgrade_hash`` for what that does to ppolicy state.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import ldap
from ldap.controls import RequestControl
from ldap.controls.ppolicy import PasswordPolicyControl

from directory import entries, pwhash
from directory.connections import DOWN, ConnectionPool, exc_controls, open_connection, refused
from directory.entries import Attrs
from directory.errors import (
    DirectoryError,
    DirectoryRefused,
    DirectoryUnavailable,
    NotFound,
    WrongPassword,
)
from directory.model import AuthOutcome, AuthResult, Person, PersonStatus
from directory.settings import DirectorySettings
from directory.validate import UID_RE

log = logging.getLogger(__name__)

# ppolicy response errors (draft-behera §6.2): passwordExpired, accountLocked, changeAfterReset.
_PP_EXPIRED, _PP_LOCKED, _PP_CHANGE_AFTER_RESET = 0, 1, 2
PP_ERRORS = {0: "passwordExpired", 1: "accountLocked", 2: "changeAfterReset",
             3: "passwordModNotAllowed", 4: "mustSupplyOldPassword",
             5: "insufficientPasswordQuality", 6: "passwordTooShort",
             7: "passwordTooYoung", 8: "passwordInHistory"}
# The Relax Rules control (draft-zeilenga-ldap-relax): lets the rootdn write back the
# NO-USER-MODIFICATION ppolicy attributes a re-hash would otherwise reset.
_RELAX = RequestControl("1.3.6.1.4.1.4203.666.5.12", True)
# What a re-hash must leave as it was. pwdReset too: with pwdMustChange the rootdn's
# write of userPassword would otherwise set it (tested on Debian's slapd 2.5).
_KEPT = ("pwdChangedTime", "pwdHistory", "pwdReset")
# What tells one password apart from the next (see ``password_state``).
_STATE = ("userPassword", "pwdChangedTime", "pwdReset")


class PersonDirectory(Protocol):
    """What authentication needs from the gateway."""

    settings: DirectorySettings
    pool: ConnectionPool

    def person_dn(self, uid: str) -> str: ...

    def find_person_entry(self, uid: str, extra: Sequence[str] = ()
                          ) -> tuple[str, Attrs] | None: ...

    def to_person(self, dn: str, attrs: Attrs) -> Person: ...


def authenticate(d: PersonDirectory, uid: str, password: str) -> AuthOutcome:
    """Bind as the person and say what happened (never whether ``uid`` exists)."""
    if not password or not isinstance(uid, str) or not UID_RE.match(uid):
        # An empty password would be an unauthenticated bind (RFC 4513 §5.1.2),
        # which "succeeds" without checking anything: refuse it before any bind.
        return AuthOutcome(AuthResult.BAD_CREDENTIALS)
    try:
        found = d.find_person_entry(uid, ["userPassword"])
    except DirectoryUnavailable:
        return AuthOutcome(AuthResult.UNAVAILABLE)
    if found is None:
        # Bind anyway (slapd refuses a DN with no entry): an unknown uid then takes
        # as long as a wrong password, so timing does not tell who exists.
        try:
            d.pool.bind(d.person_dn(uid), password)
        except DirectoryUnavailable:
            return AuthOutcome(AuthResult.UNAVAILABLE)
        return AuthOutcome(AuthResult.BAD_CREDENTIALS)
    dn, attrs = found
    person = d.to_person(dn, attrs)
    try:
        ok, pp = d.pool.bind(dn, password)
    except DirectoryUnavailable:
        return AuthOutcome(AuthResult.UNAVAILABLE)
    error = getattr(pp, "error", None) if pp is not None else None
    grace = getattr(pp, "graceAuthNsRemaining", None) if pp is not None else None
    expires = getattr(pp, "timeBeforeExpiration", None) if pp is not None else None
    if not ok:
        if error == _PP_LOCKED:
            return _locked(person, attrs, password)
        if error == _PP_EXPIRED:
            return AuthOutcome(AuthResult.PASSWORD_EXPIRED)
        return AuthOutcome(AuthResult.BAD_CREDENTIALS)
    # The password is proven: store it in the current scheme if it is not already.
    stored = attrs.get("userPassword") or []
    if len(stored) == 1 and pwhash.needs_upgrade(stored[0]):
        upgrade_hash(d, dn, password)
    # Only now, with the password proven, may the caller learn the standing.
    if person.status is PersonStatus.SUSPENDED:
        return AuthOutcome(AuthResult.SUSPENDED, person)
    if person.status is PersonStatus.LEFT:
        return AuthOutcome(AuthResult.LEFT, person)
    if error == _PP_CHANGE_AFTER_RESET:
        # The bind is good for changing the password only (slapd restricts it).
        return AuthOutcome(AuthResult.MUST_CHANGE, None, grace, expires)
    if error == _PP_EXPIRED:
        return AuthOutcome(AuthResult.PASSWORD_EXPIRED, None, grace, expires)
    return AuthOutcome(AuthResult.OK, person, grace, expires)


def _locked(person: Person, attrs: Attrs, password: str) -> AuthOutcome:
    """A locked bind: a suspension/leave lock is reported as such only to a
    caller who knows the password (checked against the stored hash)."""
    locked_at = (attrs.get("pwdAccountLockedTime") or [""])[0]
    if locked_at == entries.ADMIN_LOCK and person.status is not PersonStatus.ACTIVE:
        # Every value is checked (no early exit), each in constant time.
        matches = [pwhash.verify_password(password, v) for v in attrs.get("userPassword", [])]
        if any(matches):
            result = (AuthResult.SUSPENDED if person.status is PersonStatus.SUSPENDED
                      else AuthResult.LEFT)
            return AuthOutcome(result, person)
        return AuthOutcome(AuthResult.BAD_CREDENTIALS)
    return AuthOutcome(AuthResult.LOCKED)


def upgrade_hash(d: PersonDirectory, dn: str, password: str) -> bool:
    """Replace ``dn``'s single stored password by ``pwhash.hash_password(password)``.

    Call it only with a password slapd has just accepted for ``dn``. As the rootdn,
    in one modify: delete the exact old value and add the new one (so a password
    changed in between makes the modify fail and nothing is overwritten), and, under
    the Relax Rules control, write back ``pwdChangedTime`` and ``pwdHistory`` as
    they were: the password did not change, so its age (expiry) and the history
    slots must not either; ``pwdReset`` is written back as it was too (with
    ``pwdMustChange`` ppolicy would set it on any rootdn write of the password).
    Failure and lockout attributes are not touched (the successful bind has
    already cleared the failures). A refusal is logged, never fails the login.
    True when replaced.
    """
    def op(c: ldap.ldapobject.LDAPObject) -> bool:
        found = c.search_ext_s(dn, ldap.SCOPE_BASE, "(objectClass=*)",
                               ["userPassword", *_KEPT], timeout=d.settings.timeout)
        attrs = found[0][1] if found else {}
        old = attrs.get("userPassword") or []
        if len(old) != 1 or not pwhash.needs_upgrade(old[0].decode("utf-8", "replace")):
            return False
        mods: list[tuple[int, str, list[bytes] | None]] = [
            (ldap.MOD_DELETE, "userPassword", [old[0]]),
            (ldap.MOD_ADD, "userPassword", [pwhash.hash_password(password).encode()]),
        ]
        mods += [(ldap.MOD_REPLACE, name, attrs.get(name) or None) for name in _KEPT]
        c.modify_ext_s(dn, mods, serverctrls=[_RELAX])
        return True

    try:
        return d.pool.run(op)
    except (ldap.LDAPError, DirectoryError) as exc:
        log.warning("password hash of %s not upgraded: %s", dn, type(exc).__name__)
        return False


def set_password(d: PersonDirectory, dn: str, password: str, *, must_change: bool) -> None:
    """Set a password as the administrator: GovTrust hashes it (``pwhash``), so the
    stored value is Argon2id whatever slapd's module would write.

    ``must_change`` writes ppolicy's ``pwdReset`` in the same modify: TRUE makes
    slapd answer the owner's next bind with ``changeAfterReset`` (a reset by an
    administrator), absent leaves the password as the owner's own (a first
    password at creation, a reset the owner proved herself for).
    """
    value = pwhash.hash_password(password).encode()

    def op(c: ldap.ldapobject.LDAPObject) -> None:
        c.modify_s(dn, [(ldap.MOD_REPLACE, "userPassword", [value]),
                        (ldap.MOD_REPLACE, "pwdReset", [b"TRUE"] if must_change else None)])

    try:
        d.pool.run(op)
    except ldap.NO_SUCH_OBJECT:
        raise NotFound("entry", dn) from None
    except ldap.LDAPError as exc:
        raise refused("password", dn, exc) from None


def in_history(d: PersonDirectory, dn: str, password: str) -> bool:
    """Whether ``password`` is the current one or among ppolicy's ``pwdHistory``.

    For a write slapd does not check itself (the rootdn's, after the person proved
    herself another way): each history value is ``time#syntax#length#hash``
    (draft-behera §5.3.1), its hash checked with ``pwhash.verify_password``.
    """
    attrs = d.pool.run(lambda c: c.search_ext_s(
        dn, ldap.SCOPE_BASE, "(objectClass=*)", ["userPassword", "pwdHistory"],
        timeout=d.settings.timeout))
    found = attrs[0][1] if attrs else {}
    values = [v.decode("utf-8", "replace") for v in found.get("userPassword", [])]
    values += [v.decode("utf-8", "replace").split("#", 3)[-1]
               for v in found.get("pwdHistory", [])]
    # Every value is checked (no early exit), each in constant time.
    return any([pwhash.verify_password(password, v) for v in values])


def password_state(d: PersonDirectory, dn: str) -> str | None:
    """A digest that changes whenever ``dn``'s password does (its hash, change time
    and reset flag), None for no such entry: a pending change bound to it is spent
    once the change is made."""
    def op(c: ldap.ldapobject.LDAPObject) -> list[Any]:
        return c.search_ext_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", list(_STATE),
                              timeout=d.settings.timeout)

    try:
        found = d.pool.run(op)
    except ldap.NO_SUCH_OBJECT:
        return None
    attrs = found[0][1] if found else {}
    h = hashlib.sha256()
    for name in _STATE:
        for value in sorted(attrs.get(name) or []):
            h.update(name.encode() + b"=" + value + b"\n")
    return h.hexdigest()


def _mark_reset(d: PersonDirectory, dn: str, on: bool) -> None:
    """Set or clear ``pwdReset`` as the rootdn (not a password write: no history)."""
    d.pool.run(lambda c: c.modify_s(
        dn, [(ldap.MOD_REPLACE, "pwdReset", [b"TRUE"] if on else None)]))


def _bind_error(exc: ldap.LDAPError) -> int | None:
    pp = next((x for x in exc_controls(exc)
               if x.controlType == PasswordPolicyControl.controlType), None)
    error: Any = getattr(pp, "error", None)
    return error if isinstance(error, int) else None


def change_own_password(d: PersonDirectory, dn: str, old: str, new: str) -> None:
    """The person changes their own password (RFC 3062) as themselves, so slapd's
    ppolicy applies in full (quality and history need the cleartext); its refusal
    comes back as ``DirectoryRefused`` with the ppolicy error name as ``code``, a
    wrong ``old`` as ``WrongPassword``.

    An expired password cannot bind at all (``passwordExpired`` with no grace
    logins left), and slapd reports that only for the right password. Then the
    rootdn sets ``pwdReset`` — a bind with ``changeAfterReset`` takes precedence
    over expiry in slapd's ppolicy and is good for the password change only — and
    the person's own change is made as above; ``pwdReset`` is cleared again if
    the change is refused.

    slapd hashes that value itself (with Argon2i, all Debian's module writes), so
    it is re-hashed to Argon2id at once, keeping the change's ppolicy state.
    """
    try:
        _change_as_self(d, dn, old, new)
    except _Expired:
        _mark_reset(d, dn, True)
        try:
            _change_as_self(d, dn, old, new)
        except BaseException:
            _mark_reset(d, dn, False)
            raise
    upgrade_hash(d, dn, new)


class _Expired(Exception):
    """The old password is right but expired."""


def _change_as_self(d: PersonDirectory, dn: str, old: str, new: str) -> None:
    uri_error: Exception | None = None
    for uri in d.settings.uris:
        c = open_connection(uri, d.settings.timeout)
        try:
            try:
                c.simple_bind_s(dn, old, serverctrls=[PasswordPolicyControl()])
            except ldap.INVALID_CREDENTIALS as exc:
                if _bind_error(exc) == _PP_EXPIRED:
                    raise _Expired() from None
                raise WrongPassword(dn) from None
            msgid = c.passwd(dn, old, new, serverctrls=[PasswordPolicyControl()])
            c.result3(msgid, timeout=d.settings.timeout)
            return
        except DOWN as exc:
            uri_error = exc
            continue
        except ldap.LDAPError as exc:
            error = _bind_error(exc)
            code = PP_ERRORS.get(error) if error is not None else None
            raise DirectoryRefused("password", dn, code or type(exc).__name__) from None
        finally:
            c.unbind_s()
    raise DirectoryUnavailable(d.settings.uris, type(uri_error).__name__)
