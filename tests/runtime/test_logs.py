"""Optional JSON logs, one object a line, with the request id that nginx passes
through in X-Request-ID (validated) or a fresh one, echoed in the response."""

from __future__ import annotations

import io
import json
import logging

import pytest
from flask import Flask

from idp.runtime import logs
from idp.runtime.config import Config, ConfigError


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_log_line_has_time_level_logger_message_and_request_id(
        app: Flask, json_lines: io.StringIO) -> None:
    @app.get("/test-log")
    def _log() -> str:
        logging.getLogger("govtrust.test").warning("审计 %s", "张伟")
        return "ok"

    resp = app.test_client().get("/test-log", headers={"X-Request-ID": "nginx-4f2a.1"})
    assert resp.headers["X-Request-ID"] == "nginx-4f2a.1"
    [record] = [r for r in _records(json_lines) if r["logger"] == "govtrust.test"]
    assert record["message"] == "审计 张伟"
    assert record["level"] == "WARNING"
    assert record["request_id"] == "nginx-4f2a.1"
    assert str(record["time"]).endswith("+00:00")


def test_request_id_is_generated_when_none_is_sent(app: Flask) -> None:
    client = app.test_client()
    first = client.get("/.well-known/openid-configuration").headers["X-Request-ID"]
    second = client.get("/.well-known/openid-configuration").headers["X-Request-ID"]
    assert len(first) == 32 and first != second


@pytest.mark.parametrize("bad", ["a" * 65, "id with spaces", "x\"}{", "id;rm", "日志",
                                 "a\u2028b"])
def test_unsafe_request_id_is_replaced(app: Flask, bad: str) -> None:
    resp = app.test_client().get("/.well-known/openid-configuration",
                                 headers={"X-Request-ID": bad})
    assert resp.headers["X-Request-ID"] != bad
    assert len(resp.headers["X-Request-ID"]) == 32


def test_request_id_outside_a_request_is_null(json_lines: io.StringIO) -> None:
    logging.getLogger("govtrust.test").error("boom")
    [record] = [r for r in _records(json_lines) if r["logger"] == "govtrust.test"]
    assert record["request_id"] is None


def test_exception_is_kept_in_one_line(json_lines: io.StringIO) -> None:
    try:
        raise RuntimeError("kaputt")
    except RuntimeError:
        logging.getLogger("govtrust.test").exception("failed")
    lines = json_lines.getvalue().splitlines()
    record = json.loads(lines[-1])
    assert "RuntimeError: kaputt" in str(record["exception"])


def test_unknown_log_format_is_refused_at_load(tmp_path: object) -> None:
    from pathlib import Path

    with pytest.raises(ConfigError, match="log_format"):
        Config.load(Path(str(tmp_path)), environ={"GOVTRUST_SERVE_LOG_FORMAT": "xml"})


def test_configure_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError):
        logs.configure("yaml")


def test_an_outage_logs_its_first_failure_in_full_then_one_line_each_then_its_end(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    outage = logs.Outage(logging.getLogger("govtrust.test.outage"), "listener away",
                         clock=lambda: now[0])
    outage.recovered()  # nothing was wrong: nothing logged
    with caplog.at_level(logging.WARNING, logger="govtrust.test.outage"):
        for step in range(3):
            now[0] = 100.0 + step
            outage.failed(OSError("server closed the connection\n" + "x" * 10_000))
        assert outage.ongoing
        now[0] = 104.5
        outage.recovered()
        outage.failed(ValueError(""))  # a new outage: a traceback again
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "listener away: OSError: server closed the connection",
        "listener away: still failing (2 times in 1.0 s): OSError: server closed the "
        "connection",
        "listener away: still failing (3 times in 2.0 s): OSError: server closed the "
        "connection",
        "listener away: working again after 4.5 s (3 failures)",
        "listener away: ValueError: ",
    ]
    assert [r.exc_info is not None for r in caplog.records] == [True, False, False, False,
                                                                True]
