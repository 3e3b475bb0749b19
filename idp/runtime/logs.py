"""Logs: plain text by default, or one JSON object a line, each with a request id.

``[serve] log_format = "json"`` makes every record one line of
``{"time", "level", "logger", "message", "request_id"}`` (and ``exception`` when
there is one), for a log shipper. The request id is the ``X-Request-ID`` header
nginx passes through (accepted only when short and made of safe characters, so
a client cannot forge log lines or grow them), else a fresh one; the response
echoes it, so a user's report, nginx's access log and ours meet on one value.

``[serve] access_log = true`` adds one line per request on the ``govtrust.access``
logger (in JSON, its fields under ``"http"``), written by the WSGI layer
(``idp.runtime.edge``) with the same request id: the path without its query
string, which may carry a token hint or a code.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, TextIO

REQUEST_ID_HEADER = "X-Request-ID"
ACCESS_LOGGER = "govtrust.access"
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_request_id: ContextVar[str | None] = ContextVar("govtrust_request_id", default=None)


def request_id_from(header: str | None) -> str:
    """The caller's id if it is 1–64 of ``A-Z a-z 0-9 . _ : -``, else a new one."""
    if header is not None and _SAFE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The id of the request this thread is answering (None outside one)."""
    return _request_id.get()


def bind_request_id(rid: str) -> Token[str | None]:
    """From now on this thread's records carry ``rid``; give the token to
    :func:`unbind_request_id` when the request is answered."""
    return _request_id.set(rid)


def unbind_request_id(token: Token[str | None]) -> None:
    _request_id.reset(token)


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line; non-ASCII kept as it is (names are Chinese)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        http: dict[str, Any] | None = getattr(record, "http", None)
        if http is not None:  # an access-log line (idp.runtime.edge)
            out["http"] = http
        return json.dumps(out, ensure_ascii=False)


def configure(log_format: str, stream: TextIO | None = None,
              level: int = logging.INFO) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) in ``log_format``
    ("text" or "json"); replaces a handler this function installed before."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log_format must be 'text' or 'json', not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name("govtrust")
    handler.addFilter(_RequestId())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "govtrust"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class Outage:
    """The log of a background loop that retries while something is away (the
    database during a failover): the first failure with its traceback, then one
    line per failure while it lasts, and one line when the loop works again. Ten
    seconds without a primary are a dozen lines, not 400 lines of tracebacks.
    One per loop; the loop's own thread calls it."""

    def __init__(self, logger: logging.Logger, what: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self._what, self._clock = logger, what, clock
        self._since: float | None = None
        self._failures = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, error: BaseException) -> None:
        self._failures += 1
        if self._since is None:
            self._since = self._clock()
            self._log.warning("%s: %s", self._what, _first_line(error), exc_info=error)
            return
        self._log.warning("%s: still failing (%d times in %.1f s): %s", self._what,
                          self._failures, self._clock() - self._since, _first_line(error))

    def recovered(self) -> None:
        if self._since is None:
            return
        self._log.warning("%s: working again after %.1f s (%d failures)", self._what,
                          self._clock() - self._since, self._failures)
        self._since, self._failures = None, 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]
