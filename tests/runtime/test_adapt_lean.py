"""*Adapt to this archive* in the lean runtime: ONNX Runtime graphs built without torch, the image
head fine-tuned in NumPy, codes re-hashed from the stored projections, and search with the adapted
heads; nothing here imports torch (it runs in .venv, which has none)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from model_runtime.codes import pack
from model_runtime.index.store import Store
from model_runtime.model.numpy_heads import load_numpy_heads, random_heads, save_numpy_heads
from model_runtime.paths import SAMPLES_DIR
from model_runtime.pipeline import Pipeline
from model_runtime.protocol import AdaptRequest, IndexRequest, SearchRequest


@pytest.mark.parametrize("image_input", ["projection", "features"])
def test_adapt_runs_without_torch_and_the_index_keeps_working(tmp_path, monkeypatch, image_input):
    """Heads whose image head reads the features (the shipped 64- and 128-bit ones) are folded
    onto the stored projection first; the adapted heads read the projection."""
    monkeypatch.setenv("CACH_CACHE", str(tmp_path / "cache"))
    heads = save_numpy_heads(random_heads(64, proj_dim=32, seed=1, image_input=image_input),
                             tmp_path / "heads" / "cach-effnetlite0-minilm-64.safetensors")
    samples = tmp_path / "samples"
    samples.mkdir()
    for path in sorted(SAMPLES_DIR.glob("*.tif"))[:2]:
        shutil.copy2(path, samples / path.name)
    idx = tmp_path / "idx"
    built = Pipeline(heads=heads, backend="onnx", device="cpu")
    assert built.index(IndexRequest(str(idx), paths=(str(samples),))).tiles > 8

    fresh = Pipeline(backend="onnx", device="cpu")
    summary = fresh.adapt(AdaptRequest(str(idx), steps=20))
    store = Store(idx)
    try:
        rows = store.conn.execute("SELECT code, proj FROM tiles ORDER BY id").fetchall()
        assert store.meta()["model"]["heads_sha"] == summary["heads_sha"]
    finally:
        store.close()
    adapted = load_numpy_heads(idx / "heads" / summary["heads"])
    assert adapted.image_input == "projection"
    assert load_numpy_heads(heads).image_input == image_input
    proj = np.stack([np.frombuffer(p, np.float16).astype(np.float32) for _, p in rows])
    codes = np.stack([np.frombuffer(c, np.uint8) for c, _ in rows])
    assert np.array_equal(codes, pack(adapted.encode_image_proj_np(proj)))
    result = fresh.search(SearchRequest(str(idx), text="a field", k=3))
    assert result.model["heads_sha"] == summary["heads_sha"] and len(result.results) == 3


def test_the_lean_paths_import_no_torch():
    code = ("import sys; import model_runtime.index.adapt, model_runtime.hashing.adapt, "
            "model_runtime.commands.eval, model_runtime.evaluation.dataset_outputs, "
            "model_runtime.hashing.protocols; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
