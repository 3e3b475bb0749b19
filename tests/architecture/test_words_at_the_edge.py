"""Words at the edge: no core module holds UI text.

The cores (idp.login, idp.oidc, policies, pki, directory) return enums and values;
``idp.web.catalog`` turns them into words. A Chinese string literal in a core is
UI text that belongs in the catalog, unless it is data: the demo directory, the
compound surnames the directory splits names with, a default organisation name,
an example in a command's help. Those are listed here one by one, so a new one is
a decision somebody makes, not an accident. Docstrings and comments may speak of
等保 and 张伟 freely; only string values are read (with ``ast``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORES = ("idp/login", "idp/oidc", "idp/errors.py", "policies", "pki", "directory")
# CJK ideographs and punctuation, and full-width forms (，。： and ＡＢＣ).
CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")

# Whole files that are data.
DATA_FILES = frozenset({
    "directory/demo.py",  # the demo city's people, departments and apps
})
# (file, literal) pairs that are data, not words for a page.
DATA_LITERALS = frozenset({
    ("directory/entries.py", "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 "
                             "宇文 司徒 令狐 夏侯 轩辕 端木 独孤 南宫 西门 万俟"),
    ("directory/entries.py", "一"),  # the CJK range a Chinese name is recognised by
    ("directory/entries.py", "鿿"),
    ("pki/model.py", "北京市人民政府"),  # the default organisation (O) of a subject
    ("directory/cli.py", "Display name, e.g. 张伟."),  # examples in --help
    ("directory/cli.py", "Path from the top, e.g. 市财政局/预算处."),
    ("directory/cli.py", "Part of the name, e.g. 张."),
})


def core_files() -> Iterator[Path]:
    for entry in CORES:
        path = ROOT / entry
        yield from [path] if path.is_file() else sorted(path.rglob("*.py"))


def cjk_literals(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings and CJK.search(node.value):
            yield node.lineno, node.value


def test_the_scan_sees_chinese_literals() -> None:
    # a scan that finds nothing would pass whatever the cores say
    assert any(value == "北京市人民政府" for _, value in cjk_literals(ROOT / "pki/model.py"))
    assert list(cjk_literals(ROOT / "directory/demo.py"))


def test_no_core_module_holds_ui_words() -> None:
    found = []
    for path in core_files():
        name = path.relative_to(ROOT).as_posix()
        if name in DATA_FILES:
            continue
        found += [(name, line, value) for line, value in cjk_literals(path)
                  if (name, value) not in DATA_LITERALS]
    assert found == [], "UI words belong in idp/web/catalog (or, if data, in the allowlist)"


def test_the_allowlist_names_only_literals_that_still_exist() -> None:
    # a stale entry would quietly allow the same words back later
    present = {(path.relative_to(ROOT).as_posix(), value)
               for path in core_files() for _, value in cjk_literals(path)}
    assert sorted(DATA_LITERALS - present) == []
    assert all((ROOT / name).is_file() for name in DATA_FILES)


def test_the_policy_file_holds_no_words_for_the_page() -> None:
    # policies/assurance.yaml names whom to ask; the sentences are the catalog's
    import yaml

    raw = yaml.safe_load((ROOT / "policies" / "assurance.yaml").read_text(encoding="utf-8"))
    assert "contacts" not in raw
    assert {tuple(body) for body in raw["deny_reasons"].values()} == {("contact",)}
