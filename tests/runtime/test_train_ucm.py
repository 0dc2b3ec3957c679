"""A short CACH run on a subset of the real UCM training split beats random ranking by far."""

from __future__ import annotations

import numpy as np

from model_runtime.features import ucm_features
from model_runtime.hashing import metrics as M
from model_runtime.hashing import protocols as E
from model_runtime.hashing.train import TrainConfig


def test_short_cach_run_on_ucm_subset_beats_random():
    feats = ucm_features(progress=False)  # plain view; extracted once and cached
    rng = np.random.default_rng(0)
    train = np.flatnonzero(feats.split_duch == "train")
    subset = np.zeros(len(feats.image), bool)
    subset[rng.choice(train, 300, replace=False)] = True  # 300 of the 1,050 training images
    heads = E.train_on("cach", feats, subset, 16, seed=0,
                       config=TrainConfig(epochs=8, batch_size=100))
    rows = {r["direction"]: r["map20_duch"] for r in E.eval_duch(heads, feats)}

    q = feats.class_id[feats.split_duch == "query"]
    db = feats.class_id[feats.split_duch == "db"]
    dist = M.hamming_distance(rng.normal(size=(len(q), 16)), rng.normal(size=(len(db), 16)))
    random_map = M.map_at_k_duch(M.ranked_relevance(dist, M.relevance(q, db)))
    assert random_map < 0.2
    for direction in ("i2t", "t2i", "i2i"):
        assert rows[direction] > random_map + 0.4, (direction, rows, random_map)
