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


def crowded_classes(tree: ast.AST) -> list[tuple[str, int]]:
    """Classes defining more than 30 methods in their own body."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            methods = [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
            if len(methods) > MAX_METHODS:
                out.append((node.name, len(methods)))
    return out


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
    crowded = {f"{p.relative_to(ROOT).as_posix()}:{name}": n
               for p in _modules() for name, n in crowded_classes(_tree(p))}
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


def test_the_function_rule_counts_lines():
    tree = ast.parse("def f():\n" + "    x = 1\n" * 60)  # 61 lines with its def
    assert long_functions(tree) == [("f", 61)]
