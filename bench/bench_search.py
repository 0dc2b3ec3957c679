"""Search latency, memory per tile and re-rank quality of the hash index, with in-run baselines.

    .venv/bin/python bench/bench_search.py                      # 10k, 100k, 1M codes
    .venv/bin/python bench/bench_search.py --sizes 10000,100000 --e2e-sizes 10000 --quick
    .venv/bin/python bench/bench_search.py --sizes 10000000 --no-float   # 10M binary only

Tables:
  (b) search alone, one faiss thread, k=20, one query at a time: IndexBinaryFlat over packed
      codes (64 and 128 bits) vs IndexFlatIP over 512-d float32 (a float CLIP index) and over
      the model's own pre-binarisation outputs (float32 [bits]); ratio = float512 / binary.
      Plus ``Index.search`` end to end (faiss + SQLite metadata + collapse, and re-rank) on a
      synthetic index of that size.
  (c) bytes per tile: in RAM (codes + ids) and on disk (SQLite store incl. re-rank floats).
  (d) re-rank quality on class-structured synthetic tanh outputs (or --codes FILE.npz with
      db, db_labels, query, query_labels arrays of real tanh outputs): mAP@20 / P@10 of
      Hamming ranking vs Hamming top-pool re-ranked by cosine.
Synthetic codes are uniform random bytes: exhaustive search cost does not depend on content.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tables import table  # noqa: E402  (bench/ runs as scripts)

from model_runtime.index.binary import pack  # noqa: E402
from model_runtime.index.query import open_index  # noqa: E402
from model_runtime.index.store import Store  # noqa: E402
from model_runtime.index.writer import finalize  # noqa: E402
from model_runtime.raster.tiling import TilingOptions  # noqa: E402

K = 20


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples_ms, 50)), float(np.percentile(samples_ms, 95))


def time_queries(search, queries, repeat: int) -> tuple[float, float]:
    search(queries[0])  # warm-up
    out = []
    for i in range(repeat):
        t0 = time.perf_counter()
        search(queries[i % len(queries)])
        out.append((time.perf_counter() - t0) * 1000)
    return percentiles(out)


def bench_binary(n: int, bits: int, nq: int, rng) -> tuple[float, float]:
    index = faiss.IndexBinaryFlat(bits)
    chunk = 1_000_000
    for start in range(0, n, chunk):
        index.add(rng.integers(0, 256, (min(chunk, n - start), bits // 8), dtype=np.uint8))
    queries = rng.integers(0, 256, (nq, 1, bits // 8), dtype=np.uint8)
    return time_queries(lambda q: index.search(q, K), queries, nq)


def bench_float(n: int, dim: int, nq: int, rng) -> tuple[float, float]:
    index = faiss.IndexFlatIP(dim)
    chunk = 200_000
    for start in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        index.add(x)
    queries = rng.standard_normal((nq, 1, dim), dtype=np.float32)
    return time_queries(lambda q: index.search(q, K), queries, nq)


POLY = json.dumps(
    {
        "type": "Polygon",
        "coordinates": [[[0.0, 0.0], [0.0, 0.001], [0.001, 0.001], [0.001, 0.0], [0.0, 0.0]]],
    }
)


def synthetic_index(folder: Path, n: int, bits: int, rng) -> Path:
    """An index of n tiles (1000 per fake source) written straight into the store."""
    store = Store(folder, create=True)
    store.set_meta(
        model={"backbone": "synthetic", "bits": bits, "heads_sha": "none"},
        tiling=json.loads(json.dumps(TilingOptions().to_json())),
        store_floats=True,
    )
    per_source = 1000
    with store.transaction() as tx:
        for s in range(0, n, per_source):
            m = min(per_source, n - s)
            cur = tx.execute(
                "INSERT INTO sources(path, size, mtime, sha1, status, crs, width, height, info, "
                "tiles, indexed_at) VALUES (?, 1, 1, 'x', 'done', 'EPSG:32633', 8192, 8192, "
                "'{}', ?, 'now')",
                (f"/synthetic/{s // per_source}.tif", m),
            )
            sid = cur.lastrowid
            tanh = np.tanh(rng.standard_normal((m, bits), dtype=np.float32))
            codes = pack(tanh)
            feats = tanh.astype(np.float16)
            tx.executemany(
                "INSERT INTO tiles(source_id, col, row, width, height, scale, valid, footprint, "
                "footprint_src, code, feats) VALUES (?, ?, ?, 256, 256, 1, 1.0, ?, ?, ?, ?)",
                (
                    (
                        sid,
                        (i % 32) * 256,
                        (i // 32) * 256,
                        POLY,
                        POLY,
                        codes[i].tobytes(),
                        feats[i].tobytes(),
                    )
                    for i in range(m)
                ),
            )
        tx.execute(
            "INSERT INTO tiles_bbox(id, minx, maxx, miny, maxy) "
            "SELECT id, 0, 0.001, 0, 0.001 FROM tiles"
        )
        store._bump(tx)
    finalize(store, bits)
    store.close()
    return folder


def bench_e2e(n: int, bits: int, nq: int, rng) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory(prefix="cach-bench-") as tmp:
        t0 = time.perf_counter()
        synthetic_index(Path(tmp), n, bits, rng)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = open_index(tmp)
        open_ms = (time.perf_counter() - t0) * 1000
        floats = [np.tanh(rng.standard_normal(bits, dtype=np.float32)) for _ in range(nq)]
        codes = [pack(f)[0] for f in floats]
        out = {
            "Index.search code, collapse": time_queries(lambda q: index.search(q, K), codes, nq),
            "Index.search code, no collapse": time_queries(
                lambda q: index.search(q, K, collapse=False), codes, nq
            ),
            "Index.search float, re-rank": time_queries(lambda q: index.search(q, K), floats, nq),
        }
        db_bytes = (Path(tmp) / "index.sqlite").stat().st_size
        wal = Path(tmp) / "index.sqlite-wal"
        db_bytes += wal.stat().st_size if wal.exists() else 0
        index.close()
    out["_open_ms"] = open_ms
    out["_build_s"] = build_s
    out["_db_bytes_per_tile"] = db_bytes / n
    return out


def average_precision_at(ranked_rel: np.ndarray, k: int) -> float:
    rel = ranked_rel[:k]
    if rel.sum() == 0:
        return 0.0
    precision = np.cumsum(rel) / np.arange(1, len(rel) + 1)
    return float((precision * rel).sum() / rel.sum())


def synthetic_tanh(rng, bits: int, n_db: int, n_q: int, classes: int = 21):
    centres = rng.standard_normal((classes, bits)).astype(np.float32)
    db_labels = rng.integers(0, classes, n_db)
    q_labels = rng.integers(0, classes, n_q)
    db = np.tanh(1.5 * (centres[db_labels] + 1.3 * rng.standard_normal((n_db, bits))))
    q = np.tanh(1.5 * (centres[q_labels] + 1.3 * rng.standard_normal((n_q, bits))))
    return db.astype(np.float32), db_labels, q.astype(np.float32), q_labels


def bench_rerank(
    db, db_labels, q, q_labels, pools=(50, 100, 200)
) -> list[tuple[str, float, float]]:
    bits = db.shape[1]
    index = faiss.IndexBinaryFlat(bits)
    index.add(pack(db))
    qcodes = pack(q)
    big = max(pools)
    _, cand = index.search(qcodes, big)
    dbn = db / np.linalg.norm(db, axis=1, keepdims=True)
    rows = []
    for name, pool in [("Hamming only", 0)] + [(f"re-rank top {p}", p) for p in pools]:
        maps, p10 = [], []
        for i in range(len(q)):
            ids = cand[i]
            if pool:
                top = ids[:pool]
                cos = dbn[top] @ q[i]
                ids = top[np.argsort(-cos, kind="stable")]
            rel = (db_labels[ids] == q_labels[i]).astype(np.float64)
            maps.append(average_precision_at(rel, 20))
            p10.append(rel[:10].mean())
        rows.append((name, float(np.mean(maps)), float(np.mean(p10))))
    return rows




def fmt(p: tuple[float, float] | None) -> str:
    return "skipped" if p is None else f"{p[0]:.3f} / {p[1]:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--bits", default="64,128")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument(
        "--float-max",
        type=int,
        default=2_000_000,
        help="skip float baselines above this many vectors (512-d = 2 KiB each)",
    )
    ap.add_argument("--no-float", action="store_true")
    ap.add_argument("--e2e-sizes", default="100000")
    ap.add_argument("--codes", help=".npz with db, db_labels, query, query_labels (tanh)")
    ap.add_argument("--quick", action="store_true", help="fewer queries, for a smoke run")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    nq = 20 if args.quick else args.queries
    sizes = [int(s) for s in args.sizes.split(",") if s]
    bit_list = [int(b) for b in args.bits.split(",") if b]

    rows = []
    for n in sizes:
        use_float = not args.no_float and n <= args.float_max
        f512 = bench_float(n, 512, nq, rng) if use_float else None
        for bits in bit_list:
            binary = bench_binary(n, bits, nq, rng)
            fbits = bench_float(n, bits, nq, rng) if use_float else None
            ratio = f"{f512[0] / binary[0]:.0f}x" if f512 else "n/a"
            ratio_own = f"{fbits[0] / binary[0]:.1f}x" if fbits else "n/a"
            rows.append([f"{n:,}", bits, fmt(binary), fmt(fbits), fmt(f512), ratio, ratio_own])
            print(f"  done n={n:,} bits={bits}", file=sys.stderr)
    table(
        "(b) search alone, ms p50 / p95, k=20, 1 thread (faiss " + faiss.__version__ + ")",
        [
            "codes",
            "bits",
            "IndexBinaryFlat",
            "FlatIP float32[bits]",
            "FlatIP float32[512]",
            "float512 / binary",
            "float[bits] / binary",
        ],
        rows,
    )

    e2e_rows, mem_disk = [], {}
    for n in [int(s) for s in args.e2e_sizes.split(",") if s]:
        for bits in bit_list:
            res = bench_e2e(n, bits, nq, rng)
            mem_disk[bits] = res["_db_bytes_per_tile"]
            for name, p in res.items():
                if not name.startswith("_"):
                    e2e_rows.append([f"{n:,}", bits, name, fmt(p)])
            e2e_rows.append(
                [f"{n:,}", bits, "open_index (faiss file load)", f"{res['_open_ms']:.0f} ms once"]
            )
            print(f"  e2e n={n:,} bits={bits}", file=sys.stderr)
    if e2e_rows:
        table(
            "(b') Index.search incl. SQLite metadata, ms p50 / p95 (synthetic index)",
            ["tiles", "bits", "what", "p50 / p95"],
            e2e_rows,
        )

    mem_rows = []
    for bits in bit_list:
        ram = bits // 8 + 8
        mem_rows.append(
            [
                bits,
                ram,
                4 * bits,
                2048,
                f"{2048 / ram:.0f}x",
                f"{2048 / (bits // 8):.0f}x",
                2 * bits,
                f"{mem_disk.get(bits, float('nan')):.0f}",
            ]
        )
    table(
        "(c) bytes per tile",
        [
            "bits",
            "RAM: code + id",
            "float32[bits]",
            "float32[512]",
            "512 / RAM",
            "512 / code",
            "re-rank fp16 (disk)",
            "SQLite store on disk (all)",
        ],
        mem_rows,
    )

    if args.codes:
        data = np.load(args.codes)
        sets = [("real", data["db"], data["db_labels"], data["query"], data["query_labels"])]
    else:
        sets = [(f"synthetic {b} bits", *synthetic_tanh(rng, b, 20000, 500)) for b in bit_list]
    rr_rows = []
    for name, db, dbl, q, ql in sets:
        for method, m, p in bench_rerank(db, dbl, q, ql):
            rr_rows.append([name, method, f"{m:.4f}", f"{p:.4f}"])
    table(
        "(d) re-rank quality (relevance = same class)",
        ["data", "ranking", "mAP@20", "P@10"],
        rr_rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
