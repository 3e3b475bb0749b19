"""Changes seen everywhere at once: what a node must forget when another changes it.

Some state is cached in each process: clients (``idp.oidc.clients``, a few
seconds), IdP signing keys (``idp.oidc.keys``, half a minute) and the OCSP
responder's credentials (``pki.authority``, a minute). On PostgreSQL every change
to those tables raises a ``NOTIFY`` on :data:`CHANNEL` from a trigger, inside the
writing transaction (so it is delivered at commit, and never for a rollback),
whoever wrote it: a node, the CLI or a migration. A listener thread in each
process (``idp.runtime.pglisten``) turns each notification into a
:class:`Change` and the composition root drops the matching cache entry. On
SQLite there is one machine and the repositories drop their own entries, as
before.

Certificate status, CRLs, tokens and grants are read from the database on every
request, so their revocations need no invalidation; the triggers still announce
them (revocations only: an issuance is not announced, since NOTIFY takes a
database-wide lock at commit), for listeners that keep their own copies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

CHANNEL = "govtrust_change"

# The payload is "<topic>:<key>"; keys are client ids, kids, serials or roles.
_PAYLOAD = re.compile(r"([a-z_]{1,32}):([\x21-\x7e]{0,200})")


class Topic(StrEnum):
    CLIENT = "client"
    SIGNING_KEY = "signing_key"
    CA = "ca"
    CERTIFICATE = "certificate"
    TOKEN = "token"


@dataclass(frozen=True)
class Change:
    """One committed change: what kind of thing, and which one."""

    topic: Topic
    key: str

    @classmethod
    def parse(cls, payload: str) -> Change | None:
        """The change a notification announces; None for anything unknown (a
        newer node's topic is ignored rather than fatal)."""
        m = _PAYLOAD.fullmatch(payload)
        if m is None:
            return None
        try:
            return cls(Topic(m.group(1)), m.group(2))
        except ValueError:
            return None

    def payload(self) -> str:
        return f"{self.topic.value}:{self.key}"

