"""``cach index``: tile folders of rasters and add them to a hash index (incremental)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from model_runtime.worker import add_model_arguments, runtime_kwargs


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def add_parser(subparsers, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "index",
        help=help_text,
        description=help_text + ". Re-running it re-encodes only new "
        "or changed files, drops deleted ones and resumes an interrupted run.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="raster files or folders; a new one is added to the index's folders")
    p.add_argument("--index", required=True, metavar="DIR", help="index folder (created)")
    p.add_argument("--remove", action="append", metavar="ROOT", default=[],
                   help="forget this folder of the index and drop its tiles (repeatable)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--tile-size", type=int, metavar="N", help="tile size in pixels (256)")
    size.add_argument(
        "--tile-metres",
        type=float,
        metavar="M",
        help="tile size in ground metres (rasters with a CRS)",
    )
    p.add_argument("--overlap", type=float, metavar="F", help="tile overlap fraction (0)")
    p.add_argument(
        "--scales",
        type=_int_list,
        metavar="1,2",
        help="tile size multiples, e.g. 1,2 adds tiles twice as large",
    )
    p.add_argument(
        "--bands",
        type=_int_list,
        metavar="1,2,3",
        help="band order for R,G,B (or one band repeated), 1-based",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="estimate tiles, index size and time; write nothing"
    )
    p.add_argument("--rebuild", action="store_true", help="start the index over")
    p.add_argument("--yes", action="store_true",
                   help="go ahead without asking with a run of more than 100,000 new tiles, "
                   "or with tiling options that re-tile every folder of the index")
    p.add_argument("--allow-outside-sources", action="store_true",
                   help="let a VRT read local files outside the folders given")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where units run: this machine (default) or a Ray cluster")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to join (default: start a local Ray); with --executor ray")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_model_arguments(p)
    return p


def _print_estimate(est: dict) -> None:
    print(f"{est['files']} raster file(s) to index, up to {est['new_tiles']:,} new tiles")
    print(f"index size  +{est['bytes'] / 1e6:.1f} MB")
    print(f"encode time ~{est['seconds']:.0f} s on this machine")
    for item in est.get("skipped", []):
        print(f"would skip  {item['path']}: {item['reason']}")
    held = est.get("roots_held") or []
    if held:
        tiles = sum(int(r.get("tiles") or 0) for r in held)
        print(f"the index holds {tiles:,} tiles of {len(held)} folder(s): "
              + ", ".join(f"{r['path']} ({r['tiles']:,})" for r in held))
    for root in est.get("roots_added") or []:
        print(f"would add folder {root} to the index")
    if est.get("retile_tiles"):
        print(f"would re-tile all {est['retile_tiles']:,} tiles (another tiling): needs --yes")


def _print_first_build(pipeline, args: argparse.Namespace) -> None:
    """The one-off graph build that a first run adds to the per-tile estimate."""
    from model_runtime.model.readiness import FIRST_BUILD_S, graphs_to_build

    heads = pipeline.indexes.heads_for_build(args.index, args.bits, args.rebuild)
    if graphs_to_build(pipeline.backbone, heads, args.backend, args.device, args.precision):
        print(f"first run   +~{FIRST_BUILD_S:.0f} s once, to build the model graphs (not built "
              "yet on this machine)")


def _print_summary(summary: dict, index_dir: str) -> None:
    print(
        f"{index_dir}: {summary['tiles']} tiles; files added {summary['added']}, updated "
        f"{summary['updated']}, removed {summary['removed']}, unchanged {summary['unchanged']}, "
        f"skipped {len(summary['skipped'])}; {summary['encoded']} tiles encoded in "
        f"{summary['seconds']:.1f} s"
    )
    for root in summary.get("roots_added", []):
        print(f"added folder {root} to the index")
    for root in summary.get("roots_removed", []):
        print(f"removed folder {root} and its tiles from the index")
    if summary.get("roots"):
        print(f"the index holds {len(summary['roots'])} folder(s): {', '.join(summary['roots'])}")
    for vrt, reads in summary.get("vrt_sources", {}).items():
        print(f"{vrt} reads {', '.join(reads)}")
    for item in summary["skipped"]:
        print(f"skipped {item['path']}: {item['reason']}")
    if summary["tiles"] == 0:
        why = "every file was skipped" if summary["skipped"] else "no raster files were found"
        print(f"warning: the index holds no tiles: {why}.", file=sys.stderr)


class _Bar:
    """A tqdm bar on stderr fed by the pipeline's progress dicts."""

    def __init__(self, disable: bool | None = None) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = None
        self.disable = disable  # True: --quiet; None: only on a terminal

    def __call__(self, info: dict) -> None:
        stage, done, total = info.get("stage"), int(info.get("done") or 0), info.get("total")
        if stage == "scan":
            if not self.disable:
                print(info.get("message", ""), file=sys.stderr)
            # started now, so its rate includes the model load and the first batch
            self.bar = self._tqdm(total=None, unit="tile", desc="encode", file=sys.stderr,
                                  dynamic_ncols=True, disable=self.disable)
            return
        if stage != "encode" or self.bar is None:
            return
        if total is not None and total != self.bar.total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix_str(str(info.get("message", ""))[:30], refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            # the total counted every window; mostly-empty tiles were skipped, so end at 100 %
            self.bar.total = self.bar.n
            self.bar.refresh()
            self.bar.close()


def _ask_retile(err, args: argparse.Namespace) -> bool:
    """Another tiling re-tiles every folder: ask on a terminal (never with --json)."""
    if err.code != "confirm_retile" or args.json or not sys.stdin.isatty():
        return False
    print(f"cach index: {err}", file=sys.stderr)
    try:
        answer = input(f"Re-tile all {err.details.get('retile_tiles', 0):,} tiles? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _confirm_exit(err, as_json: bool = False) -> int:
    """A large run or a re-tile without --yes: say so, exit 3 (nothing was encoded). With
    --json the answer is one JSON object ``{"error": {type, code, message, details}}``."""
    if as_json:
        from model_runtime.protocol import ErrorInfo

        print(json.dumps({"error": ErrorInfo.from_exception(err).to_dict()}))
        return 3
    est = err.details.get("estimate") or {}
    print(f"cach index: {err}", file=sys.stderr)
    if est:
        _print_estimate(est)
    return 3


def run(args: argparse.Namespace) -> int:
    from model_runtime.commands import request_from_args
    from model_runtime.errors import ConfirmationNeeded
    from model_runtime.pipeline import Pipeline
    from model_runtime.protocol import IndexRequest

    pipeline = Pipeline(**runtime_kwargs(args))
    req = request_from_args(IndexRequest, args, confirm=args.yes, remove=args.remove or None)
    if args.dry_run:
        est = pipeline.index(req).to_json()
        print(json.dumps(est)) if args.json else _print_estimate(est)
        if not args.json:
            _print_first_build(pipeline, args)
        return 0
    from model_runtime.commands import bar_disable

    bar = _Bar(bar_disable(args))
    run_on = {"executor": args.executor, "ray_address": args.ray_address}
    try:
        try:
            summary = pipeline.index(req, bar, **run_on).to_json()
        except ConfirmationNeeded as err:
            if not _ask_retile(err, args):
                return _confirm_exit(err, args.json)
            req = replace(req, confirm=True, remove=())
            summary = pipeline.index(req, bar, **run_on).to_json()
    finally:
        bar.close()
    print(json.dumps(summary)) if args.json else _print_summary(summary, args.index)
    # files skipped are reported, not fatal: the index is complete for everything readable
    return 0
