"""Short training runs: all three methods learn, without labels, far better than random codes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from model_runtime.errors import ConfigError, DataError
from model_runtime.hashing import experiments as E
from model_runtime.hashing.synthetic import make_features
from model_runtime.hashing.train import TrainConfig, train_heads

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
    heads = E.train_on(method, feats, feats.split_duch == "train", 32, seed=0, config=FAST)
    assert time.perf_counter() - t0 < 60
    rows = {r["direction"]: r for r in E.eval_duch(heads, feats)}
    rand = _random_map(feats)
    assert rand < 0.35
    for d in ("i2t", "t2i"):
        assert rows[d]["map20_duch"] > rand + 0.3, (method, d, rows[d], rand)
    assert heads.train_info["seconds"] > 0 and np.isfinite(heads.train_info["final_loss"])


def test_training_is_deterministic(feats):
    mask = feats.split_duch == "train"
    cfg = TrainConfig(epochs=2, batch_size=64, hidden=32, sim_k=5)
    a = E.train_on("cach", feats, mask, 16, seed=5, config=cfg)
    b = E.train_on("cach", feats, mask, 16, seed=5, config=cfg)
    x = feats.image[:10]
    np.testing.assert_array_equal(a.encode_image_np(x), b.encode_image_np(x))


def test_instance_and_unseen_protocols_run(feats):
    seen, unseen = E.unseen_split(feats.class_id, n_unseen=3, seed=0)
    assert len(seen) == 5 and not set(seen) & set(unseen)
    mask = np.isin(feats.class_id, seen) & (feats.split_duch == "train")
    heads = E.train_on("cach", feats, mask, 32, seed=0, config=FAST)
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


def test_benchmark_and_report_render(feats, tmp_path):
    """The whole ``cach results`` path on tiny synthetic data: runs, caches, renders markdown."""
    import dataclasses

    from model_runtime.hashing import benchmark as B
    from model_runtime.hashing import report

    tiny = dataclasses.replace(FAST, epochs=2, hidden=16)
    bench = B.BenchConfig(
        bits=(16,),
        seeds=(0, 1),
        ablations=("similarity",),
        instance_methods=("cach",),
        unseen_methods=("cach",),
        n_unseen=3,
        train=tiny,
    )
    cache = B.RunCache(tmp_path / "runs", B.features_tag(feats))
    names = [f"class{c}" for c in range(8)]

    def enc(texts):
        return np.random.default_rng(len(texts)).normal(size=(len(texts), 48)).astype(np.float32)

    res = B.run_benchmark(feats, cache, bench, names, enc, report=lambda m: None)
    assert len(res["main"]) == 3 * 2 and len(res["ablations"]) == 2
    n_files = len(list((tmp_path / "runs").glob("*.json")))
    again = B.run_benchmark(feats, cache, bench, names, enc, report=lambda m: None)
    assert len(list((tmp_path / "runs").glob("*.json"))) == n_files  # all runs came from the cache
    assert again["main"][0]["rows"] == res["main"][0]["rows"]
    shipped = {
        "eval": {"16": res["main"][0]["rows"]},
        "files": {"x.safetensors": 1000},
        "seed": 0,
        "train_config": dataclasses.asdict(tiny),
        "hidden": 16,
        "train_seconds": 1.0,
    }
    md = report.results_markdown(res, shipped)
    for title in (
        "## Headline",
        "## Ablations",
        "## Instance-level",
        "## Unseen classes",
        "CACH − DUCH",
        "DUCH (published",
    ):
        assert title in md
    assert "effnetlite0-minilm" in report.model_card(shipped)


def test_preservation_sharpening_and_late_quantization_train(feats):
    import dataclasses

    cfg = dataclasses.replace(FAST, w_preserve=5.0, beta_final=3.0, quant_final=5.0)
    heads = E.train_on("cach", feats, feats.split_duch == "train", 32, seed=0, config=cfg)
    assert heads.beta == 1.0  # folded into the last layers: shipped heads stay plain tanh
    rows = {r["direction"]: r for r in E.eval_duch(heads, feats)}
    assert rows["i2t"]["map20_duch"] > _random_map(feats) + 0.3
    inst = E.eval_instance(heads, feats, "test") if "test" in set(feats.split_official) else None
    if inst is not None:
        assert set(inst) == {"codes", "float", "rerank"}
