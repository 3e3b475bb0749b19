"""The directory gateway: the one object through which GovTrust reaches LDAP.

It composes the pieces, each in its own module: pooled, failing-over
connections (``directory.connections``), DNs (``directory.names``), bulk writes
in RFC 5805 transactions (``directory.bulk``) and password login and writes
(``directory.authentication``); the entry reads and writes themselves are here.
Filters are built only with ``ldap.filter.filter_format`` and DNs only with
``ldap.dn`` helpers: user input never becomes LDAP syntax.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import ldap
import ldap.filter
import ldap.modlist
from ldap.ldapobject import LDAPObject

from directory import authentication, entries, names
from directory.bulk import BulkWriter, Op, encode, modlist
from directory.connections import ConnectionPool, refused
from directory.entries import Attrs, Change
from directory.errors import AlreadyExists, DirectoryRefused, NotFound
from directory.model import AuthOutcome, Person
from directory.names import DirectoryNames
from directory.settings import DirectorySettings
from directory.validate import UID_RE

__all__ = ["SCOPES", "UID_RE", "LdapGateway"]

SCOPES = {"base": ldap.SCOPE_BASE, "one": ldap.SCOPE_ONELEVEL, "sub": ldap.SCOPE_SUBTREE}


def _decode(attrs: Mapping[str, Sequence[bytes]]) -> Attrs:
    return {k: [v.decode("utf-8", "replace") for v in vs] for k, vs in attrs.items()}


class LdapGateway:
    """Pooled, failing-over access to the directory as GovTrust's bind DN."""

    def __init__(self, settings: DirectorySettings, *, pool_size: int = 4) -> None:
        self.pool = ConnectionPool(settings, pool_size=pool_size)
        self.settings = settings
        self.names = DirectoryNames(settings.base_dn)
        self._bulk = BulkWriter(settings.timeout)

    # -- names (see directory.names) -------------------------------------------
    child_dn = staticmethod(names.child_dn)
    rdn_value = staticmethod(names.rdn_value)
    dn_path = staticmethod(names.dn_path)
    is_under = staticmethod(names.is_under)

    def container(self, name: str) -> str:
        return self.names.container(name)

    def person_dn(self, uid: str) -> str:
        return self.names.person_dn(uid)

    def department_dn(self, path: Sequence[str]) -> str:
        return self.names.department_dn(path)

    def group_dn(self, name: str) -> str:
        return self.names.group_dn(name)

    def service_dn(self, name: str) -> str:
        return self.names.service_dn(name)

    # -- connections (see directory.connections) ---------------------------------
    @contextmanager
    def connection(self) -> Iterator[LDAPObject]:
        """A pooled admin connection for a batch of operations (no automatic retry)."""
        with self.pool.connection() as c:
            yield c

    def close(self) -> None:
        self.pool.close()

    def ping(self) -> None:
        """Raise DirectoryUnavailable unless some configured server answers."""
        self.pool.run(lambda c: c.whoami_s())

    # -- operations --------------------------------------------------------------
    def search(self, base: str, template: str, args: Sequence[str] = (), *,
               scope: str = "sub", attrs: Sequence[str] | None = None,
               timeout: float | None = None) -> list[tuple[str, Attrs]]:
        """Entries under ``base`` matching ``filter_format(template, args)``, within
        ``timeout`` seconds (default: six times ``[directory] timeout``, room for a
        listing of a large department; a lookup on a login path passes less)."""
        filterstr = ldap.filter.filter_format(template, list(args))
        limit = self.settings.timeout * 6 if timeout is None else timeout

        def op(c: LDAPObject) -> list[tuple[str, Attrs]]:
            try:
                found = c.search_ext_s(base, SCOPES[scope], filterstr,
                                       list(attrs) if attrs is not None else None,
                                       timeout=limit)
            except ldap.NO_SUCH_OBJECT:
                return []
            return [(dn, _decode(a)) for dn, a in found if dn is not None]

        return self.pool.run(op)

    def read(self, dn: str, attrs: Sequence[str] | None = None) -> Attrs | None:
        found = self.search(dn, "(objectClass=*)", scope="base", attrs=attrs)
        return found[0][1] if found else None

    def add(self, dn: str, attrs: Mapping[str, Sequence[str]]) -> None:
        def op(c: LDAPObject) -> None:
            c.add_s(dn, ldap.modlist.addModlist(encode(attrs)))

        self._guard("add", dn, lambda: self.pool.run(op))

    def modify(self, dn: str, changes: Sequence[Change]) -> None:
        mods = modlist(changes)

        def op(c: LDAPObject) -> None:
            c.modify_s(dn, mods)

        if mods:
            self._guard("modify", dn, lambda: self.pool.run(op))

    def delete(self, dn: str) -> None:
        def op(c: LDAPObject) -> None:
            c.delete_s(dn)

        self._guard("delete", dn, lambda: self.pool.run(op))

    @staticmethod
    def _guard(what: str, dn: str, call: Callable[[], None]) -> None:
        try:
            call()
        except ldap.ALREADY_EXISTS:
            raise AlreadyExists("entry", dn) from None
        except ldap.NO_SUCH_OBJECT:
            raise NotFound("entry", dn) from None
        except ldap.LDAPError as exc:
            raise refused(what, dn, exc) from None

    def apply_many(self, ops: Sequence[Op]) -> list[DirectoryRefused | None]:
        """Run many ``("add", dn, attrs)`` / ``("modify", dn, changes)`` on one
        connection, in transactions (see ``directory.bulk``); a result per op."""
        with self.pool.connection() as c:
            return self._bulk.apply(c, ops)

    # -- binary attribute values (certificates, CRLs; RFC 4523 ;binary) -----------------
    def add_binary(self, dn: str, attr: str, value: bytes) -> None:
        """Add one value; a value already there is fine (idempotent)."""
        def op(c: LDAPObject) -> None:
            try:
                c.modify_s(dn, [(ldap.MOD_ADD, attr, [value])])
            except ldap.TYPE_OR_VALUE_EXISTS:
                pass

        self._guard("modify", dn, lambda: self.pool.run(op))

    def delete_binary(self, dn: str, attr: str, value: bytes) -> None:
        """Remove one value; a value or entry already gone is fine."""
        def op(c: LDAPObject) -> None:
            try:
                c.modify_s(dn, [(ldap.MOD_DELETE, attr, [value])])
            except (ldap.NO_SUCH_ATTRIBUTE, ldap.NO_SUCH_OBJECT):
                pass

        self._guard("modify", dn, lambda: self.pool.run(op))

    def put_binary_entry(self, dn: str, object_class: str, rdn: tuple[str, str], attr: str,
                         value: bytes) -> None:
        """Replace ``attr`` on ``dn``, creating the entry when it does not exist."""
        def op(c: LDAPObject) -> None:
            try:
                c.modify_s(dn, [(ldap.MOD_REPLACE, attr, [value])])
            except ldap.NO_SUCH_OBJECT:
                c.add_s(dn, [("objectClass", [object_class.encode()]),
                             (rdn[0], [rdn[1].encode()]), (attr, [value])])

        self._guard("modify", dn, lambda: self.pool.run(op))

    def read_binary(self, dn: str, attr: str) -> list[bytes]:
        """Every value of ``attr`` (with or without ``;binary``) on ``dn``."""
        def op(c: LDAPObject) -> list[tuple[str, dict[str, list[bytes]]]]:
            try:
                return c.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", [attr])
            except ldap.NO_SUCH_OBJECT:
                return []

        base = attr.split(";")[0].lower()
        for _dn, attrs in self.pool.run(op):
            for name, values in attrs.items():
                if name.split(";")[0].lower() == base:
                    return [bytes(v) for v in values]
        return []

    # -- people ------------------------------------------------------------------
    def to_person(self, dn: str, attrs: Attrs) -> Person:
        groups_base = self.container("groups")
        groups = tuple(sorted(self.rdn_value(g) for g in attrs.get("memberOf", [])
                              if self.is_under(g, groups_base)))
        return entries.person_from_attributes(dn, attrs, groups)

    def find_person_entry(self, uid: str, extra: Sequence[str] = ()) -> tuple[str, Attrs] | None:
        # One indexed entry, on the login path: a directory slower than the
        # configured timeout fails the login then, not six timeouts later.
        found = self.search(self.container("people"),
                            "(&(objectClass=inetOrgPerson)(uid=%s))", [uid],
                            scope="one", attrs=[*entries.READ, *extra],
                            timeout=self.settings.timeout)
        return found[0] if found else None

    def find_person(self, uid: str) -> Person | None:
        found = self.find_person_entry(uid)
        return self.to_person(*found) if found else None

    # -- passwords (see directory.authentication) ----------------------------------
    def authenticate(self, uid: str, password: str) -> AuthOutcome:
        """Bind as the person and say what happened (never whether ``uid`` exists)."""
        return authentication.authenticate(self, uid, password)

    def set_password(self, dn: str, password: str, *, must_change: bool = False) -> None:
        """Set a password as the administrator, hashed with ``directory.pwhash``;
        ``must_change`` sets ppolicy's ``pwdReset`` (the owner must change it)."""
        authentication.set_password(self, dn, password, must_change=must_change)

    def in_history(self, dn: str, password: str) -> bool:
        """Whether ``password`` is the current one or in ppolicy's history."""
        return authentication.in_history(self, dn, password)

    def password_state(self, dn: str) -> str | None:
        """A digest that changes with every change of ``dn``'s password."""
        return authentication.password_state(self, dn)

    def change_own_password(self, dn: str, old: str, new: str) -> None:
        """The person changes their own password under ppolicy (RFC 3062)."""
        authentication.change_own_password(self, dn, old, new)
