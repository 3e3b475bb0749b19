"""Distinguished names of GovTrust's entries, built only with ``ldap.dn`` helpers.

A value from outside (a uid, a department or group name) becomes one RDN value,
escaped as RFC 4514 §2.4 says, never part of a DN by string formatting.
"""

from __future__ import annotations

from collections.abc import Sequence

import ldap
import ldap.dn


def child_dn(parent: str, attr: str, value: str) -> str:
    """``attr=value,parent`` with ``value`` escaped as one RDN value (RFC 4514)."""
    return str(ldap.dn.dn2str([[(attr, value, ldap.AVA_STRING)]] + ldap.dn.str2dn(parent)))


def rdn_value(dn: str) -> str:
    return str(ldap.dn.str2dn(dn)[0][0][1])


def dn_path(dn: str, stop: str) -> tuple[str, ...]:
    """RDN values from just under ``stop`` down to ``dn`` (a department's path)."""
    parts = ldap.dn.str2dn(dn)
    depth = len(parts) - len(ldap.dn.str2dn(stop))
    return tuple(str(rdn[0][1]) for rdn in reversed(parts[:depth]))


def is_under(dn: str, parent: str) -> bool:
    a, b = ldap.dn.str2dn(dn.lower()), ldap.dn.str2dn(parent.lower())
    return len(a) > len(b) and a[len(a) - len(b):] == b


class DirectoryNames:
    """The DNs under one base DN: containers, people, departments, groups, services."""

    def __init__(self, base_dn: str) -> None:
        self.base_dn = base_dn
        self._containers: dict[str, str] = {}

    def container(self, name: str) -> str:
        # Cached: every lookup needs one, and building a DN costs more than the search.
        dn = self._containers.get(name)
        if dn is None:
            dn = self._containers[name] = child_dn(self.base_dn, "ou", name)
        return dn

    def person_dn(self, uid: str) -> str:
        return child_dn(self.container("people"), "uid", uid)

    def department_dn(self, path: Sequence[str]) -> str:
        dn = self.container("departments")
        for name in path:
            dn = child_dn(dn, "ou", name)
        return dn

    def group_dn(self, name: str) -> str:
        return child_dn(self.container("groups"), "cn", name)

    def service_dn(self, name: str) -> str:
        return child_dn(self.container("services"), "uid", name)
