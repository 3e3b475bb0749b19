"""A minimal WSGI caller for the HTTP fuzz targets: one environ dict per request.

Flask's test client costs about as much per request as the IdP's own view
(EnvironBuilder, a full cookie jar with domain and expiry rules, redirect and
response wrapping), so a fuzz run through it spends half its time in harness.
This caller builds the environ a WSGI server (gunicorn behind nginx) would hand
over — the path percent-decoded to bytes and carried as latin-1 (PEP 3333), the
query string raw, the body as ``wsgi.input`` — calls the app, and keeps the few
cookies the targets need by name. It follows no redirect and applies no cookie
attribute (domain, path, expiry): the targets only ever talk to one host, and a
``Max-Age=0`` or empty value removes the cookie, which is all the apps use.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes, urlencode

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), default)


@dataclass
class Caller:
    """Calls ``app`` as its WSGI server would, with a name → value cookie jar."""

    app: WsgiApp
    host: str = "localhost"
    remote_addr: str = "127.0.0.1"
    cookies: dict[str, str] = field(default_factory=dict)

    def get(self, path: str, query: Mapping[str, str] | str = "") -> Answer:
        return self.request("GET", path, query)

    def post(self, path: str, body: bytes | Mapping[str, str],
             content_type: str = FORM) -> Answer:
        data = urlencode(body).encode() if isinstance(body, Mapping) else body
        return self.request("POST", path, "", data, content_type)

    def request(self, method: str, path: str, query: Mapping[str, str] | str = "",
                body: bytes = b"", content_type: str = "") -> Answer:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": urlencode(query) if isinstance(query, Mapping) else query,
            "SERVER_NAME": self.host,
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": self.remote_addr,
            "HTTP_HOST": self.host,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        if body or method == "POST":
            environ["CONTENT_LENGTH"] = str(len(body))
        if content_type:
            environ["CONTENT_TYPE"] = content_type
        if self.cookies:
            environ["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            started[:] = [status, headers]
            return lambda _: None

        out = self.app(environ, start_response)
        try:
            data = b"".join(out)
        finally:
            close = getattr(out, "close", None)
            if close is not None:
                close()
        status, headers = started
        for name, value in headers:
            if name.lower() == "set-cookie":
                self._keep(value)
        return Answer(int(status.split(" ", 1)[0]), headers, data)

    def _keep(self, set_cookie: str) -> None:
        pair, _, attributes = set_cookie.partition(";")
        name, _, value = pair.strip().partition("=")
        gone = not value or "max-age=0" in attributes.lower().replace(" ", "")
        if gone:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value
