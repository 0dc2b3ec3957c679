"""The full UCM benchmark behind docs/results.md: methods x bits x seeds, ablations, instance-level,
unseen classes, and the shipped heads. Each training run's numbers are cached on disk (keyed by the
run's settings and the feature cache), so an interrupted ``cach results`` resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from model_runtime.fsutil import atomic_write_text
from model_runtime.hashing.train import CACH_TERMS, TrainConfig
from research.hashing import protocols as E

LOG = logging.getLogger(__name__)

METHODS = ("cach", "duch", "djsrh")
BITS = (16, 32, 64, 128)
SEEDS = (0, 1, 2)
#: published DUCH numbers on UCM (Mikriukov et al. 2022), mAP@20
PUBLISHED_DUCH = {
    "i2t": {16: 0.760, 32: 0.794, 64: 0.844, 128: 0.870},
    "t2i": {16: 0.799, 32: 0.851, 64: 0.916, 128: 0.927},
}


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What ``cach results`` runs."""

    methods: tuple[str, ...] = METHODS
    bits: tuple[int, ...] = BITS
    seeds: tuple[int, ...] = SEEDS
    ablations: tuple[str, ...] = CACH_TERMS
    instance_methods: tuple[str, ...] = ("cach", "duch")
    unseen_methods: tuple[str, ...] = ("cach", "duch")
    unseen_seed: int = 0
    n_unseen: int = 5
    train: TrainConfig = TrainConfig()
    method_overrides: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()
    #: extra CACH settings evaluated in the unseen-class section only: (label, overrides)
    unseen_variants: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = (
        ("cach+preserve", (("w_preserve", 50.0),)),
    )

    def train_config(self, method: str, **extra) -> TrainConfig:
        over = dict(dict(self.method_overrides).get(method, ()))
        return dataclasses.replace(self.train, **{**over, **extra})


class RunCache:
    """JSON results of single runs under ``<dir>/<key>.json``."""

    def __init__(self, directory: Path, feats_tag: str) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tag = feats_tag

    def key(self, **parts) -> str:
        raw = json.dumps({"feats": self.tag, **parts}, sort_keys=True, default=str)
        return hashlib.sha1(raw.encode()).hexdigest()[:20]

    def get_or_run(self, fn: Callable[[], dict], **parts) -> dict:
        path = self.dir / f"{self.key(**parts)}.json"
        if path.exists():
            return json.loads(path.read_text())
        out = fn()
        atomic_write_text(path, json.dumps(out))
        return out


def features_tag(feats) -> str:
    """A short fingerprint of the features (shape and a checksum of a slice)."""
    h = hashlib.sha1()
    for arr in (feats.image, feats.text):
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr[::97]).tobytes())
    return f"{getattr(feats, 'backbone', '?')}-{h.hexdigest()[:12]}"


#: TrainConfig fields added after the first benchmark: left out of run keys while at their
#: defaults, so runs of an unchanged recipe keep their cached results
_NEW_FIELDS = (
    "w_preserve",
    "preserve_scale",
    "quant_final",
    "quant_late",
    "beta_final",
    "preserve_proj",
    "w_text_preserve",
    "text_batch",
    "proj_dim",
    "proj_whiten",
)


def _cfg_dict(cfg: TrainConfig) -> dict:
    out = dataclasses.asdict(cfg)
    default = TrainConfig()
    for f in _NEW_FIELDS:
        if out[f] == getattr(default, f):
            del out[f]
    return out


