"""Rooms of one job, held by a test: in ``model_runtime/`` and ``cach_qgis/`` (the generated
``resources_rc.py`` aside) no module runs past 600 lines, no class past 30 methods and no
function past 60 lines. Read by ``ast`` only: nothing is imported, so it runs without the stack."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("model_runtime", "cach_qgis")
GENERATED = {"cach_qgis/resources_rc.py"}
MAX_MODULE_LINES = 600
MAX_METHODS = 30
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    paths = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return [p for p in paths if p.relative_to(ROOT).as_posix() not in GENERATED]


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def module_too_long(path: Path) -> int | None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    return lines if lines > MAX_MODULE_LINES else None


def _own_methods(node: ast.ClassDef) -> set[str]:
    return {n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def class_methods(trees: list[ast.AST]) -> dict[str, int]:
    """Each class's methods, its own and those of the classes of these trees it inherits from
    (mixins count: a class put together from mixins is still one class to read)."""
    nodes = {n.name: n for tree in trees for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}

    def methods(name: str, seen: frozenset[str]) -> set[str]:
        node = nodes[name]
        out = _own_methods(node)
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in nodes and base.id not in seen:
                out |= methods(base.id, seen | {base.id})
        return out

    return {name: len(methods(name, frozenset({name}))) for name in nodes}


def crowded_classes(tree: ast.AST, trees: list[ast.AST] | None = None,
                    counts: dict[str, int] | None = None) -> list[tuple[str, int]]:
    """Classes of ``tree`` with more than 30 methods, inherited ones from ``trees`` included
    (``counts``: ``class_methods`` of them, when already known)."""
    counts = counts or class_methods([tree, *(trees or [])])
    return [(n.name, counts[n.name]) for n in ast.walk(tree)
            if isinstance(n, ast.ClassDef) and counts[n.name] > MAX_METHODS]


def long_functions(tree: ast.AST) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                out.append((node.name, lines))
    return out


def test_the_packages_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in _modules()}
    assert "model_runtime/pipeline.py" in names and "cach_qgis/dock.py" in names
    assert not names & GENERATED


def test_no_module_over_600_lines():
    long = {p.relative_to(ROOT).as_posix(): n for p in _modules() if (n := module_too_long(p))}
    assert long == {}, "modules over 600 lines: split them by job"


def test_no_class_over_30_methods():
    trees = {p: _tree(p) for p in _modules()}
    counts = class_methods(list(trees.values()))
    crowded = {f"{p.relative_to(ROOT).as_posix()}:{name}": n
               for p, tree in trees.items() for name, n in crowded_classes(tree, counts=counts)}
    assert crowded == {}, "classes over 30 methods: give a job its own class"


def test_no_function_over_60_lines():
    long = {f"{p.relative_to(ROOT).as_posix()}:{name}": n
            for p in _modules() for name, n in long_functions(_tree(p))}
    assert long == {}, "functions over 60 lines: shorten them"


@pytest.mark.parametrize("methods, crowded", [(30, False), (31, True)])
def test_the_class_rule_counts_methods(methods, crowded):
    body = "\n".join(f"    def m{i}(self): pass" for i in range(methods))
    tree = ast.parse(f"class C:\n{body}\n")
    assert bool(crowded_classes(tree)) is crowded


def test_the_class_rule_counts_mixins():
    mixin = ast.parse("class M:\n" + "".join(f"    def m{i}(self): pass\n" for i in range(20)))
    tree = ast.parse("class C(M, Base):\n" + "".join(f"    def c{i}(self): pass\n"
                                                      for i in range(11)))
    assert crowded_classes(tree, [mixin]) == [("C", 31)]


def test_the_function_rule_counts_lines():
    tree = ast.parse("def f():\n" + "    x = 1\n" * 60)  # 61 lines with its def
    assert long_functions(tree) == [("f", 61)]
