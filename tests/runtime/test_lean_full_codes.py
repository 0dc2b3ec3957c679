"""Issue 15: an index made by the lean runtime holds the codes a full-runtime index holds.

The same rasters (the bundled samples and two UC Merced images of every class) are indexed twice
through the real ``cach index`` CLI, each run in its own empty graph cache and home:

- lean: graphs built without torch (``CACH_GRAPH_BUILDER=numpy``), run by a Python that has no
  torch: the repository's ``.venv`` when it is the lean runtime (as `make test` and CI build it),
  else this Python with every import of torch, open_clip, transformers or triton refused;
- full: this Python (``.venv-full``), graphs exported with torch (``CACH_GRAPH_BUILDER=torch``).

Both on ONNX Runtime, fp32, the CPU default. The stored codes are compared tile by tile (keyed by
the raster's path under its folder, the window and the scale): every bit must agree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_runtime.index.store import Store
from model_runtime.paths import PLUGIN_ROOT, SAMPLES_DIR, data_root

#: UC Merced images per class taken (21 classes)
UCM_PER_CLASS = 2
#: top-level modules the lean runtime lacks; the wrapped lean run cannot import them
HEAVY_MODULES = ("torch", "torchvision", "open_clip", "transformers", "sentence_transformers",
                 "triton")
#: runs the CLI with the heavy modules hidden, as if they were not installed: the path finder
#: does not see them (``import torch`` fails, ``find_spec("torch")`` is None)
NO_TORCH_WRAPPER = f"""
import importlib.machinery as m, runpy, sys
class _Lean(m.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition('.')[0] in {HEAVY_MODULES!r}:
            return None
        return m.PathFinder.find_spec(name, path, target)
sys.meta_path[:] = [_Lean if f is m.PathFinder else f for f in sys.meta_path]
runpy.run_module('model_runtime', run_name='__main__', alter_sys=True)
"""


def _has_torch(python: str) -> bool:
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
    return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0


def _lean_command() -> tuple[list[str], str]:
    """The command that runs the lean ``cach`` and how it is torch-free."""
    lean = PLUGIN_ROOT / ".venv" / "bin" / "python"
    if lean.is_file() and not _has_torch(str(lean)):
        return [str(lean), "-m", "model_runtime"], f"{lean} (no torch installed)"
    return [sys.executable, "-c", NO_TORCH_WRAPPER], f"{sys.executable} with torch refused"


def _rasters(folder: Path) -> Path:
    ucm = data_root() / "ucm" / "images"
    if not ucm.is_dir():
        pytest.skip(f"UC Merced images not found at {ucm} (set CACH_DATA)")
    (folder / "samples").mkdir(parents=True)
    (folder / "ucm").mkdir()
    for tif in sorted(SAMPLES_DIR.glob("*.tif")):
        shutil.copy2(tif, folder / "samples")
    for cls in sorted(p for p in ucm.iterdir() if p.is_dir()):
        for image in sorted(cls.iterdir())[:UCM_PER_CLASS]:
            shutil.copy2(image, folder / "ucm")
    return folder


def _index(tmp: Path, name: str, command: list[str], builder: str) -> tuple[Path, dict]:
    """Index a fresh copy of the rasters with ``command`` and ``builder``; (index, graph
    manifest of the image graph it built)."""
    root = tmp / name
    rasters = _rasters(root / "rasters")
    home, graphs, index = root / "home", root / "graphs", root / "index"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "CACH_CACHE": str(root / "cache"),
           "CACH_GRAPH_CACHE": str(graphs), "CACH_GRAPH_BUILDER": builder}
    for name_ in ("CACH_BACKEND", "CACH_PRECISION", "CACH_DEVICE", "PYTHONPATH"):
        env.pop(name_, None)
    done = subprocess.run([*command, "index", str(rasters), "--index", str(index),
                           "--backend", "onnx", "--precision", "fp32", "--device", "cpu",
                           "--json"], env=env, cwd=PLUGIN_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
    manifests = list(graphs.glob("*-image-*/manifest.json"))
    assert len(manifests) == 1, f"{name}: image graphs built: {manifests}"
    return index, json.loads(manifests[0].read_text())


def _codes(index: Path) -> dict[tuple, bytes]:
    """{(raster path under its folder, window, scale): packed code} of every tile."""
    store = Store(index)
    try:
        meta = store.meta()
        assert meta["complete"] is True
        ids, codes = store.all_codes(meta["model"]["bits"] // 8)
        rows = store.tiles(ids, geometry=False)
    finally:
        store.close()
    base = index.parent / "rasters"
    return {(Path(rows[int(i)].source).relative_to(base).as_posix(), rows[int(i)].window,
             rows[int(i)].scale): code.tobytes() for i, code in zip(ids, codes, strict=True)}


def test_a_lean_index_holds_the_codes_of_a_full_index(tmp_path):
    pytest.importorskip("torch")  # the full runtime's torch export (this runs in .venv-full)
    lean_cmd, how = _lean_command()
    lean, lean_graph = _index(tmp_path, "lean", lean_cmd, "numpy")
    full, full_graph = _index(tmp_path, "full", [sys.executable, "-m", "model_runtime"], "torch")
    assert (lean_graph["builder"], full_graph["builder"]) == ("numpy", "torch")
    assert lean_graph["key"] == full_graph["key"]  # same weights, heads, engine: same cache key
    ours, theirs = _codes(lean), _codes(full)
    assert ours.keys() == theirs.keys() and len(ours) >= 60, (len(ours), len(theirs))
    keys = sorted(ours)
    a = np.unpackbits(np.frombuffer(b"".join(ours[k] for k in keys), np.uint8))
    b = np.unpackbits(np.frombuffer(b"".join(theirs[k] for k in keys), np.uint8))
    differing = int((a != b).sum())
    tiles = sorted({k[0] for k in keys if ours[k] != theirs[k]})
    assert differing == 0, (f"{differing} of {a.size} bits differ over {len(keys)} tiles "
                            f"(lean: {how}); rasters with differing tiles: {tiles}")
