"""The fuzz targets' WSGI caller (tests/fuzz/wsgi.py): the environ a server would build."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tests.fuzz.wsgi import Caller


def echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    seen = "|".join(str(environ.get(k, "")) for k in (
        "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "HTTP_COOKIE",
        "REMOTE_ADDR")).encode("latin-1")
    start_response("200 OK", [("Set-Cookie", "a=1; Path=/; HttpOnly"),
                              ("Set-Cookie", "gone=; Max-Age=0; Path=/"),
                              ("X-Test", "yes")])
    return [seen, b"|", body]


def test_the_path_is_percent_decoded_to_bytes_carried_as_latin1() -> None:
    # PEP 3333: PATH_INFO holds the decoded path's bytes as latin-1, as gunicorn gives it.
    answer = Caller(echo).get("/ocsp/%2B%E4%BD%A0%ff", "q=%20x&y")
    method, path, query = answer.body.decode("latin-1").split("|")[:3]
    assert (method, query) == ("GET", "q=%20x&y")
    assert path.encode("latin-1") == b"/ocsp/+\xe4\xbd\xa0\xff"


def test_a_form_is_url_encoded_and_cookies_are_kept_and_removed_by_name() -> None:
    caller = Caller(echo, remote_addr="198.18.0.1", cookies={"gone": "x"})
    answer = caller.post("/login", {"uid": "张 伟&"})
    fields = answer.body.decode("latin-1").split("|")
    assert fields[0] == "POST" and fields[3] == "application/x-www-form-urlencoded"
    assert fields[4] == "gone=x" and fields[5] == "198.18.0.1"
    assert fields[6] == "uid=%E5%BC%A0+%E4%BC%9F%26"
    assert caller.cookies == {"a": "1"}
    assert answer.status == 200 and answer.header("x-test") == "yes"
