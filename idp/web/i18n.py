"""Which language a page speaks: Simplified Chinese by default, English on request.

Chosen by ``?lang=`` (remembered in a cookie), then the cookie, then the
``Accept-Language`` header (RFC 9110 section 12.5.4); anything else is zh-CN.
The words themselves are in :mod:`idp.web.catalog`.
"""

from __future__ import annotations

from idp.web.catalog import LANGS

__all__ = ["COOKIE", "LANGS", "choose"]

COOKIE = "gt_lang"


def choose(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for value in (query, cookie):
        if value in LANGS:
            return value
        if value and value.lower().startswith("en"):
            return "en"
        if value and value.lower().startswith("zh"):
            return "zh-CN"
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return "zh-CN"
