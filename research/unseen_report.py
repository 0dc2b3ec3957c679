"""The multi-set unseen-class study behind the shipped recipe (issue 11), in one command.

    nice -n 10 .venv/bin/python -m research.unseen_report --recipes today proj preserve
    nice -n 10 .venv/bin/python -m research.unseen_report --final          # untouched set + adapt

Every recipe is trained without each tuning held-out set (sets 0-2, seeds 0-1, 64 and 128 bits)
and scored on that set (``research.hashing.unseen``); runs are cached per (recipe, set, seed,
bits), so the command resumes where it stopped and ``--jobs 2`` splits the runs over two
processes. ``--final`` scores the chosen recipe (:data:`FINAL`) on the untouched set 3 and measures
adaptation on every set. The tables go to stdout and, with ``--write``, into docs/unseen.md
between markers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from model_runtime.hashing.adapt import AdaptConfig
from model_runtime.hashing.train import TrainConfig
from model_runtime.paths import PLUGIN_ROOT, cache_dir

#: cumulative recipes of the ablation table: (label, what it adds, TrainConfig overrides)
RECIPES: dict[str, tuple[str, dict]] = {
    "today": ("the first round's shipped recipe", {}),
    "proj": ("+ stored 256-d projection (the image head reads it)", {"proj_dim": 256}),
    "preserve": (
        "+ image-structure preservation on the projection",
        {"proj_dim": 256, "w_preserve": 50.0, "preserve_proj": True},
    ),
    "text": (
        "+ caption-bank text-structure preservation (RSICD + RSITMD sentences)",
        {"proj_dim": 256, "w_preserve": 50.0, "preserve_proj": True, "w_text_preserve": 20.0},
    ),
    "text-anchor": (
        "+ caption bank anchored to the batch's captions",
        {
            "proj_dim": 256,
            "w_preserve": 50.0,
            "preserve_proj": True,
            "w_text_preserve": 20.0,
            "text_anchor": True,
        },
    ),
}
#: the recipe chosen on the tuning sets (the shipped heads are trained with it)
FINAL = "proj"
SEEDS = (0, 1)
BITS = (64, 128)
BEGIN = "<!-- unseen-class study: begin (research/unseen_report.py writes this part) -->"
END = "<!-- unseen-class study: end -->"


def recipe_config(name: str) -> TrainConfig:
    return dataclasses.replace(TrainConfig(), **RECIPES[name][1])


def _inputs(data_root=None):
    """UCM features (with views), prompt features per held-out set, the caption bank."""
    from model_runtime.data.datasets import load_ucm
    from model_runtime.encoders import load_encoder
    from model_runtime.features import caption_bank_features, ucm_features
    from research.hashing import unseen as U

    feats = ucm_features(data_root, augment=True, progress=False)
    names = load_ucm(data_root).classes
    enc = load_encoder(feats.backbone, "cpu")
    sets = U.heldout_sets(feats.class_id)
    prompts = {i: U.prompt_features(names, s, enc.encode_texts) for i, s in enumerate(sets)}
    return feats, prompts, caption_bank_features(data_root=data_root)


def _cache(feats):
    from research.hashing.benchmark import RunCache, features_tag

    return RunCache(cache_dir() / "research-unseen", features_tag(feats))


def run_recipe(name: str, sets, adapt: bool, data_root=None) -> list[dict]:
    """Every (set, seed, bits) run of one recipe (cached); a worker process's job."""
    from research.hashing.unseen_bench import run_sets

    feats, prompts, bank = _inputs(data_root)
    cfg = recipe_config(name)
    return run_sets(
        feats, _cache(feats), cfg, prompts, sets=sets, seeds=SEEDS, bits=BITS,
        bank=bank if cfg.w_text_preserve > 0 else None,
        adapt=AdaptConfig() if adapt else None, label=name,
        report=lambda m: print(m, file=sys.stderr, flush=True),
    )


def _fmt(ms: tuple[float, float], pct: bool = False) -> str:
    m, s = ms
    return f"{100 * m:.1f} ± {100 * s:.1f} %" if pct else f"{m:.3f} ± {s:.3f}"


