#!/usr/bin/env python3
"""A sample department app that delegates login to GovTrust over OpenID Connect.

Authorization code flow with PKCE through authlib's Flask client; shows the
Chinese claims, refreshes its tokens, and logs out through the IdP's
end_session_endpoint (RP-Initiated Logout 1.0). Configuration from arguments
or the environment:

    scripts/sample_app.py --client-file govtrust-home/sample-app-client.json \
        --ca-bundle govtrust-home/pki/chain.pem     # serves http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import html
import json
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from authlib.integrations.flask_client import OAuth
from flask import Flask, redirect, session, url_for
from werkzeug.wrappers import Response

SCOPE = "openid profile email department groups"


def create_sample_app(issuer: str, client_id: str, client_secret: str,
                      base_url: str = "http://127.0.0.1:5000") -> Flask:
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)  # sessions last as long as the process
    tokens: dict[str, dict[str, Any]] = {}  # server-side, keyed by a random session value
    oauth = OAuth(app)
    idp = oauth.register(
        "govtrust", client_id=client_id, client_secret=client_secret,
        server_metadata_url=issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256"})

    def page(body: str) -> str:
        return f'<!doctype html><html lang="zh-CN"><meta charset="utf-8"><body>{body}</body>'

    @app.get("/")
    def index() -> str:
        tok = tokens.get(session.get("key", ""))
        if tok is None:
            return page('<p>未登录。<a href="/login">通过统一身份认证登录</a></p>')
        user = tok["userinfo"]
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td id='{html.escape(k)}'>"
                       f"{html.escape(str(v))}</td></tr>" for k, v in sorted(user.items()))
        return page(f"<h1>欢迎，{html.escape(str(user.get('name', '')))}</h1><table>{rows}"
                    f"</table><p>refreshes: <span id='refreshes'>{tok['refreshes']}</span></p>"
                    '<p><a href="/refresh">刷新令牌</a> <a href="/logout">退出</a></p>')

    @app.get("/login")
    def login() -> Response:
        return idp.authorize_redirect(base_url + "/callback")

    @app.get("/callback")
    def callback() -> Response:
        token = idp.authorize_access_token()
        key = secrets.token_urlsafe(16)
        tokens[key] = {**token, "refreshes": 0}
        session["key"] = key
        return redirect(url_for("index"))

    @app.get("/refresh")
    def refresh() -> Response:
        tok = tokens.get(session.get("key", ""))
        if tok is None:
            return redirect(url_for("index"))
        new = idp.fetch_access_token(grant_type="refresh_token",
                                     refresh_token=tok["refresh_token"])
        tok.update(access_token=new["access_token"], refresh_token=new["refresh_token"],
                   refreshes=tok["refreshes"] + 1)
        return redirect(url_for("index"))

    @app.get("/api/me")
    def me() -> Any:
        """Calls the IdP's userinfo endpoint with the current access token."""
        tok = tokens.get(session.get("key", ""))
        if tok is None:
            return {"error": "not logged in"}, 401
        resp = idp.get(idp.load_server_metadata()["userinfo_endpoint"], token=tok)
        return resp.json(), resp.status_code

    @app.get("/logout")
    def logout() -> Response:
        tok = tokens.pop(session.pop("key", ""), None)
        if tok is None:
            return redirect(url_for("index"))
        end = idp.load_server_metadata()["end_session_endpoint"]
        query = urlencode({"id_token_hint": tok["id_token"],
                           "post_logout_redirect_uri": base_url + "/",
                           "state": secrets.token_urlsafe(8)})
        return redirect(f"{end}?{query}")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client-file", default=os.environ.get("SAMPLE_CLIENT_FILE"),
                        help="JSON with issuer, client_id, client_secret (govtrust init --demo)")
    parser.add_argument("--issuer", default=os.environ.get("SAMPLE_ISSUER"))
    parser.add_argument("--ca-bundle", default=os.environ.get("SAMPLE_CA_BUNDLE"),
                        help="CA certificates to trust for the IdP's TLS")
    parser.add_argument("--listen", default=os.environ.get("SAMPLE_LISTEN", "127.0.0.1:5000"),
                        help="HOST:PORT to serve on (the redirect URI is http://HOST:PORT/callback)")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    if not args.client_file:
        parser.error("--client-file is required")
    conf = json.loads(Path(args.client_file).read_text(encoding="utf-8"))
    if args.ca_bundle:
        os.environ["REQUESTS_CA_BUNDLE"] = args.ca_bundle  # used by authlib's requests client
    app = create_sample_app(args.issuer or conf["issuer"], conf["client_id"],
                            conf["client_secret"], f"http://{host}:{port}")
    serve(app, f"{host}:{port}")


def serve(app: Flask, bind: str) -> None:
    """Serve under gunicorn, a production WSGI server (not Flask's development one):
    one worker process with threads, so the app's in-memory signing key is shared."""
    from gunicorn.app.base import BaseApplication

    class SampleApp(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {"bind": bind, "workers": 1, "worker_class": "gthread",
                               "threads": 4, "accesslog": None}.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return app

    SampleApp().run()


if __name__ == "__main__":
    main()
