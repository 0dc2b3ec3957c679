"""``cach adapt``: fine-tune an index's image head to its own archive (no labels) and re-hash
the index from its stored feature projections, without running the encoder again."""

from __future__ import annotations

import argparse
import json
import sys

from model_runtime.protocol import MAX_K
from model_runtime.worker import add_model_arguments, runtime_kwargs


def steps(text: str) -> int:
    """An argparse type: training steps, 1 to 10,000 as the worker's ``adapt`` takes them."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"steps is a whole number, got {text[:40]!r}") from None
    if not 1 <= value <= MAX_K:
        raise argparse.ArgumentTypeError(f"steps is from 1 to {MAX_K}, got {text[:40]}")
    return value


def add_parser(subparsers, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "adapt", help=help_text,
        description=help_text + ". The adapted heads are stored in the index (the shipped heads "
        "are untouched); later 'cach index' runs on it encode with them; adapting again starts "
        "from the shipped heads.")
    p.add_argument("--index", required=True, metavar="DIR", help="index folder")
    p.add_argument("--steps", type=steps, metavar="N", help="training steps (default: the recipe's)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_model_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from model_runtime.commands import bar_disable, request_from_args
    from model_runtime.pipeline import Pipeline
    from model_runtime.protocol import AdaptRequest

    bar = tqdm(total=None, unit="step", desc="adapt", file=sys.stderr, dynamic_ncols=True,
               disable=bar_disable(args))

    def progress(info: dict) -> None:
        bar.total = info.get("total") or bar.total
        bar.update(int(info.get("done") or 0) - bar.n)

    try:
        summary = Pipeline(**runtime_kwargs(args)).adapt(request_from_args(AdaptRequest, args),
                                                         progress)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.index}: adapted {summary['tiles']} tiles in {summary['seconds']:.1f} s; "
              f"heads {summary['heads']} (kept in the index)")
    return 0
