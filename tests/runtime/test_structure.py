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


#: the protocol package's own modules, which its modules may import relatively (``.name``)
PROTOCOL_MODULES = sorted(p.name for p in (RUNTIME / "protocol").glob("*.py"))


@pytest.mark.parametrize(
    "module", [f"protocol/{name}" for name in PROTOCOL_MODULES] + ["errors.py"]
)
def test_protocol_imports_only_the_standard_library(module):
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    imported = _imports(RUNTIME / module)
    relative = {n for n in imported if n.startswith(".")}
    assert imported - relative <= stdlib, imported - relative - stdlib
    # ``_imports`` keeps a relative import's dots and first name: ``..errors`` is the sibling
    # errors.py, ``.`` (``from . import x``) or ``.codes`` a module of the protocol package
    own = {"."} | {"." + Path(name).stem for name in PROTOCOL_MODULES}
    allowed = {"..errors"} | own if module.startswith("protocol/") else set()
    assert relative <= allowed, "the protocol imports only its own modules and errors.py"


def test_the_protocol_is_a_package_of_small_modules():
    assert "__init__.py" in PROTOCOL_MODULES and len(PROTOCOL_MODULES) > 1
    for name in PROTOCOL_MODULES:
        lines = (RUNTIME / "protocol" / name).read_text(encoding="utf-8").count("\n")
        assert lines < 600, f"protocol/{name} has {lines} lines"


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


# --- no import cycles ----------------------------------------------------------------------------
#: the packages held to have no import cycle (a package's ``__init__`` is a module of its own)
CYCLE_FREE = ("model_runtime", "cach_qgis")
#: generated code left out of the import graph
GENERATED = {"cach_qgis/resources_rc.py"}
#: import cycles allowed to remain, each a sorted tuple of module names with the reason it stays;
#: empty: every module can be imported, and understood, after the ones it imports.
#: Imports by a computed name (``importlib.import_module``) are not edges here: ``cli`` loads
#: ``commands.<name>``, ``model.factory`` its backends; none of those modules imports its loader.
#: The remote-store factories are edges (:func:`_store_factory_edges`).
ALLOW_CYCLES: dict[tuple[str, ...], str] = {}


def _module_files() -> dict[str, Path]:
    files = {}
    for package in CYCLE_FREE:
        for path in sorted((PLUGIN_ROOT / package).rglob("*.py")):
            if path.relative_to(PLUGIN_ROOT).as_posix() in GENERATED:
                continue
            parts = path.relative_to(PLUGIN_ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (lazy imports in functions
    too), each resolved to the deepest module that exists: ``from a import b`` names ``a.b``
    when that is a module, else ``a``."""

    def deepest(dotted: str) -> str:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {deepest(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            found |= {deepest(f"{base}.{alias.name}") if f"{base}.{alias.name}" in known
                      else deepest(base) for alias in node.names}
    return found - {"", name}


def _store_factory_edges() -> dict[str, set[str]]:
    """``raster.stores`` imports each store's module by the name in ``STORE_FACTORIES``."""
    from model_runtime.raster.stores import STORE_FACTORIES

    return {"model_runtime.raster.stores": {module for module, _ in STORE_FACTORIES.values()}}


def _import_graph() -> dict[str, set[str]]:
    files = _module_files()
    graph = {name: _imported_modules(name, path, set(files)) for name, path in files.items()}
    for name, modules in _store_factory_edges().items():
        graph[name] |= modules
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[tuple[str, ...]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, edges = work[-1]
            child = next((w for w in edges if w not in index or w in stack), None)
            if child is not None and child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(graph[child]))))
                continue
            if child is not None:
                low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                cut = stack.index(node)
                component, stack[cut:] = tuple(sorted(stack[cut:])), []
                if len(component) > 1:
                    out.append(component)
    return out


def test_cycle_finder_finds_a_cycle_through_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert _cycles(graph) == [("a", "b", "c")]


def test_import_graph_sees_lazy_and_relative_imports(tmp_path):
    module = tmp_path / "x.py"
    module.write_text("from ..errors import DataError\nfrom . import query\n"
                      "def f():\n    import model_runtime.index.store.part\n")
    known = {"model_runtime.errors", "model_runtime.index.query", "model_runtime.index.store"}
    assert _imported_modules("model_runtime.index.x", module, known) == known
    graph = _import_graph()
    assert "model_runtime.raster.gdal_open" in graph["model_runtime.raster.tiling"]
    assert "model_runtime.raster.remote" in graph["model_runtime.raster.stores"]
    assert "model_runtime.services.captions" in graph["model_runtime.commands.caption_bank"]


def test_no_import_cycle_in_the_runtime_or_the_plugin():
    """Counting imports inside functions: a cycle dodged by a lazy import is still a cycle."""
    cycles = _cycles(_import_graph())
    assert [c for c in cycles if c not in ALLOW_CYCLES] == [], "import cycles (move the code)"
    assert [c for c in ALLOW_CYCLES if c not in cycles] == [], "stale ALLOW_CYCLES entries"
