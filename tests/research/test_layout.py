"""Research tooling stays out of the product: model_runtime never imports it, nor matplotlib."""

from __future__ import annotations

import ast
import subprocess
import sys

from model_runtime.paths import PLUGIN_ROOT

FORBIDDEN = {"research", "matplotlib"}


def test_model_runtime_never_imports_research_or_matplotlib():
    bad = []
    for path in sorted((PLUGIN_ROOT / "model_runtime").rglob("*.py")):
        if path.name == "results.py" and path.parent.name == "commands":
            continue  # the documented bridge: imports research.results by name when present
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not bad, bad
    runtime_reqs = (PLUGIN_ROOT / "requirements" / "runtime.txt").read_text()
    assert "matplotlib" not in runtime_reqs
    assert "matplotlib" in (PLUGIN_ROOT / "requirements" / "research.txt").read_text()


def _cli(args, cwd):
    code = "import sys; from model_runtime.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_cach_results_from_checkout_loads_research(tmp_path):
    proc = _cli(["results", "--help"], tmp_path)  # cwd outside the checkout on purpose
    assert proc.returncode == 0, proc.stderr
    assert "--no-ship" in proc.stdout


def test_cach_results_without_research_says_how_to_run_it(tmp_path):
    """A copy of the runtime without research/ (as in the plugin zip) gives a clear message."""
    import shutil

    shutil.copytree(PLUGIN_ROOT / "model_runtime", tmp_path / "model_runtime",
                    ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from model_runtime.cli import main; "
         "sys.exit(main(['results', '--seeds', '0']))"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), "PYTHONSAFEPATH": "1"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "make results" in proc.stderr and "repository" in proc.stderr
