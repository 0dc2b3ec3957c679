"""``cach features``: extract and cache frozen features of a dataset."""

from __future__ import annotations

import argparse

from model_runtime.protocol import DEFAULT_BACKBONE


def add_parser(subparsers, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser("features", help=help_text, description=help_text)
    p.add_argument("--dataset", default="ucm",
                   help="ucm, rsicd, rsitmd, sydney, or a pairs .jsonl file (default: ucm)")
    p.add_argument("--data-root", help="data folder (default: $CACH_DATA or ../shared/data)")
    p.add_argument("--image-dir", help="image folder for RSICD/RSITMD/Karpathy datasets")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="backbone name or JSON file")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--augment", action="store_true",
                   help="also encode flipped/rotated views (used by training)")
    return p


def run(args: argparse.Namespace) -> int:
    from model_runtime.data.datasets import load_dataset
    from model_runtime.features import cached_features

    dataset = load_dataset(args.dataset, args.data_root, args.image_dir)
    feats = cached_features(dataset, args.backbone, args.device, augment=args.augment)
    views = 1 + (feats.image_aug.shape[1] if feats.image_aug is not None else 0)
    print(f"{dataset.name}: {len(dataset)} images x {views} view(s) -> image features "
          f"{feats.image.shape[1]}-d, captions {feats.text.shape[1]} x {feats.text.shape[2]}-d; "
          f"{feats.images_per_second:.1f} images/s at extraction")
    return 0
