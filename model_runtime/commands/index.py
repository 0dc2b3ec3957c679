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
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_model_arguments(p)
    return p


def _options(args: argparse.Namespace) -> dict:
    fields = ("tile_size", "tile_metres", "overlap", "scales", "bands")
    return {f: getattr(args, f) for f in fields if getattr(args, f) is not None}


def _print_estimate(est: dict) -> None:
    print(f"{est['files']} raster file(s), up to {est['tiles']} tiles")
    print(f"index size  ~{est['bytes'] / 1e6:.1f} MB")
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
    for item in summary["skipped"]:
        print(f"skipped {item['path']}: {item['reason']}")


class _Bar:
    """A tqdm bar on stderr fed by the pipeline's progress dicts."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = None

    def __call__(self, info: dict) -> None:
        stage, done, total = info.get("stage"), int(info.get("done") or 0), info.get("total")
        if stage == "scan":
            print(info.get("message", ""), file=sys.stderr)
            # started now, so its rate includes the model load and the first batch
            self.bar = self._tqdm(
                total=None, unit="tile", desc="encode", file=sys.stderr, dynamic_ncols=True
            )
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


def run(args: argparse.Namespace) -> int:
    from model_runtime.pipeline import Runtime

    runtime = Runtime(**runtime_kwargs(args))
    if args.dry_run:
        est = runtime.index(
            args.index, args.paths, _options(args), dry_run=True, bits=args.bits
        ).to_json()
        if args.json:
            print(json.dumps(est))
        else:
            _print_estimate(est)
        return 0
    bar = _Bar()
    try:
        summary = runtime.index(
            args.index,
            args.paths,
            _options(args),
            bits=args.bits,
            rebuild=args.rebuild,
            progress=bar,
        ).to_json()
    finally:
        bar.close()
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary, args.index)
    # files skipped are reported, not fatal: the index is complete for everything readable
    return 0
