"""Logs: plain text by default, or one JSON object a line, each with a request id.

``[serve] log_format = "json"`` makes every record one line of
``{"time", "level", "logger", "message", "request_id"}`` (and ``exception`` when
there is one), for a log shipper. The request id is the ``X-Request-ID`` header
nginx passes through (accepted only when short and made of safe characters, so
a client cannot forge log lines or grow them), else a fresh one; the response
echoes it, so a user's report, nginx's access log and ours meet on one value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from flask import Flask, Response

REQUEST_ID_HEADER = "X-Request-ID"
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


def install(app: Flask) -> None:
    """Give every request of ``app`` an id (logged with each record, echoed in
    the ``X-Request-ID`` response header)."""
    from flask import request

    @app.before_request
    def _take_id() -> None:
        _request_id.set(request_id_from(request.headers.get(REQUEST_ID_HEADER)))

    @app.after_request
    def _echo_id(response: Response) -> Response:
        # An earlier hook may have answered before _take_id ran.
        rid = _request_id.get() or request_id_from(request.headers.get(REQUEST_ID_HEADER))
        response.headers[REQUEST_ID_HEADER] = rid
        return response

    @app.teardown_request
    def _drop_id(_exc: BaseException | None) -> None:
        _request_id.set(None)
