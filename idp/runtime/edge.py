"""The WSGI layer around the IdP and PKI apps: what every request passes through once.

Every request, whichever app and whichever path answers it (the PKI answers
``POST /ocsp`` before Flask, on its fast path), gets three things here, from one
wrapper and one look at its status and headers:

- its id (:mod:`idp.runtime.logs`): bound for the records logged while it is
  answered, echoed in ``X-Request-ID``;
- its timing, for ``/metrics`` (:func:`idp.runtime.metrics.observe`);
- with ``[serve] access_log``, one access-log line on the ``govtrust.access``
  logger, so it is JSON with the request id when the logs are.

Why not Flask hooks and gunicorn's access log: hooks miss the fast path and cost
a Flask call each, and gunicorn formats its access line for every request even
into ``/dev/null`` (23 µs of CPU a call on its own; the IdP's workers used ~50 µs
less per ``/healthz`` without it, under load) — more than this whole layer costs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from idp.runtime import logs, metrics

if TYPE_CHECKING:
    from flask import Flask

# Lengths kept in an access-log line: a long path or agent is cut, never logged whole.
MAX_LOGGED_PATH = 512
MAX_LOGGED_AGENT = 256

_access = logging.getLogger(logs.ACCESS_LOGGER)


def access_fields(environ: dict[str, Any], status: str, length: str | None,
                  seconds: float) -> dict[str, Any]:
    """What an access-log line says about one request: no query string (an
    ``id_token_hint`` or a ``code`` may be in it), no header but the agent."""
    return {
        "remote_addr": environ.get("REMOTE_ADDR"),
        "method": str(environ.get("REQUEST_METHOD", ""))[:16],
        "path": str(environ.get("PATH_INFO", ""))[:MAX_LOGGED_PATH],
        "status": int(status) if status.isdigit() else None,
        "bytes": int(length) if length is not None and length.isdigit() else None,
        "duration_ms": round(seconds * 1000, 3),
        "user_agent": str(environ.get("HTTP_USER_AGENT", ""))[:MAX_LOGGED_AGENT] or None,
    }


def wrap(app: Flask, name: str, *, access_log: bool) -> None:
    """Put the layer around ``app`` (``idp`` or ``pki``: the ``app`` label of its
    metrics); ``access_log`` turns on the access-log line."""
    inner = app.wsgi_app

    def edge(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = logs.request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        token = logs.bind_request_id(rid)
        sent: list[Any] = ["?", None]  # status code, Content-Length

        def respond(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            sent[0] = status.split(" ", 1)[0]
            if access_log:
                sent[1] = next((v for k, v in headers if k.lower() == "content-length"), None)
            return start_response(status, [*headers, (logs.REQUEST_ID_HEADER, rid)], *exc_info)

        try:
            body = inner(environ, respond)
            seconds = time.perf_counter() - started
            metrics.observe(name, environ, sent[0], seconds, body)
            if access_log:
                fields = access_fields(environ, sent[0], sent[1], seconds)
                _access.info('%s "%s %s" %s %s %.1f ms', fields["remote_addr"],
                             fields["method"], fields["path"], sent[0], fields["bytes"] or "-",
                             seconds * 1000, extra={"http": fields})
            return body
        finally:
            logs.unbind_request_id(token)

    app.wsgi_app = edge  # type: ignore[method-assign]
