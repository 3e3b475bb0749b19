"""Every word the web pages show, one catalog per language: ``zh_CN`` and ``en``.

Cores never hold UI text: they return enums and values (a certificate
``Refusal``, an ``OtpResult``, a ``DenyReason`` with its ``Contact``), each with a
``message_key``; this package turns a key into words. Keys are namespaced by who
shows them:

- ``sso.*``      the IdP's own pages (login form, consent, logout, errors);
- ``login.*``    certificate and one-time-code login, enrolment, the refusal page;
- ``console.*``  self-service and administration;
- ``refusal.*``, ``otp.*``, ``deny.*``, ``contact.*``, ``issuance.*``: one key per
  value of the cores' enums, named by the enum's ``message_key``.

Templates get a :func:`scope`: a read-only view that looks ``key`` up as
``prefix.key`` under each prefix in turn, so a template writes ``t["title.login"]``
and the console's templates fall back from ``console.*`` to ``sso.*``.
``tests/web/test_catalog.py`` checks that both languages have the same keys and
that every key a template, a view or an enum needs exists.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from idp.web.catalog import en, zh_CN

DEFAULT = "zh-CN"
CATALOGS: Mapping[str, Mapping[str, str]] = {"zh-CN": zh_CN.WORDS, "en": en.WORDS}
LANGS: tuple[str, ...] = tuple(CATALOGS)


def words(lang: str) -> Mapping[str, str]:
    """The whole catalog in ``lang``; Simplified Chinese for a language we lack."""
    return CATALOGS.get(lang, CATALOGS[DEFAULT])


def text(lang: str, key: str, **fmt: Any) -> str:
    """The words for ``key`` in ``lang``, with ``{placeholders}`` filled from ``fmt``.

    A missing key raises ``KeyError``: the catalog test finds it before a user does.
    """
    found = words(lang)[key]
    return found.format(**fmt) if fmt else found


class Scope(Mapping[str, str]):
    """``words(lang)`` seen through prefixes: ``scope["a.b"]`` is the first of
    ``prefix + ".a.b"`` that exists, in the order the prefixes were given."""

    def __init__(self, lang: str, prefixes: tuple[str, ...]) -> None:
        if not prefixes:
            raise ValueError("a scope needs at least one prefix")
        self.lang = lang if lang in CATALOGS else DEFAULT
        self.prefixes = prefixes
        self._words = CATALOGS[self.lang]

    def __getitem__(self, key: str) -> str:
        for prefix in self.prefixes:
            found = self._words.get(f"{prefix}.{key}")
            if found is not None:
                return found
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for prefix in self.prefixes:
            head = prefix + "."
            for key in self._words:
                if key.startswith(head) and key[len(head):] not in seen:
                    seen.add(key[len(head):])
                    yield key[len(head):]

    def __len__(self) -> int:
        return sum(1 for _ in self)


def scope(lang: str, *prefixes: str) -> Scope:
    """The catalog in ``lang`` as templates see it, e.g. ``scope(lang, "console", "sso")``."""
    return Scope(lang, prefixes)
