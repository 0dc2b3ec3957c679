"""Refining a search with marks at archive scale, through ``Pipeline.search`` (the product path).

    nice -n 10 .venv/bin/python bench/bench_refine.py --tiles 1000000 [--keep DIR]

A synthetic index (random codes, tanh outputs and 256-d projections, float16 as indexing stores
them; 1,000 tiles per fake source) is written straight into the store in big transactions, with
the shipped 64-bit heads' identity so text queries run the real text encoder. Then, in one
process:

- **cold**: the first refined search (text + 20 marks): opening the index, reading every tile's
  features into RAM (``Index.feature_blocks``), fitting, scoring every tile;
- **warm**: further refined searches with other marks (fit + score all tiles + metadata +
  collapse), p50 / p95 of ``timing_ms.total``;
- **baselines in the same run**: the plain text search and today's weighted sum of vectors
  (``learn=False``) with the same marks, on the same open index.

Memory: the feature blocks' bytes and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tables import table  # noqa: E402  (bench/ runs as scripts)

from model_runtime.codes import pack  # noqa: E402
from model_runtime.pipeline import Pipeline  # noqa: E402
from model_runtime.protocol import SearchRequest  # noqa: E402

PER_SOURCE = 1000
TEXTS = ["an aerial image of a harbour", "a residential area with houses", "a dense forest",
         "a river crossing farmland", "an airport runway", "a parking lot with cars"]


def write_index(folder: Path, n: int, proj_dim: int = 256, seed: int = 0) -> float:
    """A complete n-tile index written through the store; returns the seconds it took."""
    from model_runtime.index.store import Store
    from model_runtime.index.writer import finalize
    from model_runtime.model.heads import read_heads
    from model_runtime.paths import HEADS_DIR

    start = time.perf_counter()
    heads = read_heads(HEADS_DIR / "cach-effnetlite0-minilm-64.safetensors")
    rng = np.random.default_rng(seed)
    store = Store(folder, create=True)
    store.set_meta(model=heads.info().to_json(), complete=True)
    with store.transaction() as tx:
        for s in range(0, n, PER_SOURCE):
            m = min(PER_SOURCE, n - s)
            sid = tx.execute(
                "INSERT INTO sources(path, size, mtime, sha1, status, crs, width, height, info, "
                "tiles, indexed_at) VALUES (?, 1, 1, 'x', 'done', NULL, 8192, 8192, '{}', ?, "
                "'now')", (f"/synthetic/{s // PER_SOURCE}.tif", m)).lastrowid
            tanh = np.tanh(rng.standard_normal((m, 64), dtype=np.float32))
            codes = pack(tanh)
            feats = tanh.astype(np.float16)
            proj = rng.standard_normal((m, proj_dim), dtype=np.float32).astype(np.float16)
            tx.executemany(
                "INSERT INTO tiles(source_id, col, row, width, height, scale, valid, footprint,"
                " footprint_src, code, feats, proj) VALUES (?, ?, ?, 256, 256, 1, 1.0, NULL, "
                "'{}', ?, ?, ?)",
                ((sid, (i % 32) * 256, (i // 32) * 256, codes[i].tobytes(), feats[i].tobytes(),
                  proj[i].tobytes()) for i in range(m)))
        store._bump(tx)
    finalize(store, 64)
    store.close()
    return time.perf_counter() - start


def pct(samples: list[float]) -> str:
    return f"{np.percentile(samples, 50):.0f} / {np.percentile(samples, 95):.0f}"


def run(folder: Path, n: int, queries: int) -> None:
    rng = np.random.default_rng(1)
    rt = Pipeline()
    where = str(folder)
    rt.search(SearchRequest(where, text=TEXTS[0], k=20))  # loads the model, opens the index

    def marks():
        ids = rng.choice(np.arange(1, n + 1), 20, replace=False).tolist()
        return tuple(ids[:6]), tuple(ids[6:])

    pos, neg = marks()
    t0 = time.perf_counter()
    first = rt.search(SearchRequest(where, text=TEXTS[0], positive=pos, negative=neg, k=20))
    cold = time.perf_counter() - t0
    index, _ = rt.indexes.open(folder)
    blocks = index.feature_blocks()
    plain, summed, refined, fit = [], [], [], []
    for q in range(queries):
        text = TEXTS[q % len(TEXTS)]
        pos, neg = marks()
        plain.append(rt.search(SearchRequest(where, text=text, k=20)).timing_ms["total"])
        summed.append(rt.search(SearchRequest(where, text=text, positive=pos, negative=neg,
                                              k=20, learn=False)).timing_ms["total"])
        res = rt.search(SearchRequest(where, text=text, positive=pos, negative=neg, k=20))
        refined.append(res.timing_ms["total"])
        fit.append(res.timing_ms["fit"])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table(f"refine over {n:,} tiles: ms p50 / p95 over {queries} searches (text + 20 marks, k=20)",
          ["search", "ms p50 / p95", "note"],
          [["plain text search (baseline)", pct(plain), "Hamming pool + re-rank"],
           ["weighted sum of marks, learn=False (baseline)", pct(summed), "today's refine"],
           ["**learner, warm** (fit + score all tiles)", pct(refined),
            f"of which fit {pct(fit)}"],
           ["learner, cold (first refine: read features)", f"{cold * 1000:.0f}",
            f"first result {first.results[0].tile_id}"]])
    print(f"\nfeature blocks in RAM: {blocks.nbytes / 2**20:.0f} MiB "
          f"({blocks.nbytes / n:.0f} bytes/tile); peak RSS {rss:.0f} MiB")
    print(json.dumps({"tiles": n, "cold_ms": round(cold * 1000), "warm_p50_ms": float(
        np.percentile(refined, 50)), "warm_p95_ms": float(np.percentile(refined, 95)),
        "blocks_mib": round(blocks.nbytes / 2**20), "peak_rss_mib": round(rss)}))
    rt.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--keep", metavar="DIR", help="build (or reuse) the index here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cach-bench-refine-") as tmp:
        folder = Path(args.keep or tmp)
        if not (folder / "index.sqlite").exists():
            seconds = write_index(folder, args.tiles)
            print(f"wrote a {args.tiles:,}-tile index in {seconds:.0f} s", file=sys.stderr)
        run(folder, args.tiles, args.queries)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
