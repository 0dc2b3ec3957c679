"""``cach search``: tiles of an index that match a text, a tile, an image or example tiles."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model_runtime.protocol import DEFAULT_K, MAX_TILE_ID
from model_runtime.worker import add_model_arguments, runtime_kwargs


def _weight(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {text!r}") from None


def tile_id(text: str) -> int:
    """An argparse type: a tile id as the worker takes it (0 to SQLite's largest integer)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a tile id is a whole number, got {text[:40]!r}") from None
    if not 0 <= value <= MAX_TILE_ID:
        raise argparse.ArgumentTypeError(f"a tile id is from 0 to {MAX_TILE_ID}, got {text[:40]}")
    return value


def add_parser(subparsers, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "search",
        help=help_text,
        description=help_text + ". Query parts can be combined: "
        "e.g. --text with --positive/--negative example tiles.",
    )
    p.add_argument("--index", required=True, metavar="DIR", help="index folder")
    p.add_argument("--text", help="describe what to find, e.g. 'a harbour with boats'")
    p.add_argument("--tile", type=tile_id, metavar="ID", help="find tiles similar to this tile")
    p.add_argument("--image", metavar="FILE", help="find tiles similar to this image")
    p.add_argument(
        "--positive",
        type=tile_id,
        nargs="+",
        default=[],
        metavar="ID",
        help="example tiles to move towards",
    )
    p.add_argument(
        "--negative",
        type=tile_id,
        nargs="+",
        default=[],
        metavar="ID",
        help="example tiles to move away from",
    )
    _add_refine_arguments(p)
    p.add_argument(
        "--weight",
        type=_weight,
        action="append",
        default=[],
        metavar="PART=W",
        help="weight of a query part: text, image, tile, positive (1.0), negative (0.5)",
    )
    p.add_argument("--offset", type=int, default=0, metavar="N",
                   help="skip the N best tiles (0-1000): the next page of results (0)")
    p.add_argument("-k", "--k", dest="k", type=int, default=DEFAULT_K,
                   help=f"number of results ({DEFAULT_K})")
    p.add_argument(
        "--bbox",
        type=float,
        nargs=4,
        metavar=("MINX", "MINY", "MAXX", "MAXY"),
        help="only tiles that meet this box",
    )
    p.add_argument("--bbox-crs", default="EPSG:4326", help="CRS of --bbox (EPSG:4326)")
    p.add_argument(
        "--no-collapse",
        dest="collapse",
        action="store_false",
        help="keep overlapping and duplicate tiles",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--geojson", metavar="PATH", help="write footprints as GeoJSON")
    p.add_argument("--gpkg", metavar="PATH", help="write footprints as a GeoPackage layer")
    p.add_argument("--contact-sheet", metavar="PNG", help="write a PNG of thumbnails")
    add_model_arguments(p)
    return p


def _add_refine_arguments(p: argparse.ArgumentParser) -> None:
    """Saving and running refined searches (docs/search.md, "Refining with marks")."""
    p.add_argument("--save", metavar="FILE",
                   help="with --positive/--negative: keep the refined search in FILE (JSON) "
                   "to run again with --saved, on this or another index")
    p.add_argument("--saved", metavar="FILE",
                   help="run a refined search saved with --save (no other query parts)")
    p.add_argument("--no-learn", dest="learn", action="store_false",
                   help="marked tiles only add/subtract their mean vectors (the first "
                   "release's weighted sum) instead of fitting a model on them")


def print_table(results: list[dict]) -> None:
    """Hits as a readable table (also used by ``cach caption``)."""
    if not results:
        print("no results")
        return
    print(f"{'rank':>4}  {'score':>6}  {'conf':>5}  {'ham':>4}  {'tile':>7}  {'window':<22}  "
          "source")
    for h in results:
        window = ",".join(str(v) for v in h["window"])
        conf = "" if h.get("confidence") is None else f"{h['confidence']:.2f}"
        print(f"{h['rank']:>4}  {h['score']:>6.3f}  {conf:>5}  {h['hamming']:>4}  "
              f"{h['tile_id']:>7}  {window:<22}  {h['source']}"
              + ("" if h.get("georeferenced", True) else "  (not georeferenced)"))


def write_outputs(
    runtime, index_dir: str, hits: list, query: dict, model: dict, args: argparse.Namespace
) -> dict[str, str]:
    """GeoJSON / GeoPackage / contact sheet as asked; returns {kind: path}."""
    from model_runtime.index import contact_sheet, write_geojson, write_gpkg

    written: dict[str, str] = {}
    if getattr(args, "geojson", None):
        written["geojson"] = str(write_geojson(hits, args.geojson, query, model))
    if getattr(args, "gpkg", None):
        written["gpkg"] = str(write_gpkg(hits, args.gpkg, query, model))
    if getattr(args, "contact_sheet", None) and hits:
        index, _ = runtime.indexes.open(index_dir)
        written["contact_sheet"] = str(
            contact_sheet(
                hits, args.contact_sheet, reader=lambda h: index.read_tile_pixels(h.tile_id)
            )
        )
    return written


def run(args: argparse.Namespace) -> int:
    from model_runtime.commands import request_from_args
    from model_runtime.errors import ConfigError
    from model_runtime.pipeline import Runtime
    from model_runtime.protocol import SearchRequest

    if (args.text is None and args.tile is None and args.image is None and not args.positive
            and not args.saved):
        raise ConfigError("Give a query: --text, --tile, --image, --positive or --saved.")
    runtime = Runtime(**runtime_kwargs(args))
    req = request_from_args(SearchRequest, args, weights=dict(args.weight) or None)
    result = runtime.search(req)
    written = write_outputs(runtime, args.index, result.results, result.query, result.model, args)
    out = result.to_json()
    if args.json:
        if written:
            out["outputs"] = written
        print(json.dumps(out))
        return 0
    q = out["query"]
    what = (q.get("text") or (f"tile {q['tile']}" if "tile" in q else q.get("image"))
            or ("the saved search " + q["saved"] if "saved" in q else "examples"))
    print(
        f"{len(out['results'])} result(s) for {what!r} in {out['index']['path']} "
        f"({out['index']['tiles']} tiles, {out['index']['bits']} bits, "
        f"{out['timing_ms']['total']:.0f} ms)"
    )
    print_table(out["results"])
    if out.get("weak_match"):
        print("note: weak matches only: these tiles are unlikely to show what you asked for; "
              "the archive may hold nothing like it")
    if out["index"].get("pending_files"):
        print(f"note: the last indexing run was cancelled; {out['index']['pending_files']} "
              "file(s) are not indexed yet: run 'cach index' again to add them")
    if q.get("saved_to"):
        print(f"saved the refined search: {q['saved_to']}")
    for kind, path in written.items():
        print(f"wrote {kind}: {Path(path).resolve()}")
    return 0
