"""Indexing speed against the bare encoder, in one table (median of ``--repeat`` runs).

    .venv/bin/python bench/bench_index_speed.py                  # the record run (~10 min)
    .venv/bin/python bench/bench_index_speed.py --quick          # small sizes, one run
    .venv/bin/python bench/bench_index_speed.py --split          # + the reader/encoder core split

Rows, all in this run and on the same tiles:
  * bare torch forward of the image tower (channels_last, batch 32, all cores): the baseline;
  * bare forward of each backend/precision (uint8 batches of 32 -> tanh through the whole graph):
    one call at a time (a batch split over the encoder lanes), and with every lane kept busy
    (``submit_images``, as the builder runs it); "vs bare same engine" divides by the faster;
  * ``cach index`` end to end (a fresh index each run, the real CLI in a subprocess) over a
    folder of >= 1,000 UCM scene images (JPEG) and over one 8192 x 8192 GeoTIFF mosaic made from
    the sample rasters (JPEG-in-TIFF, 256 px blocks, overviews 2-16; tiles at scales 1 and 2).
Then where the time goes: reading alone (open + decode + mask + resample, one thread), decode
alone, and the run's own split (encode, waiting for tiles, SQLite commits, the rest: scan,
model load, faiss file). ``--split`` measures reader threads x encoder lanes.
``--markdown FILE`` appends the tables as markdown (bench/gpu.sh uses it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_engines import BATCH, bare_model_forward, bare_model_lanes, median_rate  # noqa: E402,E501
from tables import table  # noqa: E402  (bench/ runs as scripts)

from model_runtime.env import configure_process  # noqa: E402

CACH = [sys.executable, "-m", "model_runtime"]
MARKDOWN: list[str] = []
#: ready tiles for the bare rows (8 batches of 32, so two lanes end together)
BARE_TILES = 256


def emit(title: str, header: list[str], rows: list[list]) -> None:
    """Print a table and keep its markdown for ``--markdown``."""
    table(title, header, rows)
    MARKDOWN.extend([f"\n**{title}**\n", "| " + " | ".join(header) + " |",
                     "|" + "---|" * len(header)])
    MARKDOWN.extend("| " + " | ".join(str(x) for x in row) + " |" for row in rows)


# --- inputs ----------------------------------------------------------------------------------
def scene_folder(tmp: Path, n: int) -> Path:
    """``n`` UCM images (the same count from each class) copied into one folder."""
    from model_runtime.data.datasets import load_ucm

    items = load_ucm().items
    classes = sorted({it.label for it in items})
    per = -(-n // len(classes))
    folder = tmp / "scenes"
    folder.mkdir()
    for label in classes:
        for it in [i for i in items if i.label == label][:per]:
            shutil.copy(it.image, folder / it.image.name)
    return folder


def mosaic(tmp: Path, size: int) -> Path:
    """A ``size`` x ``size`` RGB GeoTIFF tiled from the sample rasters (flipped and rotated so
    no two blocks are alike), JPEG-compressed in 256 px blocks, with overviews 2-16."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin

    from model_runtime.paths import SAMPLES_DIR

    with rasterio.open(SAMPLES_DIR / "cogeo.tif") as src:
        base = src.read([1, 2, 3])
        x0, y0, res = src.transform.c, src.transform.f, src.transform.a
    side = base.shape[1]
    views = [np.rot90(base, k, axes=(1, 2)) for k in range(4)]
    views += [v[:, ::-1] for v in views]
    out = np.empty((3, size, size), np.uint8)
    for i, r in enumerate(range(0, size, side)):
        for j, c in enumerate(range(0, size, side)):
            out[:, r : r + side, c : c + side] = views[(i * 3 + j) % len(views)][
                :, : size - r, : size - c]
    path = tmp / f"mosaic{size}.tif"
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:3857", "transform": from_origin(x0, y0, res, res), "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "JPEG", "photometric": "YCBCR",
               "jpeg_quality": 90}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(out)
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4, 8, 16], Resampling.average)
    return path


def expand(paths: list[Path]) -> list[Path]:
    """Folders -> the image files in them (sorted)."""
    return [f for p in paths for f in (sorted(x for x in p.iterdir() if x.is_file())
                                       if p.is_dir() else [p])]


def tiles_of(paths: list[Path], options) -> list[np.ndarray]:
    from model_runtime.raster.tiling import iter_tiles

    return [rgb for p in expand(paths) for rgb, _ in iter_tiles(p, options)]


# --- where reading goes ----------------------------------------------------------------------
def read_seconds(paths: list[Path], options) -> float:
    start = time.perf_counter()
    tiles_of(paths, options)
    return time.perf_counter() - start


