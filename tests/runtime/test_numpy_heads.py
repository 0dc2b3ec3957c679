"""Hash heads without torch (the lean runtime): the shipped files read into NumPy, the image
head's backward pass against finite differences, Adam against its formula, adaptation's
determinism, cancellation and input checks, and files written here read back as written."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from model_runtime.errors import CancelledError, DataError, ModelMismatchError
from model_runtime.hashing.adapt import Adam, AdaptConfig, adapt_image_head, loss_and_grads
from model_runtime.hashing.heads_io import read_metadata, shipped_heads_path
from model_runtime.model.numpy_heads import (
    NumpyHeads,
    erf,
    load_numpy_heads,
    mlp_forward,
    save_numpy_heads,
)

BITS, HIDDEN, PROJ = 16, 12, 6


def _random_heads(seed: int = 0) -> NumpyHeads:
    rng = np.random.default_rng(seed)
    w = {}
    for prefix, width in (("image_head", PROJ), ("text_head", 5)):
        w[f"{prefix}.0.weight"] = rng.normal(0, 0.5, (HIDDEN, width))
        w[f"{prefix}.0.bias"] = rng.normal(0, 0.1, HIDDEN)
        w[f"{prefix}.1.weight"] = 1 + rng.normal(0, 0.1, HIDDEN)
        w[f"{prefix}.1.bias"] = rng.normal(0, 0.1, HIDDEN)
        w[f"{prefix}.4.weight"] = rng.normal(0, 0.5, (BITS, HIDDEN))
        w[f"{prefix}.4.bias"] = rng.normal(0, 0.1, BITS)
    w["image_proj.mean"] = rng.normal(0, 0.1, 9)
    w["image_proj.matrix"] = rng.normal(0, 1, (9, PROJ))
    meta = {"bits": BITS, "image_dim": 9, "text_dim": 5, "hidden": HIDDEN, "proj_dim": PROJ,
            "method": "cach", "backbone": "effnetlite0-minilm", "extra": {}}
    return NumpyHeads({k: v.astype(np.float32) for k, v in w.items()}, meta)


def _batch(n: int = 40, seed: int = 1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, PROJ)).astype(np.float32),
            np.tanh(rng.standard_normal((n, BITS))).astype(np.float32))


def test_erf_matches_the_standard_library():
    import math

    x = np.linspace(-5, 5, 2001)
    assert np.abs(erf(x) - np.array([math.erf(v) for v in x])).max() < 2e-7


def test_the_backward_pass_matches_finite_differences():
    heads = _random_heads()
    w = {k: v.astype(np.float64) for k, v in heads.weights.items()}
    p, ref = _batch()
    cfg = AdaptConfig(neighbour=0.5, k=5)
    _, grads = loss_and_grads(w, p.astype(np.float64), ref.astype(np.float64), cfg)
    rng = np.random.default_rng(2)
    for name, grad in grads.items():
        for _ in range(4):
            i = tuple(rng.integers(0, s) for s in grad.shape)
            old = w[name][i]
            w[name][i] = old + 1e-6
            up = loss_and_grads(w, p.astype(np.float64), ref.astype(np.float64), cfg)[0]
            w[name][i] = old - 1e-6
            down = loss_and_grads(w, p.astype(np.float64), ref.astype(np.float64), cfg)[0]
            w[name][i] = old
            assert abs((up - down) / 2e-6 - grad[i]) < 1e-6 + 1e-4 * abs(grad[i]), (name, i)


def test_adam_follows_its_formula():
    param = {"x": np.array([1.0, -2.0], np.float32)}
    opt = Adam(param, lr=0.1)
    g = np.array([0.5, -0.25], np.float32)
    opt.step({"x": g})
    # first step: m_hat = g, v_hat = g^2 -> the update is lr * sign(g) (up to eps)
    np.testing.assert_allclose(param["x"], [0.9, -1.9], atol=1e-6)
    opt.step({"x": g})
    np.testing.assert_allclose(param["x"], [0.8, -1.8], atol=1e-6)


def test_adaptation_moves_only_the_image_head_deterministically():
    heads = _random_heads()
    p, _ = _batch(60)
    ref = heads.encode_image_proj_np(p)
    calls = []
    a = adapt_image_head(heads, p, ref, steps=12, seed=3, progress=lambda d, t: calls.append(d))
    b = adapt_image_head(heads, p, ref, steps=12, seed=3)
    assert calls == list(range(1, 13)) and a.train_info["adapted_steps"] == 12
    for k, v in heads.weights.items():
        assert np.array_equal(a.weights[k], b.weights[k]), k  # same seed, same heads
        assert np.array_equal(a.weights[k], v) == (not k.startswith("image_head.")), k
    assert not np.array_equal(a.encode_image_proj_np(p), ref)


def test_adaptation_is_cancellable_and_checks_its_inputs():
    heads = _random_heads()
    p, _ = _batch(60)
    ref = heads.encode_image_proj_np(p)
    stop = threading.Event()
    with pytest.raises(CancelledError):
        adapt_image_head(heads, p, ref, steps=50, cancel=stop,
                         progress=lambda d, t: d == 3 and stop.set())
    with pytest.raises(DataError, match="projections"):
        adapt_image_head(heads, p[:, :5], ref)
    with pytest.raises(DataError, match="reference"):
        adapt_image_head(heads, p, ref[:, :8])
    with pytest.raises(DataError, match="at least"):
        adapt_image_head(heads, p[:3], ref[:3])
    bad = p.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        adapt_image_head(heads, bad, ref)
    assert dataclasses.asdict(AdaptConfig())["steps"] > 0


def test_written_heads_read_back_with_their_metadata(tmp_path):
    heads = _random_heads()
    path = save_numpy_heads(heads, tmp_path / "h.safetensors", extra={"adapted_from": "abc"})
    meta = read_metadata(path)
    assert (meta["bits"], meta["proj_dim"], meta["extra"]) == (BITS, PROJ, {"adapted_from": "abc"})
    back = load_numpy_heads(path, expect_backbone="effnetlite0-minilm", expect_bits=BITS)
    p, _ = _batch()
    # fp16 on disk: outputs agree to fp16 rounding of the weights
    np.testing.assert_allclose(back.encode_image_proj_np(p), heads.encode_image_proj_np(p),
                               atol=2e-2)
    with pytest.raises(ModelMismatchError):
        load_numpy_heads(path, expect_bits=64)


@pytest.mark.parametrize("bits", [16, 32, 64, 128])
def test_the_shipped_heads_load_without_torch(bits):
    heads = load_numpy_heads(shipped_heads_path(bits))
    feats = np.random.default_rng(0).standard_normal((3, heads.image_dim)).astype(np.float32)
    out = heads.encode_image_np(feats)
    assert out.shape == (3, bits) and np.all(np.abs(out) < 1)
    # the heads' first layer is what mlp_forward reads: a wrong key would raise, not pass
    assert mlp_forward(heads.weights, "text_head", np.ones((1, heads.text_dim), np.float32))[0].shape == (1, bits)


@pytest.mark.torch
def test_numpy_heads_compute_what_the_torch_heads_compute():
    from model_runtime.hashing.heads_io import load_heads

    path = shipped_heads_path(64)
    ours, theirs = load_numpy_heads(path), load_heads(path)
    rng = np.random.default_rng(0)
    img = rng.standard_normal((20, ours.image_dim)).astype(np.float32)
    txt = rng.standard_normal((20, ours.text_dim)).astype(np.float32)
    np.testing.assert_allclose(ours.encode_image_np(img), theirs.encode_image_np(img), atol=2e-6)
    np.testing.assert_allclose(ours.encode_text_np(txt), theirs.encode_text_np(txt), atol=2e-6)
    np.testing.assert_allclose(ours.project_image_np(img), theirs.project_image_np(img), atol=2e-5)
