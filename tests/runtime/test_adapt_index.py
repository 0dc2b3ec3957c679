"""Adapting an index to its archive: the image head is fine-tuned on the stored projections,
saved in the index, every code re-hashed without the encoder; search, captions and incremental
runs then use the adapted heads, and adapting again is allowed. Real encoder (torch backend),
random heads with a projection (the mechanics, not the quality: research/ measures that)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from model_runtime.codes import pack
from model_runtime.hashing.heads_io import load_heads, save_heads
from model_runtime.hashing.model import HashHeads
from model_runtime.index.store import Store
from model_runtime.paths import SAMPLES_DIR
from model_runtime.pipeline import Pipeline
from model_runtime.protocol import AdaptRequest, IndexRequest, SearchRequest


@pytest.fixture(scope="module")
def heads_with_projection(tmp_path_factory):
    torch.manual_seed(0)
    heads = HashHeads(bits=64, proj_dim=32)
    with torch.no_grad():
        heads.image_proj.matrix.normal_(0, 1.0)
    path = tmp_path_factory.mktemp("heads") / "cach-effnetlite0-minilm-64.safetensors"
    return save_heads(heads, path, "cach", "effnetlite0-minilm")


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("samples")
    for path in sorted(SAMPLES_DIR.glob("*.tif"))[:2]:
        shutil.copy2(path, folder / path.name)
    return folder


def _stored(idx):
    store = Store(idx)
    try:
        rows = store.conn.execute("SELECT code, proj FROM tiles ORDER BY id").fetchall()
        return store.meta()["model"], rows
    finally:
        store.close()


def test_adapt_rehashes_from_projections_and_the_index_keeps_working(
        heads_with_projection, samples, tmp_path, monkeypatch):
    monkeypatch.setenv("CACH_CACHE", str(tmp_path / "cache"))
    idx = tmp_path / "idx"
    built = Pipeline(heads=heads_with_projection, backend="torch", device="cpu")
    assert built.index(IndexRequest(str(idx), paths=(str(samples),))).tiles > 8
    before, rows = _stored(idx)
    assert all(proj is not None for _, proj in rows)

    events = []
    summary = Pipeline(backend="torch", device="cpu").adapt(AdaptRequest(str(idx), steps=20),
                                                            progress=events.append)
    after, new_rows = _stored(idx)
    assert after["heads_sha"] == summary["heads_sha"] != before["heads_sha"]
    assert summary["adapted_from"] == before["heads_sha"]
    # the adaptation's steps are reported, then the adapted model's graphs are built
    assert [e["stage"] for e in events if e["stage"] == "adapt"][-1:] == ["adapt"]
    adapted_file = idx / "heads" / summary["heads"]
    adapted = load_heads(adapted_file)
    proj = np.stack([np.frombuffer(p, np.float16).astype(np.float32) for _, p in new_rows])
    with torch.no_grad():
        expected = pack(adapted.encode_image_proj(torch.from_numpy(proj)).numpy())
    assert np.array_equal(np.stack([np.frombuffer(c, np.uint8) for c, _ in new_rows]), expected)

    # a fresh runtime (no --heads) finds the index's own heads: search and captions work
    fresh = Pipeline(backend="torch", device="cpu")
    result = fresh.search(SearchRequest(str(idx), text="a field", k=3))
    assert result.model["heads_sha"] == summary["heads_sha"] and len(result.results) == 3
    assert not result.index["outdated_model"]
    # captions: the adapted heads keep their text head, so they reuse its caption-bank codes
    from model_runtime.model.heads import read_heads
    from model_runtime.services.captions import codes_file_key

    assert codes_file_key(read_heads(adapted_file)) == codes_file_key(
        read_heads(heads_with_projection))
    # an incremental run encodes new files with the adapted heads
    extra = sorted(SAMPLES_DIR.glob("*.tif"))[2]
    shutil.copy2(extra, samples / extra.name)
    grown = fresh.index(IndexRequest(str(idx), paths=(str(samples),)))
    assert grown.added == 1 and _stored(idx)[0]["heads_sha"] == summary["heads_sha"]
    # adapting again starts from the original heads again
    again = fresh.adapt(AdaptRequest(str(idx), steps=10))
    assert again["adapted_from"] == before["heads_sha"] and again["heads_sha"] != summary[
        "heads_sha"]
    assert fresh.search(SearchRequest(str(idx), text="a field", k=2)).model[
        "heads_sha"] == again["heads_sha"]
