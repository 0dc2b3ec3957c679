"""End-to-end speed of the pipeline (``Runtime``), each table with its baseline measured in-run.

    .venv/bin/python bench/bench_e2e.py                         # (a) + (b) at 10k, 100k, 1M
    .venv/bin/python bench/bench_e2e.py --sizes 10000 --queries 20 --rasters resources/samples
    .venv/bin/python bench/bench_e2e.py --skip-index            # only (b)

(a) Indexing: tiles/s of ``Runtime.index`` (tiling thread + encoder + heads + SQLite commits +
    faiss file) against the bare encoder's images/s on the very same tiles held in memory
    (encoder + heads, same batch size). Where time goes: tiling alone, encoder alone, heads,
    and the builder's own split (encode, waiting for tiles, commit).
(b) Text query latency, p50 / p95 over distinct caption texts, through ``Runtime.search``:
    text encoding + Hamming search + float re-rank + SQLite metadata + collapse, on a real
    index store filled with synthetic codes (search cost does not depend on content). Baseline
    in the same run: the same text encoding followed by a faiss ``IndexFlatIP`` over 512-d
    float32 vectors (what a float CLIP index stores), without any metadata. Goal: end-to-end
    p95 <= 100 ms at 1M tiles on 2 cores with one search thread.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tables import table  # noqa: E402  (bench/ runs as scripts)

from model_runtime.pipeline import Runtime  # noqa: E402
from model_runtime.protocol import IndexRequest, SearchRequest  # noqa: E402

K = 20
BATCH = 32




def pct(samples: list[float]) -> str:
    return f"{np.percentile(samples, 50):.1f} / {np.percentile(samples, 95):.1f}"


# --- (a) indexing ---------------------------------------------------------------------------------
def bench_index(rt: Runtime, rasters: Path, repeat: int) -> None:
    import torch

    from model_runtime.raster.sources import list_sources
    from model_runtime.raster.tiling import TilingOptions, iter_tiles

    options = TilingOptions()
    files = [ref.uri for ref in list_sources([rasters])[0]]
    t0 = time.perf_counter()
    arrays = [rgb for path in files for rgb, _ in iter_tiles(path, options)]
    tiling_s = time.perf_counter() - t0
    n = len(arrays)
    print(f"(a) {n} tiles from {len(files)} raster(s) in {rasters}", file=sys.stderr)

    encode = rt.image_encoder()
    encode(arrays[:BATCH])  # warm-up: model load, first-call allocations
    heads = rt.head_module()

    def run_bare() -> tuple[float, float, float]:
        enc_s = head_s = 0.0
        start = time.perf_counter()
        for i in range(0, n, BATCH):
            t = time.perf_counter()
            feats = rt.encoder.encode_images(arrays[i : i + BATCH])
            enc_s += time.perf_counter() - t
            t = time.perf_counter()
            with torch.inference_mode():
                heads.encode_image(torch.from_numpy(feats))
            head_s += time.perf_counter() - t
        return time.perf_counter() - start, enc_s, head_s

    bare = min((run_bare() for _ in range(repeat)), key=lambda r: r[0])
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="cach-bench-idx-") as tmp:
            summary = rt.index(IndexRequest(str(Path(tmp) / "index"), paths=(str(rasters),)))
            runs.append(summary)
    best = min(runs, key=lambda s: s.seconds)
    bare_rate = n / bare[0]
    e2e_rate = best.encoded / best.seconds
    t = best.timing
    other = best.seconds - t.get("encode_s", 0) - t.get("wait_s", 0) - t.get("commit_s", 0)
    table(
        f"(a) indexing throughput, {n} tiles of 224x224, batch {BATCH}, best of {repeat}, "
        f"torch threads {torch.get_num_threads()}",
        ["what", "seconds", "tiles/s", "vs bare encoder"],
        [
            [
                "bare encoder + heads, tiles in memory (baseline)",
                f"{bare[0]:.2f}",
                f"{bare_rate:.1f}",
                "1.00",
            ],
            [
                "cach index end to end (Runtime.index)",
                f"{best.seconds:.2f}",
                f"{e2e_rate:.1f}",
                f"{e2e_rate / bare_rate:.2f}",
            ],
        ],
    )
    table(
        "(a') where the time goes",
        ["part", "seconds", "share of end to end"],
        [
            [
                "tiling alone, sequential (read, mask, resample)",
                f"{tiling_s:.2f}",
                f"{tiling_s / best.seconds:.0%} (overlapped by the tiler thread)",
            ],
            ["bare: image encoder", f"{bare[1]:.2f}", f"{bare[1] / best.seconds:.0%}"],
            ["bare: hash heads", f"{bare[2]:.3f}", f"{bare[2] / best.seconds:.1%}"],
            [
                "index: encode (encoder + heads + checks)",
                f"{t.get('encode_s', 0):.2f}",
                f"{t.get('encode_s', 0) / best.seconds:.0%}",
            ],
            [
                "index: waiting for tiles",
                f"{t.get('wait_s', 0):.2f}",
                f"{t.get('wait_s', 0) / best.seconds:.0%}",
            ],
            [
                "index: SQLite commits",
                f"{t.get('commit_s', 0):.3f}",
                f"{t.get('commit_s', 0) / best.seconds:.1%}",
            ],
            [
                "index: scan, hashing, faiss file, rest",
                f"{other:.2f}",
                f"{other / best.seconds:.0%}",
            ],
        ],
    )


# --- (b) query latency ----------------------------------------------------------------------------
def synthetic_store(folder: Path, n: int, rt: Runtime, rng) -> None:
    from bench_search import synthetic_index

    from model_runtime.index.store import Store

    info = rt.model_info()
    synthetic_index(folder, n, int(info["bits"]), rng)
    store = Store(folder)
    store.set_meta(model=info)  # searchable by this runtime's model
    store.close()


def float512_baseline(n: int, rng):
    import faiss

    index = faiss.IndexFlatIP(512)
    for start in range(0, n, 200_000):
        x = rng.standard_normal((min(200_000, n - start), 512), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        index.add(x)
    proj = rng.standard_normal((384, 512), dtype=np.float32)  # text feature -> 512-d query
    return index, proj


def bench_query(rt: Runtime, sizes: list[int], nq: int, use_float: bool, float_max: int) -> None:
    from model_runtime.captions import load_bank

    rng = np.random.default_rng(0)
    texts = [t for t in load_bank()[::997]][: nq + 1]
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="cach-bench-q-") as tmp:
            t0 = time.perf_counter()
            synthetic_store(Path(tmp), n, rt, rng)
            build_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            rt.search(SearchRequest(tmp, text=texts[0], k=K))  # opens the index once; warm-up
            open_s = time.perf_counter() - t0
            enc, search, total = [], [], []
            for text in texts[1 : nq + 1]:
                res = rt.search(SearchRequest(tmp, text=text, k=K))
                enc.append(res.timing_ms["encode_text"])
                search.append(res.timing_ms["search"])
                total.append(res.timing_ms["total"])
            rt.close()
        base = "skipped"
        if use_float and n <= float_max:
            index, proj = float512_baseline(n, rng)
            lat = []
            for text in texts[1 : nq + 1]:
                t = time.perf_counter()
                feat = rt.encoder.encode_texts([text])
                q = feat @ proj
                index.search(q / np.linalg.norm(q), K)
                lat.append((time.perf_counter() - t) * 1000)
            base = pct(lat)
            del index
        p95 = float(np.percentile(total, 95))
        rows.append(
            [
                f"{n:,}",
                pct(enc),
                pct(search),
                pct(total),
                "yes" if p95 <= 100 else "NO",
                base,
                f"{build_s:.0f} s / {open_s:.1f} s",
            ]
        )
        print(f"  (b) n={n:,} done", file=sys.stderr)
    table(
        f"(b) text query latency, ms p50 / p95 over {nq} captions, k={K}, 1 faiss thread",
        [
            "tiles",
            "text encoding",
            "search + re-rank + metadata",
            "end to end (Runtime.search)",
            "p95 <= 100 ms",
            "baseline: encoding + FlatIP float32[512]",
            "build store / first open",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rasters",
        default=str(ROOT / "resources" / "samples"),
        help="raster folder for (a) (default: resources/samples)",
    )
    ap.add_argument("--repeat", type=int, default=2, help="(a) runs; the best is reported")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="(b) index sizes")
    ap.add_argument("--queries", type=int, default=50, help="(b) queries per size")
    ap.add_argument("--no-float", action="store_true", help="skip the float512 baseline")
    ap.add_argument("--float-max", type=int, default=1_000_000)
    ap.add_argument("--skip-index", action="store_true")
    ap.add_argument("--skip-query", action="store_true")
    ap.add_argument("--heads", help="heads file (default: shipped heads)")
    ap.add_argument("--bits", type=int, default=None)
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import faiss
    import torch

    faiss.omp_set_num_threads(1)  # one search thread, as the goal states
    rt = Runtime(bits=args.bits, heads=args.heads, device=args.device)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"faiss {faiss.__version__}; device {rt.device_name}"
    )
    t0 = time.perf_counter()
    rt.load()
    print(f"model load: {time.perf_counter() - t0:.1f} s ({rt.model_info()['heads']})")
    if not args.skip_index:
        bench_index(rt, Path(args.rasters), args.repeat)
    if not args.skip_query:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        bench_query(rt, sizes, args.queries, not args.no_float, args.float_max)
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (numbers above are noisy when > cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
