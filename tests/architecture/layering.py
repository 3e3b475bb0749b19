"""The import graph of the product, read with ``ast``, and the rules it must keep.

DESIGN.md's layering: an import points down this list, never up or sideways::

    idp.runtime → idp.console → idp.web → idp.oidc → idp.login → idp (errors)
        → pki | directory (siblings: neither imports the other) → policies

No import circle anywhere (between modules, runtime or type-only imports alike),
and no module imports another module's underscore names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("policies", "directory", "pki", "idp")

# (layer prefix, rank); the longest matching prefix decides a module's layer.
LAYERS: tuple[tuple[str, int], ...] = (
    ("policies", 0),
    ("directory", 1),
    ("pki", 1),
    ("idp", 2),  # idp/__init__ and idp.errors: the root of the IdP's exception tree
    ("idp.login", 3),
    ("idp.oidc", 4),
    ("idp.web", 5),
    ("idp.console", 6),
    ("idp.runtime", 7),
)


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # a module of the product
    names: tuple[str, ...]  # names taken with ``from X import a, b``
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            if "migrations" in path.parts:  # Alembic scripts are loaded by path
                continue
            found[module_name(root, path)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The product module ``name`` refers to (a package's ``__init__`` included)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(root: Path) -> Iterator[Import]:
    known = modules(root)
    for mod, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _resolve(alias.name, known)
                    if target is not None:
                        yield Import(mod, target, (), node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in known:  # ``from pkg import module``
                        yield Import(mod, sub, (), node.lineno)
                        continue
                    target = _resolve(base, known)
                    if target is not None:
                        yield Import(mod, target, (alias.name,), node.lineno)


def layer(module: str) -> tuple[str, int]:
    best = ("", -1)
    for prefix, rank in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[0]):
            best = (prefix, rank)
    return best


def upward_imports(found: list[Import]) -> list[str]:
    """Imports that point up or sideways between layers."""
    bad = []
    for imp in found:
        (a, ra), (b, rb) = layer(imp.importer), layer(imp.imported)
        if a == b:
            continue
        if rb >= ra:
            bad.append(f"{imp.importer}:{imp.line} imports {imp.imported} ({a} → {b})")
    return bad


def underscore_imports(found: list[Import]) -> list[str]:
    return [f"{imp.importer}:{imp.line} imports {imp.imported}.{name}"
            for imp in found for name in imp.names
            if name.startswith("_") and not name.startswith("__")]


def cycles(found: list[Import]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for imp in found:
        if imp.importer != imp.imported and not imp.imported.startswith(imp.importer + "."):
            # a package's __init__ importing its own sub-modules is not a circle
            # unless the sub-module imports the package back, which the edge below shows
            graph.setdefault(imp.importer, set()).add(imp.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups
