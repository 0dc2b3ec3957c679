"""Adapting the image head to an archive: a pure function, arrays in, new heads out (NumPy; the
heads are trained with torch here, so these run in .venv-full: tests/runtime/test_numpy_heads.py
holds the torch-free mechanics). The NumPy version is held to the torch one it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from model_runtime.hashing import metrics as M
from model_runtime.hashing.adapt import adapt_image_head
from model_runtime.hashing.adapt_torch import adapt_image_head_torch
from model_runtime.hashing.protocols import train_on
from model_runtime.hashing.train import TrainConfig
from model_runtime.model.numpy_heads import from_torch
from research.hashing.synthetic import make_features

pytestmark = pytest.mark.torch

CFG = TrainConfig(epochs=10, batch_size=64, hidden=64, sim_k=5, proj_dim=24)


@pytest.fixture(scope="module")
def trained():
    feats = make_features(n_classes=10, per_class=40, image_dim=96, text_dim=48, noise=0.7, seed=4)
    seen = feats.class_id < 6
    heads = train_on("cach", feats, seen & (feats.split_duch == "train"), 32, 0, CFG)
    return feats, heads, ~seen


def _t2i(text, image, lab):
    rel = lab[:, None] == lab[None, :]
    return M.map_all(M.ranked_relevance(M.hamming_distance(text, image).astype(float), rel))


def _i2i(tanh, lab):
    rel = lab[:, None] == lab[None, :]
    np.fill_diagonal(rel, False)
    dist = M.hamming_distance(tanh, tanh).astype(float)
    np.fill_diagonal(dist, 1e9)
    return M.map_all(M.ranked_relevance(dist, rel))


def test_adaptation_returns_new_heads_and_leaves_the_input_alone(trained):
    feats, heads, unseen = trained
    heads = from_torch(heads)
    before = {k: v.copy() for k, v in heads.weights.items()}
    proj = heads.project_image_np(feats.image[unseen])
    ref = heads.encode_image_proj_np(proj)
    calls = []
    new = adapt_image_head(heads, proj, ref, steps=30, progress=lambda d, t: calls.append((d, t)))
    assert new is not heads and new.proj_dim == heads.proj_dim == 24
    for k, v in heads.weights.items():
        assert np.array_equal(v, before[k]), k  # input unchanged
    for k in before:
        same = np.array_equal(new.weights[k], before[k])
        assert same == (not k.startswith("image_head.")), k  # only the image head moved
    assert calls[-1] == (30, 30) and len(calls) == 30
    assert new.train_info["adapted_steps"] == 30
    x = feats.text[:5, 0]
    np.testing.assert_array_equal(new.encode_text_np(x), heads.encode_text_np(x))


def test_adaptation_sharpens_unseen_image_codes_and_keeps_text_aligned(trained):
    feats, heads, unseen = trained
    proj = heads.project_image_np(feats.image[unseen])
    ref = heads.encode_image_proj_np(proj)
    lab = feats.class_id[unseen]
    new = adapt_image_head(heads, proj.astype(np.float16), ref, steps=150, seed=0)
    after = new.encode_image_proj_np(proj)
    assert _i2i(after, lab) > _i2i(ref, lab) + 0.02
    # the image codes stay where the untouched text head expects them: text queries keep working
    text = heads.encode_text_np(feats.text[unseen][:, 0])
    assert _t2i(text, after, lab) > _t2i(text, ref, lab) - 0.03


@pytest.mark.parametrize("held_out", [(6, 7, 8, 9), (0, 1, 2, 3), (2, 4, 6, 8)])
def test_numpy_adaptation_matches_the_torch_version_on_held_out_classes(held_out):
    """The NumPy adaptation (the lean runtime's) against the PyTorch one it replaced, on three
    held-out-class sets: image->image and text->image mAP within .01 (both draw the same
    batches: measured equal to 4 decimals)."""
    feats = make_features(n_classes=10, per_class=40, image_dim=96, text_dim=48, noise=0.7, seed=4)
    unseen = np.isin(feats.class_id, held_out)
    heads = train_on("cach", feats, ~unseen & (feats.split_duch == "train"), 32, 0, CFG)
    proj = heads.project_image_np(feats.image[unseen])
    ref = heads.encode_image_proj_np(proj)
    lab = feats.class_id[unseen]
    text = heads.encode_text_np(feats.text[unseen][:, 0])
    ours = adapt_image_head(heads, proj, ref, steps=150, seed=0).encode_image_proj_np(proj)
    torch_ = adapt_image_head_torch(heads, proj, ref, steps=150, seed=0).encode_image_proj_np(proj)
    assert _i2i(ours, lab) > _i2i(ref, lab) + 0.02  # adaptation did something
    assert abs(_i2i(ours, lab) - _i2i(torch_, lab)) < 0.01
    assert abs(_t2i(text, ours, lab) - _t2i(text, torch_, lab)) < 0.01


def test_numpy_adaptation_matches_the_torch_version_on_a_real_held_out_set():
    """UCM with held-out set 2 (5 classes never seen in training; the shipped recipe, fewer
    epochs): the NumPy and torch adaptations on its 500 images give the same codes' mAP (measured
    on all four sets with the full recipe: equal to 4 decimals, docs/engines.md)."""
    from model_runtime.features import ucm_features
    from model_runtime.hashing.heads_io import read_metadata, shipped_heads_path
    from model_runtime.hashing.protocols import caption_index
    from research.hashing import unseen as U

    feats = ucm_features(progress=False)
    recipe = read_metadata(shipped_heads_path(64))["extra"]["train_config"]
    held = U.heldout_sets(feats.class_id)[2]
    heads = U.train_without(feats, held, 0, 64, TrainConfig(**{**recipe, "epochs": 10}))
    idx = np.flatnonzero(np.isin(feats.class_id, held))
    lab = feats.class_id[idx]
    proj = heads.project_image_np(feats.image[idx])
    ref = heads.encode_image_proj_np(proj)
    cap = heads.encode_text_np(feats.text[idx, caption_index(feats)[idx]])
    ours = adapt_image_head(heads, proj, ref, steps=300).encode_image_proj_np(proj)
    torch_ = adapt_image_head_torch(heads, proj, ref, steps=300).encode_image_proj_np(proj)
    assert _i2i(ours, lab) > _i2i(ref, lab) + 0.02
    assert abs(_i2i(ours, lab) - _i2i(torch_, lab)) < 0.01
    assert abs(_t2i(cap, ours, lab) - _t2i(cap, torch_, lab)) < 0.01
