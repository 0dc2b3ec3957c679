"""``cach eval``: evaluate hash heads on the DUCH protocol of UCM (shipped heads by default)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

LOG = logging.getLogger(__name__)


def add_parser(subparsers, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help=help_text)
    p.add_argument("--dataset", default="ucm", choices=("ucm",))
    p.add_argument("--weights", nargs="+", help="heads files (default: the shipped CACH heads)")
    p.add_argument(
        "--bits",
        type=int,
        nargs="+",
        default=[16, 32, 64, 128],
        help="shipped code lengths to evaluate when --weights is not given",
    )
    p.add_argument("--backbone", default="effnetlite0-minilm")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--data-root", help="data folder (default: $CACH_DATA or ../shared/data)")
    p.add_argument("--device", help="device for feature extraction (cpu, cuda)")
    p.add_argument("--backend", help="encode pixels and tokens through this inference backend "
                   "(torch, onnx, openvino) instead of cached frozen features + heads (without "
                   "PyTorch, the lean runtime, the default is onnx)")
    return p


def evaluate(weights: list[Path], feats, backbone: str) -> list[dict]:
    """DUCH-protocol rows for each heads file: method, bits, direction and the three mAPs."""
    from model_runtime.hashing.protocols import eval_duch
    from model_runtime.model.numpy_heads import load_numpy_heads

    dims = (feats.image.shape[1], feats.text.shape[2])
    rows = []
    for path in weights:
        heads = load_numpy_heads(path, expect_backbone=backbone, expect_dims=dims)
        for r in eval_duch(heads, feats):
            rows.append(
                {
                    "method": heads.method,
                    "bits": heads.bits,
                    "direction": r["direction"],
                    "map20_duch": round(r["map20_duch"], 6),
                    "map20_topk": round(r["map20_topk"], 6),
                    "map_all": round(r["map_all"], 6),
                }
            )
    return rows


def run(args) -> int:
    from model_runtime.envcheck import torch_available
    from model_runtime.model.heads_format import check_metadata, read_metadata, shipped_heads_path

    if args.weights:
        weights = [Path(w) for w in args.weights]
    else:
        weights = [shipped_heads_path(b, args.backbone) for b in args.bits]
    # fail on a missing or mismatched file before spending time on features
    for w in weights:
        check_metadata(w, read_metadata(w), expect_backbone=args.backbone)
    if not args.backend and not torch_available():
        # the lean runtime: frozen features need torch, the compiled graphs do not
        LOG.info("PyTorch is not installed: evaluating through ONNX Runtime")
        args.backend = "onnx"
    if args.backend:  # every output through the backend's own graph (evaluation/dataset_outputs.py)
        from model_runtime.evaluation.dataset_outputs import evaluate_backend

        rows = evaluate_backend(weights, args.backbone, args.backend, args.device, args.data_root)
    else:
        from model_runtime.features import ucm_features

        feats = ucm_features(
            args.data_root, args.backbone, args.device, augment=False, progress=not args.json
        )
        rows = evaluate(weights, feats, args.backbone)
    if args.json:
        print(json.dumps({"dataset": args.dataset, "protocol": "duch", "results": rows}))
        return 0
    print(f"UCM, split_duch (query 210 / database 840), backbone {args.backbone}")
    print(
        f"{'method':8s} {'bits':>4s} {'dir':4s} {'mAP@20 DUCH':>12s} {'mAP@20 top20':>13s} "
        f"{'mAP@ALL':>8s}"
    )
    for r in rows:
        print(
            f"{r['method']:8s} {r['bits']:4d} {r['direction']:4s} {r['map20_duch']:12.4f} "
            f"{r['map20_topk']:13.4f} {r['map_all']:8.4f}"
        )
    return 0
