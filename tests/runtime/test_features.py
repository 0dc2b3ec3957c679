"""Feature extraction is cached on disk, keyed by backbone and data."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from model_runtime import features as features_mod
from model_runtime.data.datasets import load_pairs_jsonl
from model_runtime.errors import DataError


@pytest.fixture()
def tiny_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("CACH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(path)
        caps = [f"scene number {i}", "a field"] if i else ["only one caption here"]
        lines.append(json.dumps({"image": path.name, "captions": caps, "label": f"c{i % 2}"}))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(lines) + "\n")
    return pairs


def test_extract_then_reuse_cache_and_invalidate_on_change(tiny_dataset, monkeypatch):
    ds = load_pairs_jsonl(tiny_dataset)
    first = features_mod.cached_features(ds, device="cpu", augment=True, progress=False)
    assert first.image.shape == (3, 1280) and first.image_aug.shape == (3, 3, 1280)
    assert first.text.shape == (3, 2, 384)
    assert first.n_captions.tolist() == [1, 2, 2]
    # the single caption is cycled, so both slots hold the same embedding
    np.testing.assert_allclose(first.text[0, 0], first.text[0, 1])
    # a flipped view is a different input: its features differ from the original's
    assert not np.allclose(first.image_aug[0, 0], first.image[0])

    def no_encoder(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr("model_runtime.encoders.load_encoder", no_encoder)
    again = features_mod.cached_features(ds, device="cpu", augment=False, progress=False)
    np.testing.assert_array_equal(again.image, first.image)

    # touching an image changes the key: the stale cache is not used
    img = tiny_dataset.parent / "img1.png"
    os.utime(img, (img.stat().st_atime, img.stat().st_mtime + 10))
    with pytest.raises(AssertionError, match="cache should have been used"):
        features_mod.cached_features(load_pairs_jsonl(tiny_dataset), device="cpu", progress=False)


def test_missing_image_is_named(tiny_dataset):
    (tiny_dataset.parent / "img2.png").unlink()
    with pytest.raises(DataError, match="img2.png"):
        features_mod.cached_features(load_pairs_jsonl(tiny_dataset), device="cpu", progress=False)


def test_corrupt_image_is_named(tiny_dataset):
    (tiny_dataset.parent / "img2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="img2.png"):
        features_mod.cached_features(load_pairs_jsonl(tiny_dataset), device="cpu", progress=False)
