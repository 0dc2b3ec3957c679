"""``cach caption``: captions from the caption bank that best describe a tile or an image."""

from __future__ import annotations

import argparse
import json

from model_runtime.commands.search import tile_id
from model_runtime.protocol import DEFAULT_CAPTIONS, DEFAULT_SIMILAR
from model_runtime.worker import add_model_arguments, runtime_kwargs


def add_parser(subparsers, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser("caption", help=help_text, description=help_text)
    p.add_argument("--index", metavar="DIR", help="index folder (needed for --tile)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--tile", type=tile_id, metavar="ID", help="a tile of the index")
    what.add_argument("--image", metavar="FILE", help="an image or raster file")
    p.add_argument("-k", "--k", dest="k", type=int, default=DEFAULT_CAPTIONS,
                   help=f"number of captions ({DEFAULT_CAPTIONS})")
    p.add_argument(
        "--similar",
        type=int,
        default=DEFAULT_SIMILAR,
        help=f"also list this many similar tiles of the index ({DEFAULT_SIMILAR}; 0 for none)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from model_runtime.commands import request_from_args
    from model_runtime.errors import ConfigError
    from model_runtime.pipeline import Runtime
    from model_runtime.protocol import CaptionRequest

    if args.tile is not None and not args.index:
        raise ConfigError("--tile needs --index DIR.")
    runtime = Runtime(**runtime_kwargs(args))
    result = runtime.caption(request_from_args(CaptionRequest, args)).to_json()
    if args.json:
        print(json.dumps(result))
        return 0
    what = f"tile {args.tile}" if args.tile is not None else args.image
    print(f"captions for {what}:")
    for c in result["captions"]:
        print(f"{c['rank']:>3}. {c['text']}  (score {c['score']:.3f}, hamming {c['hamming']})")
    if result["similar"]:
        from model_runtime.commands.search import print_table

        print("\nsimilar tiles:")
        print_table(result["similar"])
    return 0
