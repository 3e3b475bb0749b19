"""Prometheus metrics for the IdP and PKI apps (prometheus-client), at ``/metrics``.

What is measured:

- ``govtrust_http_request_duration_seconds`` (histogram: app, route, method,
  status) — the route is the URL rule (``/ocsp/<path:encoded>``), never the raw
  path, so a scan cannot grow the label set;
- ``govtrust_logins_total`` (method, outcome), ``govtrust_certificates_issued_total``
  (profile, hierarchy), ``govtrust_certificates_revoked_total`` (reason,
  hierarchy) — counted from the audit records as their transaction commits (an
  engine event in :func:`watch_audit`), so a rolled-back issuance is not counted
  and every path (web, console, CLI, outbox) is;
- ``govtrust_tokens_issued_total`` (grant_type: authorization_code, refresh_token,
  client_credentials) — access tokens signed, told by ``idp.oidc.tokens.TokenService``
  as each is signed (nothing is written when one is: it is self-contained);
- ``govtrust_ocsp_responses_total`` (status: good, revoked, unknown, or the
  error status) — read from each response the PKI app sends;
- ``govtrust_outbox_lag_seconds`` — the age of the oldest undelivered lifecycle
  event, read from the database at scrape time (so any node reports the cluster);
- ``govtrust_duty_held`` (duty) — 1 where this node holds the duty's lock.

Under gunicorn ``govtrust serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (before
anything imports prometheus-client: it picks its storage at import), and a
scrape aggregates every worker's files; without it, one process's registry.

``/metrics`` answers only peers in ``[serve] metrics_allow`` (default loopback),
judged by the socket's address, never by ``X-Forwarded-For``; anyone else gets
404, as if there were nothing there.
"""

from __future__ import annotations

import ipaddress
import json
import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask, Response
    from prometheus_client import Counter, Gauge, Histogram
    from prometheus_client.core import Metric
    from sqlalchemy import Engine

    from pki.audit import AuditRecord

# When the oldest undelivered outbox event was written (None: nothing owed).
OldestUndelivered = Callable[[], datetime | None]

_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})
_AUDIT = "govtrust.metrics.audit"
_ROUTE = "govtrust.metrics.route"
OCSP_TYPE = "application/ocsp-response"
# Audit actions that count as a login attempt, and the method each stands for.
_LOGIN_METHODS = {"idp.login": "pwd", "certauth.refused": "cert", "idp.otp": "otp"}
# The grant types that issue access tokens (idp.oidc.server); any other is "other".
_GRANT_TYPES = frozenset({"authorization_code", "refresh_token", "client_credentials"})
# Engines already counted (an app factory may run twice on one Services).
_WATCHED: weakref.WeakSet[Engine] = weakref.WeakSet()


@dataclass(frozen=True)
class _Metrics:
    requests: Histogram
    logins: Counter
    issued: Counter
    revoked: Counter
    tokens: Counter
    ocsp: Counter
    duty: Gauge


@lru_cache(maxsize=1)
def _metrics() -> _Metrics:
    """The metric objects, made once per process on first use (prometheus-client's
    registry is process-wide; importing it late lets serve choose multiprocess)."""
    from prometheus_client import Counter, Gauge, Histogram

    return _Metrics(
        requests=Histogram("govtrust_http_request_duration_seconds",
                           "Time to answer a request", ["app", "route", "method", "status"],
                           buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)),
        logins=Counter("govtrust_logins", "Login attempts", ["method", "outcome"]),
        issued=Counter("govtrust_certificates_issued", "Certificates issued",
                       ["profile", "hierarchy"]),
        revoked=Counter("govtrust_certificates_revoked", "Certificates revoked",
                        ["reason", "hierarchy"]),
        tokens=Counter("govtrust_tokens_issued", "Access tokens issued", ["grant_type"]),
        ocsp=Counter("govtrust_ocsp_responses", "OCSP responses sent", ["status"]),
        # max: the duties run in one process per node (serve's parent or a thread).
        duty=Gauge("govtrust_duty_held", "1 where this node holds the duty", ["duty"],
                   multiprocess_mode="max"),
    )


def duty_held(name: str, held: bool) -> None:
    """``Duties``' on_change: this node took or lost ``name``."""
    _metrics().duty.labels(duty=name).set(1 if held else 0)


def token_issued(grant_type: str) -> None:
    """``TokenService``'s on_issued: an access token was signed for ``grant_type``."""
    label = grant_type if grant_type in _GRANT_TYPES else "other"
    _metrics().tokens.labels(grant_type=label).inc()


def count_audit(action: str, details: dict[str, str]) -> None:
    """Count one committed audit record, if it is one the metrics follow."""
    m = _metrics()
    if action in _LOGIN_METHODS:
        method = details.get("method") or _LOGIN_METHODS[action]
        outcome = "refused" if action == "certauth.refused" else details.get("result", "?")
        m.logins.labels(method=method[:16], outcome=outcome[:32]).inc()
    elif action == "cert.issue":
        m.issued.labels(profile=details.get("profile", "?")[:32],
                        hierarchy=details.get("hierarchy", "?")[:16]).inc()
    elif action == "cert.revoke":
        m.revoked.labels(reason=details.get("reason", "?")[:32],
                         hierarchy=details.get("hierarchy", "?")[:16]).inc()


