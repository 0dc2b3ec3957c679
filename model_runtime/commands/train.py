"""``cach train``: train hash heads on cached frozen features and save them as safetensors."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from model_runtime.errors import DataError

LOG = logging.getLogger(__name__)


def add_parser(subparsers, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help=help_text)
    p.add_argument("--method", choices=("cach", "duch", "djsrh"), default="cach")
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--seed", type=int, nargs="+", default=[0])
    p.add_argument("--dataset", default="ucm", help="ucm, rsicd, sydney or a pairs .jsonl file")
    p.add_argument("--image-dir", help="image folder for datasets shipped without images (RSICD)")
    p.add_argument(
        "--split",
        default="duch",
        help="train on items whose split in this protocol is 'train' (duch, official); "
        "'all' uses every item",
    )
    p.add_argument("--backbone", default="effnetlite0-minilm")
    p.add_argument("--epochs", type=int, help="override the default number of epochs")
    p.add_argument(
        "--out",
        help="output folder (or .safetensors file for a single run); default: <cache>/heads",
    )
    p.add_argument("--data-root", help="data folder (default: $CACH_DATA or ../shared/data)")
    p.add_argument("--device", help="device for feature extraction (cpu, cuda)")
    return p


def load_features(args) -> tuple[object, np.ndarray]:
    """Features of ``args.dataset`` (cached, with augmented views) and the training mask."""
    from model_runtime.data.datasets import load_dataset
    from model_runtime.features import cached_features
    from model_runtime.paths import data_root

    root = data_root(args.data_root)
    kwargs = {"image_dir": args.image_dir} if getattr(args, "image_dir", None) else {}
    dataset = load_dataset(args.dataset, root, **kwargs)
    feats = cached_features(dataset, args.backbone, args.device, augment=True)
    split = getattr(args, "split", "duch")
    if split == "all":
        return feats, np.ones(len(feats.image), dtype=bool)
    col = {"duch": feats.split_duch, "official": feats.split_official}.get(split)
    if col is None:
        raise DataError(f"Unknown split protocol '{split}': use duch, official or all.")
    mask = col == "train"
    if not mask.any():
        raise DataError(
            f"{dataset.source}: no item is in the '{split}' training split; use --split all."
        )
    return feats, mask


def run(args) -> int:
    import dataclasses

    from model_runtime.hashing.heads_io import save_heads
    from model_runtime.hashing.protocols import train_on
    from model_runtime.hashing.train import TrainConfig
    from model_runtime.paths import cache_dir

    feats, mask = load_features(args)
    cfg = TrainConfig()
    if args.epochs:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    runs = [(b, s) for b in args.bits for s in args.seed]
    out = Path(args.out) if args.out else cache_dir() / "heads"
    single_file = out.suffix == ".safetensors"
    if single_file and len(runs) > 1:
        raise DataError(
            f"--out {out} is one file but {len(runs)} runs were asked for: pass a folder"
        )
    for bits, seed in runs:
        heads = train_on(args.method, feats, mask, bits, seed, cfg)
        name = f"{args.method}-{feats.backbone}-{bits}"
        if len(args.seed) > 1:
            name += f"-s{seed}"
        path = out if single_file else out / f"{name}.safetensors"
        info = heads.train_info
        extra = {
            "seed": seed,
            "dataset": args.dataset,
            "split": args.split,
            "epochs": cfg.epochs,
            "train_seconds": round(info["seconds"], 2),
        }
        save_heads(heads, path, args.method, feats.backbone, extra=extra)
        print(
            f"{args.method} {bits} bits seed {seed}: {info['seconds']:.1f} s on "
            f"{int(mask.sum())} pairs -> {path}"
        )
    return 0