def ablation_table(runs: dict[str, list[dict]]) -> list[str]:
    from research.hashing.unseen_bench import summarise

    lines = [
        "| recipe | bits | I→I product (% frozen) | I→I codes (% frozen) | T→I prompts product "
        "| T→I prompts codes | T→I captions product |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rr in runs.items():
        for b in BITS:
            s = summarise(rr, b)
            if not s:
                continue
            lines.append(
                f"| {RECIPES[name][0]} | {b} | {_fmt(s['i2i_product_ratio'], True)} | "
                f"{_fmt(s['i2i_codes_ratio'], True)} | {_fmt(s['t2i_prompt_product'])} | "
                f"{_fmt(s['t2i_prompt_codes'])} | {_fmt(s['t2i_caption_product'])} |"
            )
    return lines


def adaptation_table(rr: list[dict], label: str) -> list[str]:
    """Pure-code I→I (share of frozen) and T→I prompts, before and after adaptation."""
    from research.hashing.benchmark import mean_std
    from research.hashing.unseen_bench import summarise

    lines = [
        f"| {label} | bits | I→I codes before | after | gain (pts of frozen) | I→I product "
        "before | after | T→I prompts product before | after | change | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in BITS:
        before, after = summarise(rr, b), summarise(rr, b, key="adapted")
        if not after:
            continue
        gains = [
            (r["adapted"]["i2i_codes"] - r["scores"]["i2i_codes"]) / r["scores"]["i2i_frozen"]
            for r in rr if r["bits"] == b
        ]
        dt = [r["adapted"]["t2i_prompt_product"] - r["scores"]["t2i_prompt_product"]
              for r in rr if r["bits"] == b]
        secs = [r["adapt_seconds"] for r in rr if r["bits"] == b]
        lines.append(
            f"| | {b} | {_fmt(before['i2i_codes_ratio'], True)} | "
            f"{_fmt(after['i2i_codes_ratio'], True)} | {_fmt(mean_std(gains), True)} | "
            f"{_fmt(before['i2i_product_ratio'], True)} | {_fmt(after['i2i_product_ratio'], True)} | "
            f"{_fmt(before['t2i_prompt_product'])} | {_fmt(after['t2i_prompt_product'])} | "
            f"{_fmt(mean_std(dt))} | {sum(secs) / len(secs):.1f} |"
        )
    return lines


def instance_runs(name: str, data_root=None) -> list[dict]:
    """Instance-level mR (official test split, product's re-rank path) of one recipe: heads
    trained on the official train split, seeds 0-1, 64 and 128 bits (cached)."""
    from model_runtime.hashing.protocols import train_on
    from research.hashing.protocols import eval_instance

    feats, _, bank = _inputs(data_root)
    cfg = recipe_config(name)
    use_bank = bank if cfg.w_text_preserve > 0 else None
    out = []
    for b in BITS:
        for seed in SEEDS:
            res = _cache(feats).get_or_run(
                lambda b=b, seed=seed: eval_instance(
                    train_on("cach", feats, feats.split_official == "train", b, seed, cfg,
                             use_bank), feats, "test"),
                section="instance", cfg=dataclasses.asdict(cfg), bits=b, seed=seed,
            )
            out.append({"bits": b, "seed": seed, "mR": res["rerank"]["mR"]})
            print(f"{name} instance {b} bits seed {seed}: mR {res['rerank']['mR']:.2f}",
                  file=sys.stderr, flush=True)
    return out


def instance_table(runs: dict[str, list[dict]]) -> list[str]:
    from research.hashing.benchmark import mean_std

    lines = ["| recipe | " + " | ".join(f"mR {b} bits" for b in BITS) + " |",
             "|---|" + "---|" * len(BITS)]
    for name, rr in runs.items():
        cells = [mean_std([r["mR"] for r in rr if r["bits"] == b]) for b in BITS]
        lines.append(f"| {RECIPES[name][0]} | " + " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in cells)
                     + " |")
    return lines


def _parallel(jobs: list[tuple[str, tuple, bool]], n: int, data_root) -> list[list[dict]]:
    if n <= 1:
        return [run_recipe(name, sets, adapt, data_root) for name, sets, adapt in jobs]
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
        futs = [pool.submit(run_recipe, name, sets, adapt, data_root) for name, sets, adapt in jobs]
        return [f.result() for f in futs]


def write_section(path: Path, lines: list[str]) -> None:
    from model_runtime.fsutil import atomic_write_text

    text = path.read_text()
    block = "\n".join([BEGIN, *lines, END])
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write_text(path, text)


def main(argv=None) -> int:
    from research.hashing import unseen as U

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--final", action="store_true", help="untouched set and adaptation of FINAL")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--instance", action="store_true",
                   help="instance-level mR of today's recipe and FINAL (official split)")
    p.add_argument("--write", action="store_true", help="write the tables into docs/unseen.md")
    p.add_argument("--data-root")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # the final recipe's tuning runs also measure adaptation (one training run serves both)
    jobs = [(r, U.TUNING_SETS, args.final and r == FINAL) for r in args.recipes]
    if args.final:
        jobs = [j for j in jobs if j[0] != FINAL] + [(FINAL, U.TUNING_SETS, True)]
        jobs += [(FINAL, (U.UNTOUCHED_SET,), True), ("today", (U.UNTOUCHED_SET,), True)]
    results = _parallel(jobs, args.jobs, args.data_root)
    tuning = {name: rr for (name, sets, _), rr in zip(jobs, results, strict=True) if sets == U.TUNING_SETS}
    lines = ["### Recipes on the tuning held-out sets (0-2, seeds 0-1, mean ± std)", "",
             *ablation_table(tuning)]
    if args.final:
        final_tune, final_set3, today_set3 = results[-3:]
        lines += ["", "### The untouched held-out set 3 (seeds 0-1)", "",
                  *ablation_table({"today": today_set3, FINAL: final_set3}), "",
                  "### Adaptation on each held-out set's images, no labels (seeds 0-1)", "",
                  *adaptation_table(final_tune, "sets 0-2"), "",
                  *adaptation_table(final_set3, "set 3")[2:]]
    if args.instance:
        inst = {n: instance_runs(n, args.data_root) for n in ("today", FINAL)}
        lines += ["", "### Instance-level mR, official test split, re-rank path (seeds 0-1)", "",
                  *instance_table(inst)]
    print("\n".join(lines))
    out = cache_dir() / "research-unseen" / "last-report.json"
    out.write_text(json.dumps({"jobs": [j[:1] for j in jobs], "results": results}))
    if args.write:
        write_section(PLUGIN_ROOT / "docs" / "unseen.md", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