def decode_seconds(paths: list[Path], options) -> float:
    """Decoding alone: JPEGs through Pillow (draft as the reader uses it), other rasters each
    window read at the shape the reader asks GDAL for (no mask, no resample)."""
    import rasterio
    from PIL import Image
    from rasterio.windows import Window

    from model_runtime.raster import tiling

    start = time.perf_counter()
    for path in expand(paths):
        if path.suffix.lower() in (".jpg", ".jpeg"):
            with Image.open(path) as img:
                img.load()
            continue
        info = tiling.raster_info(path, options)
        with rasterio.open(path) as src:
            for col, row, width, height, _ in info.windows:
                out = tiling._out_shape(info, width, height, options)
                shape = tiling._read_shape(src, (height, width), out)
                src.read([1, 2, 3], window=Window(col, row, width, height),
                         out_shape=(3, *shape))
    return time.perf_counter() - start


# --- runs ------------------------------------------------------------------------------------
def bare_torch(tiles: np.ndarray, repeat: int, device: str) -> float:
    """img/s of the torch image tower alone (channels_last, batch 32; fp16 autocast on CUDA)."""
    import torch

    from model_runtime.config import get_backbone_config
    from model_runtime.model.torch_model import shared_encoder

    visual = shared_encoder(get_backbone_config("effnetlite0-minilm"), device).model.visual
    visual = visual.to(memory_format=torch.channels_last)
    x = torch.from_numpy(tiles).to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    batches = [x[i : i + BATCH].contiguous(memory_format=torch.channels_last)
               for i in range(0, len(x), BATCH)]
    cuda = device.startswith("cuda")

    def run() -> None:
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=cuda):
            for b in batches:
                visual(b)
        if cuda:
            torch.cuda.synchronize()

    run()
    return median_rate(run, len(x), repeat)


def bare_rows(variant: str, tiles: np.ndarray, device: str, repeat: int,
              base: float) -> tuple[list, float]:
    """The bare-forward rows of one variant, and the rate its end-to-end rows are divided by
    (the faster of one call at a time and every lane busy)."""
    from model_runtime.model import load_model

    backend, _, precision = variant.partition(":")
    model = load_model(backend=backend, bits=64, device=device, precision=precision or None)
    try:
        name = f"{model.backend} {model.precision}"
        rates = {f"bare forward, {name} (+ heads), one call at a time":
                 bare_model_forward(model, tiles, repeat)}
        if model.lanes > 1:
            rates[f"bare forward, {name} (+ heads), {model.lanes} lanes busy"] = \
                bare_model_lanes(model, tiles, repeat)
    finally:
        model.close()
    best = max(rates.values())
    rows = [[what, len(tiles), f"{rate:.1f}", f"{rate / base:.2f}", f"{rate / best:.2f}", "-"]
            for what, rate in rates.items()]
    return rows, best


def cach_index(paths: list[Path], variant: str, device: str, extra: list[str],
               env: dict | None = None) -> dict:
    """One ``cach index`` run into a fresh index: its JSON summary plus the process wall."""
    backend, _, precision = variant.partition(":")
    with tempfile.TemporaryDirectory(prefix="cach-bench-index-") as tmp:
        cmd = [*CACH, "index", *map(str, paths), "--index", tmp, "--json", "--yes",
               "--backend", backend, "--device", device, *extra]
        run_env = {**os.environ, **(env or {})}
        if precision:
            run_env["CACH_PRECISION"] = precision
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=run_env, cwd=ROOT)
        wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"cach index failed: {out.stderr[-2000:]}")
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    return {**summary, "wall": wall}


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


SPLIT_RUNNER = """
import json, sys, tempfile
from model_runtime.env import configure_process
configure_process()
from model_runtime.pipeline import Pipeline
from model_runtime.protocol import IndexRequest
with tempfile.TemporaryDirectory() as tmp:
    req = IndexRequest(tmp, paths=tuple(sys.argv[3:]))
    s = Pipeline(backend=sys.argv[1]).index(req, readers=int(sys.argv[2]))
print(json.dumps(s.to_json()))
"""


def split_run(paths: list[Path], backend: str, readers: int, lanes: int) -> dict:
    """The builder (``cach index``'s code path) with ``readers`` reader threads and the
    encoder's threads in ``lanes`` concurrent calls (``CACH_ENCODER_LANES``)."""
    env = {**os.environ, "CACH_ENCODER_LANES": str(lanes)}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", SPLIT_RUNNER, backend, str(readers),
                          *map(str, paths)], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return {**json.loads(out.stdout.strip().splitlines()[-1]),
            "wall": time.perf_counter() - start}


