"""The WSGI layer every request passes once (idp.runtime.edge): the request id,
the timing for /metrics, and the optional access-log line, as JSON with the id."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from idp.runtime import edge, logs
from idp.runtime.config import Config
from tests.fixtures.idp import Registered


def _access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [r for r in records if r["logger"] == logs.ACCESS_LOGGER]


def _small_app(access_log: bool) -> Flask:
    app = Flask("edge-test")

    @app.get("/hello")
    def hello() -> str:
        logging.getLogger("govtrust.test").warning("inside")
        return "你好"

    edge.wrap(app, "idp", access_log=access_log)
    return app


def test_access_line_is_json_with_the_request_id_and_no_query(
        json_lines: io.StringIO) -> None:
    client = _small_app(access_log=True).test_client()
    resp = client.get("/hello?id_token_hint=secret.jwt.value",
                      headers={"X-Request-ID": "nginx-77", "User-Agent": "wrk"})
    assert resp.headers["X-Request-ID"] == "nginx-77"
    [line] = _access_lines(json_lines)
    assert line["request_id"] == "nginx-77"
    assert line["level"] == "INFO"
    http = line["http"]
    assert http["method"] == "GET" and http["path"] == "/hello" and http["status"] == 200
    assert http["bytes"] == len("你好".encode()) and http["user_agent"] == "wrk"
    assert http["duration_ms"] >= 0
    assert "secret" not in json_lines.getvalue()


def test_records_inside_and_access_line_share_one_generated_id(
        json_lines: io.StringIO) -> None:
    resp = _small_app(access_log=True).test_client().get("/hello")
    rid = resp.headers["X-Request-ID"]
    records = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert {r["request_id"] for r in records if r["logger"] in (
        "govtrust.test", logs.ACCESS_LOGGER)} == {rid}
    assert logs.current_request_id() is None  # unbound once answered


def test_no_access_line_when_it_is_off(json_lines: io.StringIO) -> None:
    resp = _small_app(access_log=False).test_client().get("/hello")
    assert resp.status_code == 200 and len(resp.headers["X-Request-ID"]) == 32
    assert _access_lines(json_lines) == []


def test_unmatched_path_is_logged_and_gets_an_id(json_lines: io.StringIO) -> None:
    resp = _small_app(access_log=True).test_client().get("/no/such/page")
    assert resp.status_code == 404 and resp.headers["X-Request-ID"]
    [line] = _access_lines(json_lines)
    assert line["http"]["status"] == 404


def test_access_log_is_off_by_default_and_a_boolean(tmp_path: Path) -> None:
    assert Config.load(tmp_path, environ={}).get("serve", "access_log") is False
    on = Config.load(tmp_path, environ={"GOVTRUST_SERVE_ACCESS_LOG": "true"})
    assert on.get("serve", "access_log") is True


def test_token_answer_has_one_id_and_each_security_header_once(
        app: Flask, confidential: Registered) -> None:
    assert confidential.secret is not None
    resp = app.test_client().post(
        "/token", data={"grant_type": "client_credentials"},
        auth=(confidential.client.client_id, confidential.secret))
    assert resp.status_code == 200
    for name in ("X-Request-ID", "Content-Security-Policy", "X-Content-Type-Options",
                 "Referrer-Policy", "X-Frame-Options", "Cache-Control", "Pragma"):
        assert len(resp.headers.getlist(name)) == 1, name
    assert resp.headers["Cache-Control"] == "no-store"


def test_discovery_stays_cacheable(app: Flask) -> None:
    resp = app.test_client().get("/.well-known/openid-configuration")
    assert resp.headers.getlist("Cache-Control") == ["public, max-age=300"]
    assert resp.headers["X-Frame-Options"] == "DENY"


def test_flask_cookie_session_is_never_opened_and_refuses_writes(app: Flask) -> None:
    from flask import session

    @app.get("/test-session")
    def write() -> str:
        session["uid"] = "zhangwei"
        return "written"

    with pytest.raises(RuntimeError, match="secret key"):  # app.testing: raised here
        app.test_client().get("/test-session")
    resp = app.test_client().get("/.well-known/openid-configuration")
    assert "Set-Cookie" not in resp.headers
