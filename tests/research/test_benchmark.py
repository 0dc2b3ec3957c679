"""The whole ``cach results`` path on tiny synthetic data: runs, caches, renders markdown."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from model_runtime.hashing.train import TrainConfig
from research.hashing import benchmark as B
from research.hashing import report
from research.hashing.synthetic import make_features

FAST = TrainConfig(epochs=12, batch_size=64, hidden=64, sim_k=5)


@pytest.fixture(scope="module")
def feats():
    return make_features(n_classes=8, per_class=40, image_dim=96, text_dim=48, noise=0.7, seed=3)


def test_benchmark_and_report_render(feats, tmp_path):
    """The whole ``cach results`` path on tiny synthetic data: runs, caches, renders markdown."""
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
