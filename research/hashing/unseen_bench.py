"""Runs of the multi-set unseen-class protocol, cached per (recipe, set, seed, bits).

Also measures adaptation: the heads trained without a set are adapted on that set's database
images (all its images, no labels) and scored again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import numpy as np

from model_runtime.hashing.adapt import AdaptConfig, adapt_image_head
from model_runtime.hashing.train import TrainConfig
from research.hashing import unseen as U
from research.hashing.benchmark import RunCache, mean_std

LOG = logging.getLogger(__name__)

#: bump when scoring changes so cached runs are recomputed
UNSEEN_EVAL_VERSION = 3


def _cfg_key(cfg: TrainConfig | AdaptConfig | None) -> dict:
    return {} if cfg is None else dataclasses.asdict(cfg)


def one_run(feats, cfg, set_id, seed, bits, prompts, bank, adapt: AdaptConfig | None) -> dict:
    """Train without set ``set_id``, score it; with ``adapt``, adapt on its images and score."""
    sets = U.heldout_sets(feats.class_id)
    heads = U.train_without(feats, sets[set_id], seed, bits, cfg, bank)
    out = U.unseen_outputs(heads, feats, sets[set_id], prompts[set_id])
    res = {"scores": U.score_unseen(out), "train_seconds": heads.train_info["seconds"]}
    if adapt is not None:
        new = adapt_image_head(heads, out["proj"], out["img"], seed=seed, config=adapt)
        adapted = dict(out, img=new.encode_image_proj_np(out["proj"]))
        res["adapted"] = U.score_unseen(adapted)
        res["adapt_seconds"] = new.train_info["seconds"]
    return res


def run_sets(
    feats,
    cache: RunCache,
    cfg: TrainConfig,
    prompts: dict[int, np.ndarray],
    sets: Sequence[int] = U.TUNING_SETS,
    seeds: Sequence[int] = (0, 1),
    bits: Sequence[int] = (64, 128),
    bank: np.ndarray | None = None,
    adapt: AdaptConfig | None = None,
    label: str = "",
    report: Callable[[str], None] = LOG.info,
) -> list[dict]:
    """Every (set, seed, bits) run of one recipe; results cached in ``cache``."""
    runs = []
    for b in bits:
        for s in sets:
            for seed in seeds:
                res = cache.get_or_run(
                    lambda s=s, seed=seed, b=b: one_run(feats, cfg, s, seed, b, prompts, bank, adapt),
                    section="unseen-sets", cfg=_cfg_key(cfg), adapt=_cfg_key(adapt), set=s,
                    seed=seed, bits=b, bank=None if bank is None else int(len(bank)),
                    ev=UNSEEN_EVAL_VERSION,
                )
                sc = res["scores"]
                report(f"{label} {b} bits set {s} seed {seed}: i2i product "
                       f"{sc['i2i_product'] / sc['i2i_frozen']:.3f} codes "
                       f"{sc['i2i_codes'] / sc['i2i_frozen']:.3f} t2i prompt product "
                       f"{sc['t2i_prompt_product']:.3f}")
                runs.append({"label": label, "set": s, "seed": seed, "bits": b, **res})
    return runs


def summarise(runs: list[dict], bits: int, key: str = "scores") -> dict[str, tuple[float, float]]:
    """Mean ± std over sets and seeds of every score, plus ratios to the frozen I→I mAP."""
    acc: dict[str, list[float]] = {}
    for r in runs:
        if r["bits"] != bits or key not in r:
            continue
        sc = dict(r[key])
        frozen = r["scores"]["i2i_frozen"]
        for name in ("i2i_codes", "i2i_product", "i2i_float", "i2i_proj", "i2i_rerank_head"):
            sc[f"{name}_ratio"] = sc[name] / frozen
        for k, v in sc.items():
            acc.setdefault(k, []).append(v)
    return {k: mean_std(v) for k, v in acc.items()}
