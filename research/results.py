"""``cach results`` (research tooling): run the whole UCM benchmark and write docs/results.md.

One command produces the table: 3 methods x 4 code lengths x 3 seeds, CACH ablations, the
instance-level and unseen-class protocols, then (unless ``--no-ship``) trains the shipped CACH heads
on the training split, writes them to resources/heads with MODEL_CARD.md and expected_metrics.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from model_runtime.paths import PLUGIN_ROOT

LOG = logging.getLogger(__name__)

SHIP_SEED = 0


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``cach results`` (``model_runtime.commands.results`` makes the parser)."""
    p.add_argument("--methods", nargs="+", default=["cach", "duch", "djsrh"])
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, help="override the training epochs of every run")
    p.add_argument("--no-ablations", action="store_true")
    p.add_argument("--no-instance", action="store_true")
    p.add_argument("--no-unseen", action="store_true")
    p.add_argument("--no-ship", action="store_true", help="do not (re)write resources/heads")
    p.add_argument("--ship-only", action="store_true",
                   help="only train, write and evaluate the shipped heads (and the model card)")
    p.add_argument("--out", default=str(PLUGIN_ROOT / "docs" / "results.md"))
    p.add_argument("--heads-dir", help="where shipped heads go (default resources/heads)")
    p.add_argument("--fresh", action="store_true", help="ignore cached run results")
    p.add_argument("--backbone", default="effnetlite0-minilm")
    p.add_argument("--data-root", help="data folder (default: $CACH_DATA or ../shared/data)")
    p.add_argument("--device", help="device for feature extraction (cpu, cuda)")
    return p


def shipped_recipe():
    """The recipe the shipped heads are trained with: the unseen-class study's choice."""
    from research.unseen_report import FINAL, recipe_config

    return recipe_config(FINAL)


def ship(feats, heads_dir: Path, bench, bits_list, fig: Path) -> dict:
    """Train, save (fp16), reload and evaluate the shipped CACH heads; write the model card."""
    from model_runtime.hashing.heads_io import load_heads, save_heads
    from research.hashing import protocols as E
    from research.hashing import report
    from research.hashing.plots import save_pr_curves

    cfg = shipped_recipe()
    mask = feats.split_duch == "train"
    bank = None
    if cfg.w_text_preserve > 0:
        from model_runtime.features import caption_bank_features

        bank = caption_bank_features(backbone=feats.backbone)
    shipped = {
        "eval": {},
        "files": {},
        "seed": SHIP_SEED,
        "train_config": dataclasses.asdict(cfg),
        "hidden": cfg.hidden,
        "train_seconds": 0.0,
        "backbone": feats.backbone,
    }
    curves = {}
    for bits in bits_list:
        heads = E.train_on("cach", feats, mask, bits, SHIP_SEED, cfg, bank)
        shipped["train_seconds"] += heads.train_info["seconds"]
        path = heads_dir / f"cach-{feats.backbone}-{bits}.safetensors"
        extra = {
            "seed": SHIP_SEED,
            "dataset": "ucm",
            "split": "duch-train",
            "epochs": cfg.epochs,
            "train_seconds": round(heads.train_info["seconds"], 2),
            # the weak-match calibration trains held-out heads with this same recipe
            "train_config": dataclasses.asdict(cfg),
        }
        save_heads(heads, path, "cach", feats.backbone, extra=extra)
        loaded = load_heads(path, expect_backbone=feats.backbone, expect_bits=bits)
        rows = E.eval_duch(loaded, feats)
        shipped["eval"][str(bits)] = [
            {k: r[k] for k in ("direction", "map20_duch", "map20_topk", "map_all")} for r in rows
        ]
        shipped["files"][path.name] = path.stat().st_size
        curves.update(E.pr_curves_duch(loaded, feats, f"{bits} bits"))
    save_pr_curves(curves, fig, "CACH (shipped heads), UCM split_duch")
    (heads_dir / "expected_metrics.json").write_text(
        json.dumps(
            {
                "backbone": feats.backbone,
                "protocol": "duch",
                "tolerance": 0.01,
                "eval": shipped["eval"],
            },
            indent=1,
        )
        + "\n"
    )
    (heads_dir / "MODEL_CARD.md").write_text(report.model_card(shipped))
    return shipped


def run(args) -> int:
    from model_runtime.data.datasets import load_ucm
    from model_runtime.features import ucm_features
    from model_runtime.paths import HEADS_DIR, cache_dir
    from research.hashing import benchmark as B
    from research.hashing import report

    feats = ucm_features(args.data_root, args.backbone, args.device, augment=True)
    class_names = load_ucm(args.data_root).classes
    train = B.BenchConfig().train
    if args.epochs:
        train = dataclasses.replace(train, epochs=args.epochs)
    bench = B.BenchConfig(
        methods=tuple(args.methods),
        bits=tuple(args.bits),
        seeds=tuple(args.seeds),
        ablations=() if args.no_ablations else B.BenchConfig().ablations,
        instance_methods=() if args.no_instance else B.BenchConfig().instance_methods,
        unseen_methods=() if args.no_unseen else B.BenchConfig().unseen_methods,
        train=train,
    )
    if args.ship_only:
        heads_dir = Path(args.heads_dir) if args.heads_dir else HEADS_DIR
        fig = Path(args.out).parent / "figures" / "pr-ucm.png"
        shipped = ship(feats, heads_dir, bench, args.bits, fig)
        print(f"wrote {heads_dir} ({shipped['train_seconds']:.0f} s of training)")
        return 0
    cache_root = cache_dir() / "results"
    if args.fresh:
        cache_root = cache_root / f"fresh-{int(time.time())}"
    cache = B.RunCache(cache_root, B.features_tag(feats))

    def encode_texts(texts: list[str]):
        from model_runtime.encoders import load_encoder

        if not hasattr(encode_texts, "enc"):
            encode_texts.enc = load_encoder(args.backbone, "cpu")
        return encode_texts.enc.encode_texts(texts)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = B.run_benchmark(feats, cache, bench, class_names, encode_texts, report=say)
    out = Path(args.out)
    shipped = None
    if not args.no_ship:
        heads_dir = Path(args.heads_dir) if args.heads_dir else HEADS_DIR
        shipped = ship(feats, heads_dir, bench, args.bits, out.parent / "figures" / "pr-ucm.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.results_markdown(results, shipped))
    (cache.dir / "last-results.json").write_text(json.dumps(results))
    print(f"wrote {out}")
    return 0
