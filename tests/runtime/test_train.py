"""Short training runs: all three methods learn, without labels, far better than random codes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from model_runtime.errors import ConfigError, DataError
from model_runtime.hashing import protocols as P
from model_runtime.hashing.train import TrainConfig, train_heads
from research.hashing import protocols as E
from research.hashing.synthetic import make_features

FAST = TrainConfig(epochs=12, batch_size=64, hidden=64, sim_k=5)


@pytest.fixture(scope="module")
def feats():
    return make_features(n_classes=8, per_class=40, image_dim=96, text_dim=48, noise=0.7, seed=3)


def _random_map(feats, bits=32, seed=0):
    rng = np.random.default_rng(seed)
    q = feats.class_id[feats.split_duch == "query"]
    db = feats.class_id[feats.split_duch == "db"]
    from model_runtime.hashing import metrics as M

    dist = M.hamming_distance(rng.normal(size=(len(q), bits)), rng.normal(size=(len(db), bits)))
    return M.map_at_k_duch(M.ranked_relevance(dist, M.relevance(q, db)))


@pytest.mark.parametrize("method", ["cach", "duch", "djsrh"])
def test_training_beats_random(feats, method):
    t0 = time.perf_counter()
    heads = P.train_on(method, feats, feats.split_duch == "train", 32, seed=0, config=FAST)
    assert time.perf_counter() - t0 < 60
    rows = {r["direction"]: r for r in P.eval_duch(heads, feats)}
    rand = _random_map(feats)
    assert rand < 0.35
    for d in ("i2t", "t2i"):
        assert rows[d]["map20_duch"] > rand + 0.3, (method, d, rows[d], rand)
    assert heads.train_info["seconds"] > 0 and np.isfinite(heads.train_info["final_loss"])


def test_training_is_deterministic(feats):
    mask = feats.split_duch == "train"
    cfg = TrainConfig(epochs=2, batch_size=64, hidden=32, sim_k=5)
    a = P.train_on("cach", feats, mask, 16, seed=5, config=cfg)
    b = P.train_on("cach", feats, mask, 16, seed=5, config=cfg)
    x = feats.image[:10]
    np.testing.assert_array_equal(a.encode_image_np(x), b.encode_image_np(x))


def test_instance_and_unseen_protocols_run(feats):
    seen, unseen = E.unseen_split(feats.class_id, n_unseen=3, seed=0)
    assert len(seen) == 5 and not set(seen) & set(unseen)
    mask = np.isin(feats.class_id, seen) & (feats.split_duch == "train")
    heads = P.train_on("cach", feats, mask, 32, seed=0, config=FAST)
    out = E.eval_unseen(heads, feats, unseen, {"prompt": feats.text[:3, 0]})
    assert 0 < out["i2i_codes"] <= 1 and 0 < out["i2i_frozen"] <= 1
    assert {"i2i_float", "i2i_rerank", "t2i_prompt_codes", "t2i_captions_float"} <= set(out)
    inst = E.eval_instance(heads, feats)
    assert set(inst) == {"codes", "float", "rerank"}
    assert 0 <= inst["codes"]["mR"] <= 100 and inst["float"]["t2i_r10"] >= inst["float"]["t2i_r1"]


def test_bad_inputs():
    x = np.zeros((10, 8), np.float32)
    with pytest.raises(ConfigError, match="unknown method"):
        train_heads("foo", x, x, 16)
    with pytest.raises(DataError, match="text features"):
        train_heads("duch", x, np.zeros((9, 8), np.float32), 16)
    with pytest.raises(ConfigError, match="unknown CACH loss terms"):
        TrainConfig(disable=("nonsense",))


def test_preservation_sharpening_and_late_quantization_train(feats):
    import dataclasses

    cfg = dataclasses.replace(FAST, w_preserve=5.0, beta_final=3.0, quant_final=5.0)
    heads = P.train_on("cach", feats, feats.split_duch == "train", 32, seed=0, config=cfg)
    assert heads.beta == 1.0  # folded into the last layers: shipped heads stay plain tanh
    rows = {r["direction"]: r for r in P.eval_duch(heads, feats)}
    assert rows["i2t"]["map20_duch"] > _random_map(feats) + 0.3
    inst = E.eval_instance(heads, feats, "test") if "test" in set(feats.split_official) else None
    if inst is not None:
        assert set(inst) == {"codes", "float", "rerank"}
