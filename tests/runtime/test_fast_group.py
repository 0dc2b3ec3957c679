"""The fast group (``make test-fast``) runs alone and without the heavy stack: rasterio, ONNX
Runtime, torch, the tokenizer and the model package are made unimportable in a child Python, which
runs ``pytest -m fast tests/runtime``; the shared conftest must not need them to collect."""

from __future__ import annotations

import subprocess
import sys

from model_runtime.paths import PLUGIN_ROOT

BLOCKED = ("rasterio", "onnxruntime", "torch", "tokenizers", "model_runtime.model")

CHILD = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # any import of it raises ImportError
import pytest
rc = pytest.main(["-m", "fast", "tests/runtime", "-q", "-p", "no:cacheprovider"])
loaded = sorted(n for n in {BLOCKED!r} if sys.modules.get(n) is not None)
print("LOADED", loaded)
sys.exit(int(rc))
"""


def test_fast_group_runs_without_rasterio_or_the_model_package() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=PLUGIN_ROOT, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "LOADED []" in out
    passed = [line for line in out.splitlines() if " passed" in line]
    assert passed and int(passed[-1].split(" passed")[0].split()[-1]) >= 50, out[-2000:]
    assert " error" not in passed[-1] and "skipped" not in passed[-1], passed[-1]
