"""Rebuild the caption bank and the shipped bank codes (a maintainer's tool, not a ``cach``
subcommand): ``python -m model_runtime.commands.caption_bank build --data-root DIR`` writes
``resources/captions/bank.txt.gz`` from the training captions; ``... ship-codes --bits 16 32 64
128`` writes the bank's codes for the shipped heads beside it, so the first caption is fast."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from model_runtime.captions import (
    BANK_PATH,
    CAPTIONS_DIR,
    collect_training_captions,
    save_npy,
    write_bank,
)
from model_runtime.protocol import DEFAULT_BACKBONE


def _build(args: argparse.Namespace) -> int:
    captions, counts = collect_training_captions(args.data_root)
    path = write_bank(captions, args.out)
    print(json.dumps({"bank": str(path), "captions": len(captions), "sources": counts}))
    return 0


def _ship_codes(args: argparse.Namespace) -> int:
    """Compute codes for the shipped heads and write them beside the bank (kept for archived
    heads too, so indexes built with an earlier release caption at once)."""
    from model_runtime.model import load_model
    from model_runtime.model.heads import shipped_heads
    from model_runtime.services.captions import CaptionService, codes_file_key

    service = CaptionService()
    for bits in args.bits:
        heads = shipped_heads(args.backbone, bits)
        target = CAPTIONS_DIR / f"codes-{codes_file_key(heads)}.npy"
        if target.is_file() and not args.force:
            print(f"{target} exists")
            continue
        bank = service.bank(load_model(args.backbone, heads=heads, device=args.device))
        save_npy(target, bank.codes)
        print(f"wrote {target} ({len(bank)} codes, {bits} bits)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_runtime.commands.caption_bank",
        description="The caption bank: rebuild it, or precompute its codes for the shipped heads.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="rebuild resources/captions/bank.txt.gz from the datasets")
    b.add_argument("--data-root", default=None)
    b.add_argument("--out", default=str(BANK_PATH))
    b.set_defaults(fn=_build)
    s = sub.add_parser("ship-codes", help="precompute bank codes for the shipped heads")
    s.add_argument("--bits", type=int, nargs="+", default=[64])
    s.add_argument("--device", default=None)
    s.add_argument("--backbone", default=DEFAULT_BACKBONE)
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=_ship_codes)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
