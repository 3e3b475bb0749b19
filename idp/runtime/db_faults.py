"""Database faults a failover causes, answered as 503 instead of a 500.

When Patroni promotes the standby, a transaction in flight on the old primary is
cut (psycopg ``AdminShutdown``: SQLAlchemy ``OperationalError`` with
``connection_invalidated``), and for a few seconds new connections are refused or
land on a server that is still read-only (SQLSTATE 25006). Either way nothing
was committed by this request that it did not also record: the CA records a
certificate before returning it, in the same transaction, so a cut transaction
returns nothing and an acknowledged one is on the synchronous standby. The
request gets the app's one answer to a part that is down, ``503`` with
``Retry-After`` (``idp.web.kit.unavailable_answer``,
``pki.http.unavailable_answer``). There is no automatic retry here: an issuance
retried behind the client's back could issue twice when only the commit's
acknowledgement was lost. The pool's pre-ping finds the new primary through the
multi-host URL on the next checkout, without a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError, OperationalError

if TYPE_CHECKING:
    from flask import Flask, Response

# SQLSTATE 25006 read_only_sql_transaction: connected to a standby (or to a
# primary being demoted), e.g. just before target_session_attrs moves on.
READ_ONLY_SQLSTATE = "25006"
# SQLSTATE class 08 (connection exception) and 57P01-57P03 (admin/crash shutdown,
# cannot connect now): the server went away or is not there yet.
_TRANSIENT_PREFIXES = ("08", "57P")


def is_failover_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is a database error a failover explains (worth a retry later)."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return True
    state = getattr(exc.orig, "sqlstate", None)
    return isinstance(state, str) and (state == READ_ONLY_SQLSTATE
                                       or state.startswith(_TRANSIENT_PREFIXES))


def describe(exc: DBAPIError) -> str:
    """The server's or libpq's own words (first line), without the URL: what an
    operator needs ("password authentication failed for user ...", "Connection
    refused") and no secret."""
    text = str(exc.orig if exc.orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def register(app: Flask, answer: Callable[[], Response]) -> None:
    """Answer failover faults in ``app`` as ``answer()`` does (the app's own 503,
    with its Retry-After: the same answer as for a connection that is cut or
    refused); other database errors propagate."""

    def handle(exc: DBAPIError) -> Response:
        if not is_failover_fault(exc):
            raise exc
        app.logger.warning("database unavailable, answered 503: %s", describe(exc))
        return answer()

    app.register_error_handler(DBAPIError, handle)