def watch_audit(engine: Engine) -> None:
    """Count audit records of ``engine`` when their transaction commits.

    Every audit record is one ``INSERT INTO audit_log`` (``pki.audit_store.append``);
    those seen on a connection wait in its ``info`` until COMMIT counts them or
    ROLLBACK drops them."""
    from sqlalchemy import event
    from sqlalchemy.sql.dml import Insert

    from pki.audit_store import audit_log, listen_unseen

    if engine in _WATCHED:
        return
    _WATCHED.add(engine)

    def _seen(conn: Any, clause: Any, multiparams: Any, params: Any,
              _options: Any, _result: Any) -> None:
        if not isinstance(clause, Insert) or clause.table is not audit_log:
            return
        rows = list(multiparams) if multiparams else [params]
        for row in rows:
            for one in (row if isinstance(row, list | tuple) else [row]):
                if isinstance(one, dict) and "action" in one:
                    conn.info.setdefault(_AUDIT, []).append(
                        (str(one["action"]), str(one.get("details") or "{}")))

    def _commit(conn: Any) -> None:
        for action, details in conn.info.pop(_AUDIT, []):
            try:
                parsed = json.loads(details)
            except ValueError:
                parsed = {}
            count_audit(action, parsed if isinstance(parsed, dict) else {})

    def _rollback(conn: Any) -> None:
        conn.info.pop(_AUDIT, None)

    event.listen(engine, "after_execute", _seen)
    event.listen(engine, "commit", _commit)
    event.listen(engine, "rollback", _rollback)
    # The issuance hot paths write outside those events and announce what they
    # committed (pki.audit_store.listen_unseen).
    def _announced(records: Sequence[AuditRecord]) -> None:
        for record in records:
            count_audit(record.action, dict(record.details))

    listen_unseen(engine, _announced)


def _ocsp_status(body: bytes) -> str:
    """good / revoked / unknown for a single answer, else the response status."""
    from cryptography.x509 import ocsp

    try:
        resp = ocsp.load_der_ocsp_response(body)
        if resp.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            return resp.response_status.name.lower()
        return resp.certificate_status.name.lower()
    except ValueError:  # several answers in one response, or not OCSP at all
        return "other"


class _OutboxLag:
    """Collector: the outbox lag, read from the database when scraped."""

    def __init__(self, oldest: OldestUndelivered) -> None:
        self._oldest = oldest

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        lag = GaugeMetricFamily("govtrust_outbox_lag_seconds",
                                "Age of the oldest undelivered lifecycle event (0: none)")
        oldest = self._oldest()
        lag.add_metric([], 0.0 if oldest is None else
                       max(0.0, (datetime.now(UTC) - oldest).total_seconds()))
        yield lag


def allowed(networks: Iterable[str], address: str | None) -> bool:
    """Whether a peer at ``address`` may read /metrics."""
    try:
        peer = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    return any(peer in ipaddress.ip_network(n, strict=False) for n in networks)


def exposition(oldest: OldestUndelivered) -> tuple[bytes, str]:
    """The text exposition of this process (or every worker's, multiprocess)."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
    )

    _metrics()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    lag = CollectorRegistry(auto_describe=False)
    lag.register(_OutboxLag(oldest))
    return body + generate_latest(lag), CONTENT_TYPE_LATEST


def install(app: Flask, name: str, *, engine: Engine, allow: Iterable[str],
            oldest: OldestUndelivered) -> None:
    """Label ``app``'s requests (``idp`` or ``pki``) by URL rule, count OCSP answers
    and ``engine``'s audit records, and serve ``/metrics`` to the ``allow`` networks.
    The timing itself is taken by the WSGI layer (``idp.runtime.edge``), which calls
    :func:`observe` once per request."""
    from flask import Response, abort, request

    _metrics()
    watch_audit(engine)
    networks = tuple(str(n) for n in allow)

    @app.after_request
    def _route(response: Response) -> Response:
        # The WSGI layer times the request; Flask knows the route.
        request.environ[_ROUTE] = (request.url_rule.rule if request.url_rule is not None
                                   else "unmatched")
        if name == "pki" and response.mimetype == OCSP_TYPE and not response.direct_passthrough:
            _metrics().ocsp.labels(status=_ocsp_status(response.get_data())).inc()
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        if not allowed(networks, request.remote_addr):
            abort(404)
        body, content_type = exposition(oldest)
        return Response(body, content_type=content_type,
                        headers={"Cache-Control": "no-store"})


def observe(name: str, environ: dict[str, Any], status: str, seconds: float,
            body: Iterable[bytes]) -> None:
    """Record one answered request of app ``name``: ``status`` is the code ("200",
    or "?" when the app never started a response), ``body`` what the app returned."""
    route = environ.get(_ROUTE)
    if route is None:  # not through Flask: the PKI's OCSP fast path (pki.http), the
        # IdP's introspection and client-credentials fast path (idp.web.client_calls)
        path = str(environ.get("PATH_INFO", ""))
        # Never the raw path as a label: a scan would grow the series without end.
        if name == "idp" and path in ("/introspect", "/token"):
            route = path
        elif path.rstrip("/") in ("/ocsp", "/ocsp/sm2"):
            route = path.rstrip("/")
        elif path.startswith("/ocsp/sm2/"):
            route = "/ocsp/sm2/<path:encoded>"  # the Flask routes' names
        elif path.startswith("/ocsp/"):
            route = "/ocsp/<path:encoded>"
        else:
            route = "unmatched"
        if name == "pki" and isinstance(body, list):
            _metrics().ocsp.labels(status=_ocsp_status(b"".join(body))).inc()
    method = str(environ.get("REQUEST_METHOD", ""))
    _metrics().requests.labels(
        app=name, route=str(route), method=method if method in _METHODS else "other",
        status=status).observe(seconds)
