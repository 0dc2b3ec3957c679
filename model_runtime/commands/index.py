"""``cach index``: tile folders of rasters and add them to a hash index (incremental)."""

from __future__ import annotations

import argparse
import json
import sys

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
    p.add_argument("paths", nargs="+", metavar="PATH", help="raster files or folders")
    p.add_argument("--index", required=True, metavar="DIR", help="index folder (created)")
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
                   help="go ahead with a run of more than 100,000 new tiles without asking")
    p.add_argument("--allow-outside-sources", action="store_true",
                   help="let a VRT read local files outside the folders given")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where units run: this machine (default) or a Ray cluster")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to join (default: start a local Ray); with --executor ray")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_model_arguments(p)
    return p


def _options(args: argparse.Namespace) -> dict:
    fields = ("tile_size", "tile_metres", "overlap", "scales", "bands")
    return {f: getattr(args, f) for f in fields if getattr(args, f) is not None}


def _print_estimate(est: dict) -> None:
    print(f"{est['files']} raster file(s) to index, up to {est['new_tiles']:,} new tiles")
    print(f"index size  +{est['bytes'] / 1e6:.1f} MB")
    print(f"encode time ~{est['seconds']:.0f} s on this machine")
    for item in est.get("skipped", []):
        print(f"would skip  {item['path']}: {item['reason']}")


def _print_summary(summary: dict, index_dir: str) -> None:
    print(
        f"{index_dir}: {summary['tiles']} tiles; files added {summary['added']}, updated "
        f"{summary['updated']}, removed {summary['removed']}, unchanged {summary['unchanged']}, "
        f"skipped {len(summary['skipped'])}; {summary['encoded']} tiles encoded in "
        f"{summary['seconds']:.1f} s"
    )
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


def _confirm_exit(err) -> int:
    """A large run without --yes: print the estimate, exit 3 (nothing was encoded)."""
    est = err.details.get("estimate") or {}
    print(f"cach index: {err}", file=sys.stderr)
    if est:
        _print_estimate(est)
    return 3


def run(args: argparse.Namespace) -> int:
    from model_runtime.errors import ConfirmationNeeded
    from model_runtime.pipeline import Pipeline

    pipeline = Pipeline(**runtime_kwargs(args))
    common = {"bits": args.bits, "allow_outside_sources": args.allow_outside_sources}
    if args.dry_run:
        est = pipeline.index(args.index, args.paths, _options(args), dry_run=True,
                             rebuild=args.rebuild, **common).to_json()
        print(json.dumps(est)) if args.json else _print_estimate(est)
        return 0
    from model_runtime.cli import bar_disable

    bar = _Bar(bar_disable(args))
    try:
        summary = pipeline.index(args.index, args.paths, _options(args), rebuild=args.rebuild,
                                 confirm=args.yes, progress=bar, executor=args.executor,
                                 ray_address=args.ray_address, **common).to_json()
    except ConfirmationNeeded as err:
        return _confirm_exit(err)
    finally:
        bar.close()
    print(json.dumps(summary)) if args.json else _print_summary(summary, args.index)
    # files skipped are reported, not fatal: the index is complete for everything readable
    return 0
