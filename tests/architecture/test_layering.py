"""The layering of DESIGN.md, checked on the real tree and shown to bite on a
tree that breaks each rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.architecture.layering import cycles, imports, underscore_imports, upward_imports

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def found() -> list:
    return list(imports(ROOT))


def test_the_graph_is_read(found: list) -> None:
    importers = {imp.importer for imp in found}
    assert {"idp.runtime.cli", "idp.web.oidc_views", "pki.authority"} <= importers


def test_imports_point_down(found: list) -> None:
    assert upward_imports(found) == []


def test_no_import_circle(found: list) -> None:
    assert cycles(found) == []


def test_no_underscore_names_from_another_module(found: list) -> None:
    assert underscore_imports(found) == []


def test_pki_and_directory_are_siblings(found: list) -> None:
    crossing = [f"{i.importer} → {i.imported}" for i in found
                if {i.importer.split(".")[0], i.imported.split(".")[0]} == {"pki", "directory"}]
    assert crossing == []


# -- the rules bite ------------------------------------------------------------------

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for pkg in ("policies", "directory", "pki", "idp", "idp/web", "idp/oidc", "idp/login",
                "idp/console", "idp/runtime"):
        (tmp_path / pkg).mkdir(parents=True, exist_ok=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"idp/oidc/tokens.py": "from idp.web.kit import render\n",
                            "idp/web/kit.py": "def render(): ...\n"})
    assert upward_imports(list(imports(root))) == [
        "idp.oidc.tokens:1 imports idp.web.kit (idp.oidc → idp.web)"]


def test_a_sideways_import_between_siblings_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"pki/certs.py": "from directory.model import Person\n",
                            "directory/model.py": "class Person: ...\n"})
    assert upward_imports(list(imports(root))) == [
        "pki.certs:1 imports directory.model (pki → directory)"]


def test_a_type_only_upward_import_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "idp/console/views.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                "    from idp.runtime.services import Services\n",
        "idp/runtime/services.py": "class Services: ...\n"})
    assert upward_imports(list(imports(root))) == [
        "idp.console.views:3 imports idp.runtime.services (idp.console → idp.runtime)"]


def test_a_circle_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"idp/web/a.py": "from idp.web import b\n",
                            "idp/web/b.py": "def f():\n    from idp.web.a import x\n"})
    assert cycles(list(imports(root))) == [["idp.web.a", "idp.web.b"]]


def test_an_underscore_import_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"idp/web/kit.py": "def _csrf_ok(): ...\n",
                            "idp/console/render.py": "from idp.web.kit import _csrf_ok\n"})
    assert underscore_imports(list(imports(root))) == [
        "idp.console.render:1 imports idp.web.kit._csrf_ok"]
