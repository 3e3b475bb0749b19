"""The string catalog (``idp.web.catalog``): both languages have the same keys, and
every key a template, a view or a core's enum needs is there.

Templates are scanned for literal ``t[...]`` / ``s[...]`` / ``t.get(...)`` keys; the
views for the literal keys they pass to the lookup helpers (read with ``ast``);
keys built from an enum value (``'cert.' ~ status``) are checked enum by enum.
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from directory.model import AuthResult, PersonStatus
from idp.console.admin import SEARCH_FIELDS
from idp.login.refusals import Refusal
from idp.login.totp import OtpResult
from idp.web import catalog, i18n
from pki.model import CertStatus
from policies.assurance import Contact, DenyReason, InfoClass, IssuanceDenyReason

ROOT = Path(__file__).resolve().parents[2]
WEB_TEMPLATES = ROOT / "idp" / "web" / "templates"
CONSOLE_TEMPLATES = ROOT / "idp" / "console" / "templates"

# What each template's ``t`` and ``s`` look keys up under (see kit.render,
# login_views._s and console.render.words).
SSO = ("sso",)
LOGIN = ("login",)
CONSOLE = ("console", "sso")

EN, ZH = catalog.words("en"), catalog.words("zh-CN")


def found(key: str, prefixes: tuple[str, ...], lang: str) -> bool:
    return key in catalog.scope(lang, *prefixes)


# -- the two languages ------------------------------------------------------------------

def test_the_languages_are_zh_cn_first_then_en() -> None:
    assert catalog.LANGS == i18n.LANGS == ("zh-CN", "en")
    assert catalog.DEFAULT == "zh-CN"


def test_both_catalogs_have_exactly_the_same_keys() -> None:
    assert sorted(set(ZH) - set(EN)) == []
    assert sorted(set(EN) - set(ZH)) == []


def test_no_text_is_empty() -> None:
    for words in (ZH, EN):
        assert [k for k, v in words.items() if not v.strip()] == []


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_placeholders_agree_between_languages() -> None:
    assert {k: _fields(ZH[k]) for k in ZH if _fields(ZH[k]) != _fields(EN[k])} == {}


def test_keys_are_namespaced() -> None:
    spaces = {"sso", "login", "console", "refusal", "otp", "deny", "contact", "issuance"}
    assert sorted(k for k in ZH if k.split(".", 1)[0] not in spaces or "." not in k) == []


# -- the lookup API -----------------------------------------------------------------------

def test_an_unknown_language_reads_simplified_chinese() -> None:
    assert catalog.words("fr") is ZH
    assert catalog.scope("fr", "sso")["login"] == ZH["sso.login"]


def test_a_scope_falls_back_in_the_order_given() -> None:
    t = catalog.scope("en", *CONSOLE)
    assert t["uid"] == EN["console.uid"]  # the console's own word first
    assert t["msg.csrf"] == EN["sso.msg.csrf"]  # then the IdP pages'
    assert "msg.csrf" in t and "no.such.key" not in t
    with pytest.raises(KeyError):
        t["no.such.key"]
    assert t.get("scope.nothing", "nothing") == "nothing"
    assert len(t) == len(set(t)) == len({k.split(".", 1)[1] for k in EN
                                         if k.startswith(("console.", "sso."))})


def test_a_scope_needs_a_prefix() -> None:
    with pytest.raises(ValueError):
        catalog.scope("en")


def test_text_fills_placeholders_and_refuses_an_unknown_key() -> None:
    assert catalog.text("en", "console.dash.failed_total", n=3).startswith("3 ")
    with pytest.raises(KeyError):
        catalog.text("en", "console.no_such_key")


# -- every key a core's enum needs ------------------------------------------------------

ENUM_KEYS: list[str] = [
    *(r.message_key for r in Refusal),
    *(r.message_key for r in OtpResult),
    *(r.message_key for r in DenyReason),
    *(c.message_key for c in Contact),
    *(r.message_key for r in IssuanceDenyReason),
]


@pytest.mark.parametrize("key", ENUM_KEYS)
def test_every_enum_value_of_the_cores_has_words_in_both_languages(key: str) -> None:
    # English words in the English catalog, Chinese ones in the Chinese catalog
    assert EN[key].isascii() and not ZH[key].isascii()


# Keys the web edge builds from an enum's value: (prefix in its scope, scope, values).
EDGE_ENUMS: list[tuple[str, tuple[str, ...], list[str]]] = [
    ("msg.", SSO, [r.value for r in AuthResult if r is not AuthResult.OK]),  # login form
    ("cert.", CONSOLE, [s.value for s in CertStatus]),  # _macros.status
    ("status.", CONSOLE, [s.value for s in PersonStatus]),  # _macros.pstatus
    ("info.", CONSOLE, [c.value for c in InfoClass]),  # apps, _appform
    ("", CONSOLE, list(SEARCH_FIELDS)),  # people.html: t[f]
]


@pytest.mark.parametrize(("prefix", "prefixes", "values"), EDGE_ENUMS,
                         ids=[e[0] or "search_fields" for e in EDGE_ENUMS])
def test_every_enum_value_the_edge_shows_has_a_key(prefix: str, prefixes: tuple[str, ...],
                                                   values: list[str]) -> None:
    for lang in catalog.LANGS:
        assert [v for v in values if not found(prefix + v, prefixes, lang)] == []


# -- every key a template uses ------------------------------------------------------------

_LITERAL = re.compile(r"""\b([ts])(?:\[\s*|\.get\(\s*)(['"])([^'"]+)\2""")
_NAV = re.compile(r"""\(\s*'/console/[^']*'\s*,\s*'([^']+)'\s*\)""")


def template_keys() -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(template, key, prefixes) for every literal key in every template."""
    for base, t_scope in ((WEB_TEMPLATES, SSO), (CONSOLE_TEMPLATES, CONSOLE)):
        for path in sorted(base.rglob("*.html")):
            source = path.read_text(encoding="utf-8")
            name = str(path.relative_to(ROOT))
            for var, _, key in _LITERAL.findall(source):
                if key.endswith("."):  # 'cert.' ~ s: checked by enum above
                    continue
                yield name, key, (t_scope if var == "t" else LOGIN)
            for key in _NAV.findall(source):  # base.html's navigation (href, key)
                yield name, key, t_scope


def test_the_template_scan_finds_keys() -> None:
    # a scan that silently finds nothing would pass whatever the templates say
    keys = {key for _, key, _ in template_keys()}
    assert {"title.login", "cert.title", "nav.profile", "title.profile"} <= keys


def test_every_key_a_template_uses_exists() -> None:
    missing = [(name, key, lang) for name, key, prefixes in template_keys()
               for lang in catalog.LANGS if not found(key, prefixes, lang)]
    assert missing == []


# -- every key a view passes ----------------------------------------------------------

def _strings(node: ast.AST) -> Iterator[str]:
    """The string constants of an argument, not those of a call inside it (the scan
    meets those on their own: ``again(_words("sso.msg.csrf"))``, ``again(s["x"])``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        if not node.value.endswith("."):  # "msg." + value: checked by enum above
            yield node.value
    elif isinstance(node, ast.IfExp):  # the keys are the branches, not the condition
        yield from _strings(node.body)
        yield from _strings(node.orelse)
    elif not isinstance(node, (ast.Call, ast.Subscript)):
        for child in ast.iter_child_nodes(node):
            yield from _strings(child)


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def view_keys(path: Path, t_scope: tuple[str, ...]) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(key, prefixes) for the literal keys a view module hands to a lookup."""
    full: tuple[str, ...] = ()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name in ("page_error", "tr", "again") and node.args:
                yield from ((k, t_scope) for k in _strings(node.args[0]))
            elif name == "message" and len(node.args) > 1:  # console: message(who, title_key…)
                yield from ((k, t_scope) for k in _strings(node.args[1]))
            elif name in ("_words", "text") and node.args:  # catalog.text(lang, key)
                yield from ((k, full) for k in _strings(node.args[-1]))
            for kw in node.keywords:
                if kw.arg in ("title_key", "message_key", "back_label"):
                    yield from ((k, t_scope) for k in _strings(kw.value))
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Call) \
                and _name(node.value.func) == "_s":
            yield from ((k, LOGIN) for k in _strings(node.slice))
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and node.value.id == "s":
            yield from ((k, LOGIN) for k in _strings(node.slice))
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "key" for t in node.targets):
            yield from ((k, t_scope) for k in _strings(node.value))


def all_view_keys() -> Iterator[tuple[str, str, tuple[str, ...]]]:
    for path in sorted((ROOT / "idp" / "web").glob("*.py")):
        for key, prefixes in view_keys(path, SSO):
            yield path.name, key, prefixes
    for path in sorted((ROOT / "idp" / "console").glob("*.py")):
        for key, prefixes in view_keys(path, CONSOLE):
            yield "console/" + path.name, key, prefixes


def test_the_view_scan_finds_keys() -> None:
    keys = {key for _, key, _ in all_view_keys()}
    assert {"error.invalid_request", "msg.csrf", "sso.msg.throttled",
            "denied.level", "title.error", "auth.verify_link"} <= keys


def test_every_key_a_view_uses_exists() -> None:
    def exists(key: str, prefixes: tuple[str, ...], lang: str) -> bool:
        words: Mapping[str, str] = (catalog.scope(lang, *prefixes) if prefixes
                                    else catalog.words(lang))
        return key in words

    missing = [(module, key, lang) for module, key, prefixes in all_view_keys()
               for lang in catalog.LANGS
               if not exists(key, prefixes, lang)]
    assert missing == []
