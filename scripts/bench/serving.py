#!/usr/bin/env python3
"""The IdP app's own cost per request, without a server: what the layers around
the views add (issue 11), measured where a shared machine's load disturbs least.

    scripts/bench/serving.py [--requests 2000] [--home /dev/shm/govtrust-bench-serving]

Builds the IdP app as a gunicorn worker does (``idp.runtime.app.create_app`` on a
fresh home) and calls it as WSGI, one request after another in this thread:
``GET /healthz`` (a view that does nothing, so everything measured is the layers:
Flask, the request id, metrics, security headers), ``POST /token``
(client credentials) and ``POST /introspect``. Beside them, the same ``/healthz``
answer from a bare Flask app: ``healthz_layers_us`` is the difference. Each
figure is the best of five rounds of this thread's CPU time per request
(``time.thread_time``), so other processes' load changes it little. No TLS, no
gunicorn: ``scripts/bench/idp.py`` measures those. Prints ``name: value unit`` lines.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WSGI = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def environ(method: str, path: str, body: bytes = b"", auth: str | None = None) -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    headers = {"Authorization": auth} if auth else {}
    env = EnvironBuilder(path=path, method=method, data=body, headers=headers,
                         base_url="https://127.0.0.1:8443",
                         content_type="application/x-www-form-urlencoded" if body else None,
                         environ_overrides={"REMOTE_ADDR": "127.0.0.1"}).get_environ()
    env["bench.body"] = body
    return env


def call(app: WSGI, env: dict[str, Any]) -> tuple[str, bytes]:
    env = dict(env, **{"wsgi.input": io.BytesIO(env["bench.body"])})
    status: list[str] = []
    out = b"".join(app(env, lambda s, h, *exc: status.append(s)))
    return status[0], out


def per_request_us(app: WSGI, env: dict[str, Any], n: int) -> float:
    for _ in range(max(20, n // 20)):
        call(app, env)
    best = float("inf")
    for _ in range(5):
        started = time.thread_time()
        for _ in range(n):
            call(app, env)
        best = min(best, (time.thread_time() - started) / n * 1e6)
    return best


def bare_healthz() -> WSGI:
    from flask import Flask, jsonify

    bare = Flask("bare")

    @bare.get("/healthz")
    def healthz() -> Any:
        resp = jsonify({"alive": True})
        resp.headers["Cache-Control"] = "no-store"
        return resp

    return bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("/dev/shm/govtrust-bench-serving"))
    parser.add_argument("--requests", type=int, default=2000, help="per round, for /healthz")
    args = parser.parse_args()
    if args.home.exists():
        shutil.rmtree(args.home)
    env = dict(os.environ, GOVTRUST_HOME=str(args.home), PYTHONPATH=str(ROOT))
    govtrust = [sys.executable, "-c", "from idp.runtime.cli import main; main()"]
    try:
        subprocess.run([*govtrust, "init"], env=env, check=True, capture_output=True)
        reg = json.loads(subprocess.run(
            [*govtrust, "--json", "client", "add", "--name", "bench", "--redirect-uri",
             "http://127.0.0.1:9/cb", "--level", "2", "--first-party"],
            env=env, check=True, capture_output=True, text=True).stdout)
        from idp.runtime.app import create_app
        from idp.runtime.config import Config
        from idp.runtime.services import Services

        services = Services(Config.load(args.home, environ=env))
        services.may_start_slapd = False
        app = create_app(services)
        basic = "Basic " + base64.b64encode(
            f"{reg['client_id']}:{reg['client_secret']}".encode()).decode()
        token_env = environ("POST", "/token", b"grant_type=client_credentials", basic)
        status, out = call(app, token_env)
        assert status.startswith("200"), (status, out)
        intro_env = environ("POST", "/introspect",
                            b"token=" + json.loads(out)["access_token"].encode(), basic)
        assert json.loads(call(app, intro_env)[1])["active"] is True
        health = environ("GET", "/healthz")
        n = args.requests
        ours = per_request_us(app, health, n)
        bare = per_request_us(bare_healthz(), health, n)
        print(f"healthz_us: {ours:.1f} us")
        print(f"healthz_bare_flask_us: {bare:.1f} us")
        print(f"healthz_layers_us: {ours - bare:.1f} us")
        print(f"token_us: {per_request_us(app, token_env, max(1, n // 10)):.1f} us")
        print(f"introspect_us: {per_request_us(app, intro_env, max(1, n // 10)):.1f} us")
        services.close()
    finally:
        shutil.rmtree(args.home, ignore_errors=True)


if __name__ == "__main__":
    main()
