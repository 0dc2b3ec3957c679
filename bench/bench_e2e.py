"""End-to-end speed of the pipeline (``Runtime``), each table with its baseline measured in-run.

    .venv/bin/python bench/bench_e2e.py                         # (a) + (b) at 10k, 100k, 1M
    .venv/bin/python bench/bench_e2e.py --sizes 10000 --queries 20 --rasters resources/samples
    .venv/bin/python bench/bench_e2e.py --skip-index            # only (b)

(a) Indexing: tiles/s of ``Runtime.index`` (reader thread + encoder + heads + SQLite commits +
    faiss file) against the bare model's images/s on the very same tiles held in memory: the
    same ``HashModel.encode_images`` (encoder + heads) the index uses, same batch size. Where
    time goes: tiling alone, the bare model, and the builder's own split (encode, waiting for
    tiles, commit).
(b) Text query latency, p50 / p95 over distinct caption texts, through ``Runtime.search``:
    text encoding + Hamming search + float re-rank + SQLite metadata + collapse, on a real
    index store filled with synthetic codes (search cost does not depend on content). Baseline
    in the same run: the same text encoding (``HashModel.encode_texts``) followed by a faiss
    ``IndexFlatIP`` over 512-d float32 vectors (what a float CLIP index stores), without any
    metadata. Goal: end-to-end p95 <= 100 ms at 1M tiles on 2 cores with one search thread.
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


def default_model(rt: Runtime):
    """The model a new index gets (the one ``Runtime.index`` encodes with), loaded once."""
    return rt.models.get(rt.indexes.default_heads())


def pct(samples: list[float]) -> str:
    return f"{np.percentile(samples, 50):.1f} / {np.percentile(samples, 95):.1f}"


# --- (a) indexing ---------------------------------------------------------------------------------
def bench_index(rt: Runtime, rasters: Path, repeat: int) -> None:
    from model_runtime.raster.sources import list_sources
    from model_runtime.raster.tiling import TilingOptions, iter_tiles

    options = TilingOptions()
    files = [ref.uri for ref in list_sources([rasters])[0]]
    t0 = time.perf_counter()
    arrays = [rgb for path in files for rgb, _ in iter_tiles(path, options)]
    tiling_s = time.perf_counter() - t0
    n = len(arrays)
    print(f"(a) {n} tiles from {len(files)} raster(s) in {rasters}", file=sys.stderr)

    model = default_model(rt)
    batch = int(getattr(model, "preferred_batch", 32) or 32)  # the builder's batch size
    model.encode_images(arrays[:batch])  # warm-up: first-call allocations

    def run_bare() -> float:
        start = time.perf_counter()
        for i in range(0, n, batch):
            model.encode_images(np.stack(arrays[i : i + batch]))
        return time.perf_counter() - start

    bare = min(run_bare() for _ in range(repeat))
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="cach-bench-idx-") as tmp:
            runs.append(rt.index(IndexRequest(str(Path(tmp) / "index"), paths=(str(rasters),))))
    best = min(runs, key=lambda s: s.seconds)
    bare_rate, e2e_rate = n / bare, best.encoded / best.seconds
    table(
        f"(a) indexing throughput, {n} tiles of {model.input_size}x{model.input_size}, "
        f"batch {batch}, best of {repeat}, {model.backend} {model.precision}, "
        f"{model.lanes} encoder lane(s)",
        ["what", "seconds", "tiles/s", "vs bare encoder"],
        [
            [
                "bare encode_images, tiles in memory (baseline)",
                f"{bare:.2f}",
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
    where_time_goes(best.seconds, best.timing, bare, tiling_s, inline=model.lanes == 1)


def where_time_goes(total: float, timing: dict, bare: float, tiling_s: float, inline: bool):
    """Table (a'): the builder's split of one run. Its main thread waits for tiles, waits for
    the model's results, commits, and does the rest; the model's busy time runs beside those
    waits when it has several lanes, and on the main thread (inside none of them) with one."""
    encode, wait = timing.get("encode_s", 0.0), timing.get("wait_s", 0.0)
    results, commit = timing.get("encoder_wait_s", 0.0), timing.get("commit_s", 0.0)
    rest = total - wait - results - commit - (encode if inline else 0.0)

    def row(part: str, seconds: float, note: str = "") -> list[str]:
        return [part, f"{seconds:.3f}", f"{seconds / total:.1%}{note}"]

    table(
        "(a') where the time goes",
        ["part", "seconds", "share of end to end"],
        [
            row(
                "tiling alone, sequential (read, mask, resample)",
                tiling_s,
                " (overlapped by the reader threads)",
            ),
            row("bare: encode_images (encoder + heads)", bare),
            row(
                "index: model busy (encoder + heads)",
                encode,
                "" if inline else " (beside the waits below)",
            ),
            row("index: waiting for tiles", wait),
            row("index: waiting for the model's results", results),
            row("index: SQLite commits", commit),
            row("index: scan, hashing, faiss file, rest", rest),
        ],
    )


# --- (b) query latency ----------------------------------------------------------------------------
def synthetic_store(folder: Path, n: int, rt: Runtime, rng) -> None:
    from bench_search import synthetic_index

    from model_runtime.index.store import Store

    heads = rt.indexes.default_heads()
    synthetic_index(folder, n, heads.bits, rng)
    store = Store(folder)
    store.set_meta(model=heads.info().to_json())  # searchable by this runtime's model
    store.close()


def float512_baseline(n: int, dim: int, rng):
    import faiss

    index = faiss.IndexFlatIP(512)
    for start in range(0, n, 200_000):
        x = rng.standard_normal((min(200_000, n - start), 512), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        index.add(x)
    proj = rng.standard_normal((dim, 512), dtype=np.float32)  # text output -> 512-d query
    return index, proj


def bench_query(rt: Runtime, sizes: list[int], nq: int, use_float: bool, float_max: int) -> None:
    from model_runtime.captions import load_bank

    rng = np.random.default_rng(0)
    model = default_model(rt)
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
            index, proj = float512_baseline(n, model.bits, rng)
            lat = []
            for text in texts[1 : nq + 1]:
                t = time.perf_counter()
                q = model.encode_texts([text]) @ proj
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
    ap.add_argument("--backend", help="onnx, openvino or torch (default: the runtime's)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import faiss
    import torch

    faiss.omp_set_num_threads(1)  # one search thread, as the goal states
    rt = Runtime(bits=args.bits, heads=args.heads, device=args.device, backend=args.backend)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"faiss {faiss.__version__}; device {rt.device_name}"
    )
    t0 = time.perf_counter()
    info = rt.load()  # the default model, warmed up
    print(
        f"model load: {time.perf_counter() - t0:.1f} s ({info['heads']}, {info['backend']} "
        f"{info['precision']} on {info['device']})"
    )
    if not args.skip_index:
        bench_index(rt, Path(args.rasters), args.repeat)
    if not args.skip_query:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        bench_query(rt, sizes, args.queries, not args.no_float, args.float_max)
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (numbers above are noisy when > cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