# long by design: the benchmark's sections in the order docs/results.md reports them
def run_benchmark(
    feats,
    cache: RunCache,
    bench: BenchConfig = BenchConfig(),
    class_names: Sequence[str] = (),
    encode_texts: Callable[[list[str]], np.ndarray] | None = None,
    report: Callable[[str], None] = LOG.info,
) -> dict:
    """Run every section and return ``{"main": [...], "ablations": [...], ...}`` (plain data)."""
    out: dict = {"main": [], "ablations": [], "instance": [], "unseen": [], "meta": {}}
    train_duch = feats.split_duch == "train"
    total = time.perf_counter()

    def one(section, method, bits, seed, mask_name, mask, evaluate, label=None, **cfg_extra):
        cfg = bench.train_config(method, **cfg_extra)

        def go():
            heads = E.train_on(method, feats, mask, bits, seed, cfg)
            res = evaluate(heads)
            res["train_seconds"] = heads.train_info["seconds"]
            return res

        res = cache.get_or_run(
            go,
            section=section,
            method=method,
            bits=bits,
            seed=seed,
            mask=mask_name,
            cfg=_cfg_dict(cfg),
            ev=EVAL_VERSION.get(section, 1),
        )
        report(f"{section} {label or method} {bits} bits seed {seed}: {res.get('summary', '')}")
        return res

    def duch_eval(heads):
        rows = E.eval_duch(heads, feats)
        summ = " ".join(f"{r['direction']} {r['map20_duch']:.3f}" for r in rows[:2])
        return {"rows": rows, "summary": summ}

    for bits in bench.bits:
        for method in bench.methods:
            for seed in bench.seeds:
                res = one("main", method, bits, seed, "duch-train", train_duch, duch_eval)
                out["main"].append({"method": method, "bits": bits, "seed": seed, **res})
    for bits in bench.bits:
        for term in bench.ablations:
            for seed in bench.seeds:
                res = one(
                    "ablation",
                    "cach",
                    bits,
                    seed,
                    "duch-train",
                    train_duch,
                    duch_eval,
                    disable=(term,),
                )
                out["ablations"].append({"off": term, "bits": bits, "seed": seed, **res})

    train_off = feats.split_official == "train"

    def inst_eval(heads):
        r = E.eval_instance(heads, feats, "test")
        return {
            **r,
            "summary": f"mR codes {r['codes']['mR']:.1f} float {r['float']['mR']:.1f}"
            f" re-rank {r['rerank']['mR']:.1f}",
        }

    for bits in bench.bits:
        for method in bench.instance_methods:
            for seed in bench.seeds:
                res = one("instance", method, bits, seed, "official-train", train_off, inst_eval)
                out["instance"].append({"method": method, "bits": bits, "seed": seed, **res})

    seen, unseen = E.unseen_split(feats.class_id, bench.n_unseen, bench.unseen_seed)
    prompts = None
    if encode_texts is not None and class_names:
        key = cache.key(prompts=list(E.PROMPT_TEMPLATES), classes=[class_names[c] for c in unseen])
        ppath = cache.dir / f"prompts-{key}.npz"
        if ppath.exists():
            with np.load(ppath) as z:
                prompts = {k: z[k] for k in z.files}
        else:
            prompts = E.class_prompt_features(class_names, unseen, encode_texts)
            np.savez(ppath, **prompts)
    out["meta"]["unseen_classes"] = [class_names[c] if class_names else int(c) for c in unseen]
    mask_seen = np.isin(feats.class_id, seen) & train_duch

    def unseen_eval(heads):
        r = E.eval_unseen(heads, feats, unseen, prompts)
        return {
            "scores": r,
            "summary": f"i2i codes {r['i2i_codes']:.3f} frozen {r['i2i_frozen']:.3f}",
        }

    for bits in bench.bits:
        for method in bench.unseen_methods:
            for seed in bench.seeds:
                res = one(
                    "unseen", method, bits, seed, f"seen-{list(seen)}", mask_seen, unseen_eval
                )
                out["unseen"].append({"method": method, "bits": bits, "seed": seed, **res})
            if method != "cach":
                continue
            for label, over in bench.unseen_variants:
                for seed in bench.seeds:
                    res = one(
                        "unseen",
                        "cach",
                        bits,
                        seed,
                        f"seen-{list(seen)}",
                        mask_seen,
                        unseen_eval,
                        label=label,
                        **dict(over),
                    )
                    out["unseen"].append({"method": label, "bits": bits, "seed": seed, **res})
    out["meta"].update(
        {
            "seconds_total": time.perf_counter() - total,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpu_count": os.cpu_count(),
            "train_config": dataclasses.asdict(bench.train),
            "unseen_variants": {k: dict(v) for k, v in bench.unseen_variants},
            "overrides": {m: dict(kv) for m, kv in bench.method_overrides},
            "images_per_second": float(getattr(feats, "images_per_second", 0.0)),
        }
    )
    return out


#: per section; bump when its evaluation function changes, so cached run results are recomputed
#: (2: instance-level and unseen-class sections gained the Hamming-shortlist re-rank rows)
EVAL_VERSION = {"main": 1, "ablation": 1, "instance": 2, "unseen": 2}


# ----------------------------------------------------------------------------- aggregation


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def main_table(results: dict, metric: str = "map20_duch") -> dict:
    """``{(method, bits, direction): (mean, std)}`` over seeds."""
    acc: dict = {}
    for run in results["main"]:
        for row in run["rows"]:
            acc.setdefault((run["method"], run["bits"], row["direction"]), []).append(row[metric])
    return {k: mean_std(v) for k, v in acc.items()}


def ablation_table(results: dict, metric: str = "map20_duch") -> dict:
    acc: dict = {}
    for run in results["ablations"]:
        for row in run["rows"]:
            acc.setdefault((run["off"], run["bits"], row["direction"]), []).append(row[metric])
    return {k: mean_std(v) for k, v in acc.items()}


def train_times(results: dict, section: str = "main", key: str = "method") -> dict:
    acc: dict = {}
    for run in results[section]:
        acc.setdefault((run[key], run["bits"]), []).append(run["train_seconds"])
    return {k: mean_std(v) for k, v in acc.items()}
