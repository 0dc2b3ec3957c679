"""Indexing throughput: the local executor against the Ray executor on this machine, with 1 and
2 cores, in one run, with the bare encoder as the in-run baseline.

    .venv/bin/python bench/bench_ray.py                        # shared GeoTIFFs, 128-px tiles
    .venv/bin/python bench/bench_ray.py --tile-size 96 --cores 1,2

Each configuration runs in its own process pinned to its cores (``sched_setaffinity``; a local
Ray started there inherits the pinning), on a fresh index, with the shipped model and the
default CPU backend, batch 32:

* ``bare encoder``: ``model.encode_images`` on the same tiles already in memory;
* ``local``: ``build_index`` (reader threads + encoder);
* ``ray 1 actor``: a local Ray with ``num_cpus = cores``, one actor holding the model with
  ``cores`` encoder threads (the default shape: one logical CPU is left free, ray#44687);
* ``ray N actors``: as many actors as cores, one thread each (reads overlap across actors).

Columns: wall seconds end to end (Ray start, model loads, scan, merge included); steady tiles/s
(between the first and the last progress report, so without start-up); the per-tile cost
against local at the same cores, ``1000 / ray - 1000 / local`` ms; start-up seconds (wall
minus the steady part). A last row: how fast the driver's one writer merges shards into the
store (20 units of 2,048 tiles with real-sized rows), the ceiling of one index's ingest rate
whatever the cluster's size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tables import table  # noqa: E402  (bench/ runs as scripts)

DATA = ROOT.parent / "shared" / "data" / "geotiff"


class Clock:
    """Progress callback: times of the first and last encode reports and their tile counts."""

    def __init__(self) -> None:
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] | None = None

    def __call__(self, info: dict) -> None:
        if info.get("stage") == "encode" and info.get("done"):
            point = (time.perf_counter(), int(info["done"]))
            self.first = self.first or point
            self.last = point

    def steady(self) -> float:
        if not self.first or not self.last or self.last[0] <= self.first[0]:
            return float("nan")
        return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])


def run_bare(paths: list[str], tile_size: int, batch: int) -> dict:
    """The encoder alone on the tiles of ``paths``, read into memory first."""
    import numpy as np

    from model_runtime.model import load_model
    from model_runtime.raster.sources import list_sources
    from model_runtime.raster.tiling import TilingOptions, iter_tiles

    model = load_model()
    refs, _ = list_sources(paths)
    tiles = [rgb for r in refs for rgb, _t in iter_tiles(r.gdal_path,
                                                          TilingOptions(tile_size=tile_size))]
    model.encode_images(np.stack(tiles[:batch]))  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(tiles), batch):
        model.encode_images(np.stack(tiles[i : i + batch]))
    seconds = time.perf_counter() - t0
    return {"tiles": len(tiles), "wall": seconds, "steady": len(tiles) / seconds,
            "backend": model.backend}


def run_index(executor: str, paths: list[str], tile_size: int, batch: int, cores: int,
              actors: int | None) -> dict:
    from model_runtime.index.build import BuildOptions, build_index
    from model_runtime.index.ray_executor import RaySettings, build_index_ray
    from model_runtime.model import load_model, resolve_heads
    from model_runtime.protocol import DEFAULT_BACKBONE
    from model_runtime.raster.tiling import TilingOptions

    opts = BuildOptions(tiling=TilingOptions(tile_size=tile_size), batch_size=batch)
    clock, folder = Clock(), tempfile.mkdtemp(prefix="cach-bench-ray-")
    t0 = time.perf_counter()
    if executor == "local":
        summary = build_index(folder, paths, load_model(), opts, progress=clock)
    else:
        settings = RaySettings(local_cpus=cores, actors=actors, object_store_mb=256)
        summary = build_index_ray(folder, paths, resolve_heads(DEFAULT_BACKBONE), opts,
                                  progress=clock, settings=settings)
    wall = time.perf_counter() - t0
    return {"tiles": summary.tiles, "wall": wall, "steady": clock.steady(),
            "skipped": len(summary.skipped)}


def merge_rate(units: int = 20, per_unit: int = 2048, bits: int = 64) -> dict:
    """Tiles/s the driver's one writer commits (shard decode + SQLite), with real-sized rows
    (two footprint polygons, float16 tanh outputs)."""
    import numpy as np

    from model_runtime.index.shards import decode_shard, encode_shard
    from model_runtime.index.store import SourceMeta, Store, TileRows
    from model_runtime.index.units import UnitResult, WorkUnit
    from model_runtime.index.writer import IndexWriter
    from model_runtime.raster.refs import SourceRef
    from model_runtime.raster.tiling import TilingOptions

    rng = np.random.default_rng(0)
    poly = {"type": "Polygon", "coordinates": [[[12.4012345, 41.9012345], [12.4112345, 41.9012345],
                                                [12.4112345, 41.9112345], [12.4012345, 41.9112345],
                                                [12.4012345, 41.9012345]]]}
    folder = tempfile.mkdtemp(prefix="cach-bench-merge-")
    writer = IndexWriter(Store(folder, create=True), {"backbone": "b", "bits": bits,
                                                      "heads_sha": "x"})
    blobs = []
    for u in range(units):
        tanh = np.tanh(rng.standard_normal((per_unit, bits))).astype(np.float16)
        rows = TileRows([(i * 256, u * 256, 256, 256, 1) for i in range(per_unit)],
                        [1.0] * per_unit, [poly] * per_unit, [poly] * per_unit,
                        np.packbits(tanh > 0, axis=1), tanh, None)
        meta = SourceMeta(f"/archive/{u}.tif", 1, "1", 0.0, "", "EPSG:4326", 1, 1, {})
        unit = WorkUnit(SourceRef(meta.uri, 1, "1"), 0, per_unit, TilingOptions(), 1)
        blobs.append(encode_shard(UnitResult(unit, meta, rows)))
    t0 = time.perf_counter()
    for blob in blobs:
        writer.commit(decode_shard(blob))
    seconds = time.perf_counter() - t0
    return {"tiles": units * per_unit, "seconds": seconds,
            "tiles_per_s": units * per_unit / seconds}


def child(args: argparse.Namespace) -> int:
    """One configuration, pinned to its cores; prints one JSON line."""
    os.sched_setaffinity(0, set(range(args.cores)))
    os.environ["CACH_ENCODER_THREADS"] = str(args.threads or args.cores)
    from model_runtime.env import configure_process

    configure_process()
    paths = args.paths.split(",")
    if args.executor == "bare":
        out = run_bare(paths, args.tile_size, args.batch)
    else:
        out = run_index(args.executor, paths, args.tile_size, args.batch, args.cores,
                        args.actors)
    print(json.dumps(out))
    return 0


def measure(executor: str, cores: int, args: argparse.Namespace, actors: int | None = None,
            threads: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--executor", executor, "--cores", str(cores),
           "--paths", args.paths, "--tile-size", str(args.tile_size), "--batch", str(args.batch)]
    cmd += ["--actors", str(actors)] if actors else []
    cmd += ["--threads", str(threads)] if threads else []
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"{executor} on {cores} core(s) failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"  {executor} {cores} core(s){f', {actors} actors' if actors else ''}: {out}",
          file=sys.stderr, flush=True)
    return out


def row(name: str, cores: int, out: dict, local: dict | None) -> list:
    steady = out["steady"]
    extra = f"{1000 / steady - 1000 / local['steady']:+.1f}" if local else "-"
    startup = out["wall"] - out["tiles"] / steady if steady == steady else float("nan")
    return [name, cores, out["tiles"], f"{out['wall']:.1f}", f"{steady:.1f}", extra,
            f"{max(startup, 0):.1f}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", default=str(DATA), help="comma-separated folders or s3:// paths")
    ap.add_argument("--tile-size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--cores", default="1,2")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per configuration")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--executor", default="local", help=argparse.SUPPRESS)
    ap.add_argument("--actors", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.cores = int(args.cores)
        return child(args)
    rows = []
    for cores in [int(c) for c in args.cores.split(",") if c]:
        bare = measure("bare", cores, args)
        local = measure("local", cores, args)
        rows += [row("bare encoder (baseline)", cores, bare, None),
                 row("local executor", cores, local, None),
                 row("ray, 1 actor", cores, measure("ray", cores, args, actors=1,
                                                    threads=cores), local)]
        if cores > 1:
            rows.append(row(f"ray, {cores} actors x 1 thread", cores,
                            measure("ray", cores, args, actors=cores, threads=1), local))
    merge = merge_rate()
    print(f"  merge: {merge}", file=sys.stderr)
    rows.append(["merge: shard decode + SQLite commit (driver, 1 writer)", 1, merge["tiles"],
                 f"{merge['seconds']:.1f}", f"{merge['tiles_per_s']:.0f}", "-", "-"])
    table(f"indexing throughput, {args.tile_size}-px tiles, batch {args.batch} "
          f"({os.cpu_count()} cores on this machine, load {os.getloadavg()[0]:.1f})",
          ["configuration", "cores", "tiles", "wall s", "steady tiles/s",
           "ms/tile vs local", "start-up s"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