def core_split(sets: dict, backend: str, repeat: int) -> None:
    rows = []
    cores = len(os.sched_getaffinity(0))
    for name, (paths, _) in sets.items():
        for readers in (1, 2):
            for lanes in (1, 2):
                runs = [split_run(paths, backend, readers, lanes) for _ in range(repeat)]
                r = median_run(runs)
                t = r["timing_s"]
                rows.append([name, readers, lanes, max(1, cores // lanes),
                             f"{r['encoded'] / r['seconds']:.1f}",
                             f"{t.get('encode_s', 0):.1f}", f"{t.get('wait_s', 0):.1f}"])
                print(f"  split {name} readers={readers} lanes={lanes} done",
                      file=sys.stderr, flush=True)
    emit(f"core split on {cores} cores, {backend}, median of {repeat}",
         ["input", "reader threads", "encoder lanes", "threads per lane", "tiles/s",
          "encoder busy s", "wait for tiles s"], rows)


def e2e_rows(sets: dict, variants: list[str], device: str, repeat: int, base: float,
             bare: dict) -> tuple[list, dict]:
    rows, runs_by = [], {}
    for name, (paths, extra) in sets.items():
        for variant in variants:
            runs = [cach_index(paths, variant, device, extra) for _ in range(repeat)]
            r = median_run(runs)
            runs_by[(name, variant)] = r
            rate = r["encoded"] / r["seconds"]
            rows.append([f"cach index end to end: {name}, {variant}", r["encoded"],
                         f"{rate:.1f}", f"{rate / base:.2f}",
                         f"{rate / bare[variant]:.2f}" if variant in bare else "-",
                         f"{r['wall']:.1f}"])
            print(f"  e2e {name} {variant} done", file=sys.stderr, flush=True)
    return rows, runs_by


def breakdown(sets: dict, runs_by: dict, variants: list[str], bare: dict, options) -> None:
    rows = []
    for name, (paths, _) in sets.items():
        opts = options[name]
        read_s, dec_s = read_seconds(paths, opts), decode_seconds(paths, opts)
        for variant in variants:
            r = runs_by[(name, variant)]
            n, t, total = r["encoded"], r["timing_s"], r["seconds"]
            enc_bare = n / bare[variant] if variant in bare else float("nan")
            rows.append([name, variant, f"{total:.1f}", f"{read_s:.1f}", f"{dec_s:.1f}",
                         f"{read_s - dec_s:.1f}", f"{enc_bare:.1f}",
                         f"{t.get('encode_s', 0):.1f}", f"{t.get('wait_s', 0):.1f}",
                         f"{t.get('encoder_wait_s', 0):.1f}", f"{t.get('commit_s', 0):.2f}",
                         f"{total - t.get('encode_s', 0):.1f}"])
    emit("where the time goes (seconds; read/decode/resample: one thread, alone; bare encode: "
         "the tiles at the bare rate; the run's own timing: encoder busy (a batch in flight), "
         "its main thread waiting for tiles and for the encoder, SQLite commits (overlapping "
         "the encoder), and the run's wall outside the encoder: scan, model load, faiss file)",
         ["input", "engine", "end to end", "read alone", "decode", "mask+resample+rest",
          "bare encode", "run: encoder busy", "run: wait for tiles", "run: wait for encoder",
          "run: commit", "run: outside the encoder"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="torch,onnx,openvino", help="backend[:precision],...")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scenes", type=int, default=1050, help="UCM images indexed (>= 1,000)")
    ap.add_argument("--mosaic", type=int, default=8192, help="side of the GeoTIFF mosaic, px")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="210 scenes, 2048 px, one run")
    ap.add_argument("--split", action="store_true", help="also sweep readers x encoder lanes")
    ap.add_argument("--split-backend", default="onnx")
    ap.add_argument("--markdown", help="append the tables as markdown to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.scenes, args.mosaic, args.repeat = 210, 2048, 1
    configure_process()
    from model_runtime.raster.tiling import TilingOptions

    variants = args.variants.split(",")
    with tempfile.TemporaryDirectory(prefix="cach-bench-speed-") as tmp:
        sets = {f"{args.scenes} UCM scenes (JPEG)": ([scene_folder(Path(tmp), args.scenes)], []),
                f"GeoTIFF {args.mosaic} px, scales 1,2": ([mosaic(Path(tmp), args.mosaic)],
                                                          ["--scales", "1,2"])}
        options = dict(zip(sets, [TilingOptions(), TilingOptions(scales=(1, 2))], strict=True))
        files = [p for paths, _ in sets.values() for p in paths]
        tiles = np.stack(tiles_of(sorted(files[0].glob("*.jpg"))[:BARE_TILES], TilingOptions()))
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
              f"device {args.device}", flush=True)
        base = bare_torch(tiles, args.repeat, args.device)
        rows = [["bare torch forward, image tower (baseline)", len(tiles), f"{base:.1f}",
                 "1.00", "-", "-"]]
        bare = {}
        for variant in variants:
            variant_rows, bare[variant] = bare_rows(variant, tiles, args.device, args.repeat, base)
            rows += variant_rows
        e2e, runs_by = e2e_rows(sets, variants, args.device, args.repeat, base, bare)
        emit(f"indexing speed, median of {args.repeat}, batch {BATCH}, {os.cpu_count()} cores",
             ["what", "tiles", "tiles/s", "vs bare torch", "vs bare same engine",
              "process wall s"], rows + e2e)
        breakdown(sets, runs_by, variants, bare, options)
        if args.split:
            core_split(sets, args.split_backend, args.repeat)
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (noisy when above the core count)")
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as fh:
            fh.write("\n".join(MARKDOWN) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
