"""The runtime's shape, held by tests: short functions, a stdlib-only protocol without side
effects, and no research code in the product."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from model_runtime.paths import PLUGIN_ROOT

RUNTIME = PLUGIN_ROOT / "model_runtime"
MAX_LINES = 60
#: functions allowed to be longer, each with the reason it is one piece
ALLOW_LONG: dict[str, str] = {}


def _functions(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_function_in_model_runtime_is_longer_than_60_lines():
    long = []
    for path in sorted(RUNTIME.rglob("*.py")):
        rel = path.relative_to(PLUGIN_ROOT).as_posix()
        for name, lines in _functions(path):
            if lines > MAX_LINES and f"{rel}:{name}" not in ALLOW_LONG:
                long.append(f"{rel}:{name} ({lines} lines)")
    assert long == [], "functions over 60 lines (shorten, or allowlist with a reason)"


def test_allowlist_names_real_long_functions():
    """A stale allowlist entry hides nothing: each one must still exist and be long."""
    for key in ALLOW_LONG:
        rel, name = key.split(":")
        sizes = dict(_functions(PLUGIN_ROOT / rel))
        assert sizes.get(name, 0) > MAX_LINES, f"{key} is no longer long: drop it"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or "").split(".")[0])
    return names


@pytest.mark.parametrize("module", ["protocol.py", "errors.py"])
def test_protocol_imports_only_the_standard_library(module):
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    imported = _imports(RUNTIME / module)
    relative = {n for n in imported if n.startswith(".")}
    assert imported - relative <= stdlib, imported - relative - stdlib
    assert relative <= {".errors"}, "the protocol imports only its sibling errors.py, relatively"


def test_importing_the_protocol_has_no_side_effects():
    code = (
        "import os, sys, logging; before = dict(os.environ); levels = dict(logging.root.manager"
        ".loggerDict); import model_runtime.protocol; "
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items()); "
        "heavy = {'numpy', 'torch', 'faiss', 'rasterio', 'PIL'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PLUGIN_ROOT, env=env,
                   timeout=60)


def test_no_research_code_in_the_product():
    for path in RUNTIME.rglob("*.py"):
        assert "research" not in _imports(path) or path.name == "results.py", path
