"""Adapting the image head to an archive: a pure function, arrays in, new heads out."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

from model_runtime.errors import CancelledError, DataError
from model_runtime.hashing import metrics as M
from model_runtime.hashing.adapt import AdaptConfig, adapt_image_head
from model_runtime.hashing.protocols import train_on
from model_runtime.hashing.train import TrainConfig
from research.hashing.synthetic import make_features

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
    before = {k: v.clone() for k, v in heads.state_dict().items()}
    proj = heads.project_image_np(feats.image[unseen])
    ref = heads.encode_image_proj_np(proj)
    calls = []
    new = adapt_image_head(heads, proj, ref, steps=30, progress=lambda d, t: calls.append((d, t)))
    assert new is not heads and new.proj_dim == heads.proj_dim == 24
    for k, v in heads.state_dict().items():
        assert torch.equal(v, before[k]), k  # input unchanged
    after = new.state_dict()
    for k in before:
        same = torch.equal(after[k], before[k])
        assert same == (not k.startswith("image_head.")), k  # only the image head moved
    assert calls[-1] == (30, 30) and len(calls) == 30
    assert new.train_info["adapted_steps"] == 30 and not new.training
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


def test_adaptation_is_deterministic_and_cancellable(trained):
    feats, heads, unseen = trained
    proj = heads.project_image_np(feats.image[unseen])
    ref = heads.encode_image_proj_np(proj)
    a = adapt_image_head(heads, proj, ref, steps=5, seed=3).encode_image_proj_np(proj)
    b = adapt_image_head(heads, proj, ref, steps=5, seed=3).encode_image_proj_np(proj)
    np.testing.assert_array_equal(a, b)
    stop = threading.Event()

    def progress(done, total):
        if done == 3:
            stop.set()

    with pytest.raises(CancelledError):
        adapt_image_head(heads, proj, ref, steps=50, progress=progress, cancel=stop)


def test_adaptation_rejects_bad_inputs(trained):
    feats, heads, unseen = trained
    proj = heads.project_image_np(feats.image[unseen])
    ref = heads.encode_image_proj_np(proj)
    with pytest.raises(DataError, match="projections"):
        adapt_image_head(heads, proj[:, :5], ref)
    with pytest.raises(DataError, match="reference"):
        adapt_image_head(heads, proj, ref[:, :8])
    with pytest.raises(DataError, match="at least"):
        adapt_image_head(heads, proj[:3], ref[:3])
    bad = proj.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        adapt_image_head(heads, bad, ref)
    assert dataclasses.asdict(AdaptConfig())["steps"] > 0
