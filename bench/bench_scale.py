"""Search beyond one machine's RAM: exhaustive IndexBinaryFlat vs IndexBinaryMultiHash and
IndexBinaryIVF at 10M codes that carry real structure.

    nice -n 10 .venv/bin/python bench/bench_scale.py encode --bits 64       # once, ~15-60 min
    .venv/bin/python bench/bench_scale.py search --bits 64 --n 10000000     # the 10M table
    .venv/bin/python bench/bench_scale.py search --n 300000 --quick         # a smoke run
    ... search --held-out 300 --min-flip 1   # hard regime: queries from images kept out, d >= 1

1. ``encode``: real tiles through the shipped model (``load_model(bits=...)``): every UCM image
   (2,100) in ``--views`` views (view 0 = the plain image; the others = a random square crop of
   45-100 % of the side, random h/v flips, a random multiple of 90 degrees and colour jitter:
   brightness, contrast and saturation x U(0.75, 1.25)), plus every 64-px tile (50 % overlap,
   scales 1, 2, 4) of the rasters in ``shared/data/geotiff`` and ``resources/samples``. Codes,
   tanh outputs and group ids (which image or raster a code came from) are cached in
   ``$CACH_CACHE/scale/`` in parts, so a killed run resumes and a rerun is free.
2. ``search``: the real codes are expanded to ``--n`` codes (see :func:`expand`): each synthetic
   code is a real parent (uniform) with ``d`` distinct random bits flipped, ``d`` drawn from the
   empirical distribution of the real codes' nearest-neighbour Hamming distance to a code of
   another image or raster (:func:`nn_distances`: a new scene near an existing one). The
   histograms that check it, and the distinct-code and tie counts, are printed. Queries: real tile codes from
   the database (tile -> tile, as the product searches) and UCM captions through the text head
   (text -> tile). Recall@20 is tie-aware: a returned code counts when its distance is <= the
   exhaustive 20th distance. Latency: one faiss thread, one query at a time, k = 20. Memory:
   the RSS a fresh process gained while building (training buffers included) and the bytes per
   code of the serialized index (codes, ids, lists or hash tables: what it needs at rest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from tables import table  # noqa: E402  (bench/ runs as scripts)

from model_runtime.paths import cache_dir  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RASTER_DIRS = [DATA / "geotiff", ROOT / "resources" / "samples"]
RASTER_TILING = {"tile_size": 64, "overlap": 0.5, "scales": (1, 2, 4), "min_valid": 0.5,
                 "output_size": 224}
PART = 2048  # tiles per cached part file
K = 20


# --------------------------------------------------------------------------- real tiles


def augment(img, rng: np.random.Generator, size: int):
    """One random view of a PIL image: crop, flips, rotation by 90 degrees, colour jitter."""
    from PIL import Image, ImageEnhance

    w, h = img.size
    side = int(min(w, h) * rng.uniform(0.45, 1.0))
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    img = img.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    turns = int(rng.integers(0, 4))
    if turns:
        img = img.transpose([None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                             Image.Transpose.ROTATE_270][turns])
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhance(img).enhance(float(rng.uniform(0.75, 1.25)))
    return img


def ucm_images() -> list[Path]:
    return sorted((DATA / "ucm" / "images").rglob("*.jpg"))


def ucm_views(images: list[Path], views: int, size: int, seed: int) -> Iterator[tuple]:
    """(uint8 [size, size, 3], group) for every view of every image; group = image number."""
    from PIL import Image

    for group, path in enumerate(images):
        with Image.open(path) as raw:
            img = raw.convert("RGB")
        rng = np.random.default_rng([seed, group])
        yield np.asarray(img.resize((size, size), Image.Resampling.BICUBIC)), group
        for _ in range(views - 1):
            yield np.asarray(augment(img, rng, size)), group


def raster_tiles(group0: int) -> Iterator[tuple]:
    """(uint8 tile, group) for every tile of the shared rasters; group = group0 + file number."""
    from model_runtime.raster.sources import list_sources
    from model_runtime.raster.tiling import TilingOptions, iter_tiles

    opts = TilingOptions(**RASTER_TILING)
    refs, _ = list_sources([p for p in RASTER_DIRS if p.exists()])
    for i, path in enumerate(ref.uri for ref in refs):
        for rgb, _tile in iter_tiles(path, opts):
            yield rgb, group0 + i


def real_tiles(views: int, size: int, seed: int) -> Iterator[tuple]:
    images = ucm_images()
    yield from ucm_views(images, views, size, seed)
    yield from raster_tiles(len(images))


def real_key(model, views: int, seed: int) -> str:
    """Cache key: heads, backend, precision and what the tiles are."""
    parts = [model.heads.sha, model.backend, model.precision, views, seed,
             json.dumps(RASTER_TILING, sort_keys=True), len(ucm_images())]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _save_part(path: Path, tanh: list, groups: list) -> None:
    from model_runtime.codes import pack
    from model_runtime.fsutil import atomic_write

    t = np.concatenate(tanh).astype(np.float32)
    atomic_write(path, lambda tmp: np.savez(tmp.open("wb"), codes=pack(t),
                                            tanh=t.astype(np.float16),
                                            group=np.asarray(groups, np.int32)))


def encode_parts(model, folder: Path, views: int, seed: int, batch: int) -> list[Path]:
    """Encode every real tile, PART tiles per file; parts already on disk are skipped (resume)."""
    folder.mkdir(parents=True, exist_ok=True)
    parts, pending, tanh, groups = [], [], [], []
    t0, done = time.perf_counter(), 0
    for n, (rgb, group) in enumerate(real_tiles(views, model.input_size, seed), 1):
        part = folder / f"part-{(n - 1) // PART:05d}.npz"
        if part.exists():
            if (n - 1) % PART == 0:
                parts.append(part)
            continue
        pending.append(rgb)
        groups.append(group)
        if len(pending) == batch:
            tanh.append(model.encode_images(np.stack(pending)).tanh)
            done += len(pending)
            pending = []
        if n % PART == 0:
            _flush(model, part, pending, tanh, groups, parts)
            pending, tanh, groups = [], [], []
            print(f"  {n:,} tiles ({done / (time.perf_counter() - t0):.1f}/s encoded)",
                  file=sys.stderr, flush=True)
    if groups:
        _flush(model, folder / f"part-{(n - 1) // PART:05d}.npz", pending, tanh, groups, parts)
    return parts


def _flush(model, part: Path, pending: list, tanh: list, groups: list, parts: list) -> None:
    if pending:
        tanh.append(model.encode_images(np.stack(pending)).tanh)
    _save_part(part, tanh, groups)
    parts.append(part)


def real_codes_path(bits: int) -> Path:
    return cache_dir() / "scale" / f"real-{bits}.npz"


def cmd_encode(args) -> int:
    from model_runtime.env import configure_process
    from model_runtime.fsutil import atomic_write
    from model_runtime.model import available_backends, load_model

    configure_process()
    for bits in args.bits:
        backend = args.backend or ("onnx" if "onnx" in available_backends() else "torch")
        model = load_model(bits=bits, device="cpu", backend=backend)
        key = real_key(model, args.views, args.seed)
        folder = cache_dir() / "scale" / f"parts-{bits}-{key}"
        t0 = time.perf_counter()
        parts = encode_parts(model, folder, args.views, args.seed, args.batch)
        data = [np.load(p) for p in parts]
        tanh = np.concatenate([d["tanh"] for d in data])
        group = np.concatenate([d["group"] for d in data])
        codes = np.concatenate([d["codes"] for d in data])
        meta = json.dumps({"key": key, "heads": model.heads.path.name, "sha": model.heads.sha,
                           "backend": model.backend, "precision": model.precision,
                           "views": args.views, "ucm_images": len(ucm_images()),
                           "raster_tiling": RASTER_TILING})
        atomic_write(real_codes_path(bits), lambda tmp, c=codes, t=tanh, g=group, m=meta: np.savez(
            tmp.open("wb"), codes=c, tanh=t, group=g, meta=np.array(m)))
        print(f"{bits} bits: {len(codes):,} real codes ({model.backend}) in "
              f"{time.perf_counter() - t0:.0f} s -> {real_codes_path(bits)}")
    return 0



# --------------------------------------------------------------------------- expansion


def load_real(bits: int) -> tuple[np.ndarray, np.ndarray, dict]:
    path = real_codes_path(bits)
    if not path.exists():
        raise SystemExit(f"{path} is missing: run 'bench_scale.py encode --bits {bits}' first")
    data = np.load(path)
    return data["codes"], data["group"], json.loads(str(data["meta"]))


def nn_distances(codes: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each code's Hamming distance to its nearest code from another group (another image or
    raster: what a new scene near an existing one looks like; views of one image are its own
    group). Searched among the 64, then 1,024 nearest; past that the 1,024th distance (a lower
    bound) is used."""
    import faiss

    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)
    out = np.empty(len(codes), np.int64)
    todo = np.arange(len(codes))
    for k in (64, 1024):
        dist, ids = index.search(codes[todo], k)
        other = groups[ids] != groups[todo][:, None]
        found = other.any(axis=1)
        out[todo[found]] = dist[found, other[found].argmax(axis=1)]
        out[todo[~found]] = dist[~found, -1]
        todo = todo[~found]
        if not len(todo):
            break
    return out


def flip_masks(counts: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    """Packed masks with exactly ``counts[i]`` distinct random bits set in row i."""
    order = np.argsort(rng.random((len(counts), bits), dtype=np.float32), axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(bits)[None, :], axis=1)
    return np.packbits(rank < counts[:, None], axis=1)


def expand(real: np.ndarray, n: int, nn_real: np.ndarray, rng: np.random.Generator,
           chunk: int = 500_000, min_flip: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``real`` followed by n - len(real) synthetic codes: parent = a uniformly drawn real code,
    then d distinct random bits flipped, d drawn from the real nearest-neighbour distances
    ``nn_real`` (so P(d) is the real set's NN-distance histogram), raised to ``min_flip``
    (``--min-flip 1``: no synthetic code repeats its parent). Returns codes, the parent of every
    synthetic code and its flip count."""
    bits = real.shape[1] * 8
    m = n - len(real)
    parents = rng.integers(0, len(real), m).astype(np.int32)
    flips = np.maximum(rng.choice(nn_real, m), min_flip).astype(np.int16)
    out = np.empty((n, real.shape[1]), np.uint8)
    out[: len(real)] = real
    for s in range(0, m, chunk):
        e = min(m, s + chunk)
        out[len(real) + s : len(real) + e] = real[parents[s:e]] ^ flip_masks(flips[s:e], bits, rng)
    return out, parents, flips


def hamming_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distance of two packed arrays of one shape (last axis = bytes)."""
    return np.unpackbits(a ^ b, axis=-1).sum(axis=-1)


BUCKETS = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 6), (7, 8), (9, 12), (13, 16), (17, 24),
           (25, 32), (33, 48), (49, 128)]


def histogram_row(name: str, dist: np.ndarray) -> list:
    cells = [f"{100 * np.mean((dist >= lo) & (dist <= hi)):.1f}" for lo, hi in BUCKETS]
    return [name, f"{len(dist):,}", *cells, f"{np.mean(dist):.2f}", f"{np.median(dist):.0f}"]


def check_expansion(real, nn_real, db, parents, flips, rng, sample: int = 20_000) -> None:
    """Print distance histograms (real vs synthetic: nearest real code, random pairs) and how
    many distinct codes and identical-code ties each set has."""
    import faiss

    nreal, bits = len(real), real.shape[1] * 8
    pick = rng.choice(len(db) - nreal, min(sample, len(db) - nreal), replace=False)
    real_index = faiss.IndexBinaryFlat(bits)
    real_index.add(real)
    to_real, _ = real_index.search(db[nreal + pick], 1)
    pairs = [rng.integers(0, nreal, (100_000, 2)), rng.integers(nreal, len(db), (100_000, 2))]
    rows = [
        histogram_row("real: NN distance to another image/raster (the target)", nn_real),
        histogram_row("synthetic: flips drawn (d)", flips[pick]),
        histogram_row("synthetic: distance to the nearest real code", to_real[:, 0]),
        histogram_row("real: random pairs", hamming_rows(real[pairs[0][:, 0]], real[pairs[0][:, 1]])),
        histogram_row("synthetic: random pairs", hamming_rows(db[pairs[1][:, 0]], db[pairs[1][:, 1]])),
    ]
    head = ["distance histogram (% of codes)", "n", *[f"{lo}" if lo == hi else f"{lo}-{hi}"
                                                        for lo, hi in BUCKETS], "mean", "median"]
    table(f"(e) expansion check, {bits} bits: {nreal:,} real -> {len(db):,} codes", head, rows)
    for name, codes in (("real", real), (f"all {len(db):,}", db)):
        _, counts = np.unique(codes.view(f"V{codes.shape[1]}").ravel(), return_counts=True)
        print(f"  {name}: {len(counts):,} distinct codes; the largest group of identical codes "
              f"holds {counts.max():,} ({100 * counts.max() / len(codes):.1f} %)")



# --------------------------------------------------------------------------- queries


def text_queries(bits: int, n: int, seed: int, sha: str) -> np.ndarray:
    """Codes of ``n`` distinct UCM captions through the text head of the heads whose SHA-256 is
    ``sha`` (those the real codes came from; archived heads are found too), cached."""
    from model_runtime.codes import pack
    from model_runtime.data.datasets import load_ucm
    from model_runtime.fsutil import atomic_write
    from model_runtime.model import load_model

    caps = sorted({c for item in load_ucm(DATA).items for c in item.captions})
    caps = [caps[i] for i in np.random.default_rng(seed).choice(len(caps), n, replace=False)]
    key = hashlib.sha256(repr((bits, caps, sha)).encode()).hexdigest()[:16]
    path = cache_dir() / "scale" / f"text-{bits}-{key}.npy"
    if not path.exists():
        from model_runtime.model.heads import find_heads

        ref = find_heads(sha)
        if ref is None:
            raise SystemExit(f"the heads the real codes came from ({sha[:12]}) are gone: re-encode")
        model = load_model(heads=ref, device="cpu")
        codes = pack(model.encode_texts(caps))
        atomic_write(path, lambda tmp: np.save(tmp.open("wb"), codes))
    return np.load(path)


# --------------------------------------------------------------------------- indexes


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build_index(spec: dict, codes: np.ndarray, threads: int, seed: int):
    """A faiss binary index of ``codes`` as ``spec`` says (flat, ivf, mih)."""
    import faiss

    faiss.omp_set_num_threads(threads)
    bits = codes.shape[1] * 8
    if spec["kind"] == "flat":
        index = faiss.IndexBinaryFlat(bits)
    elif spec["kind"] == "mih":
        index = faiss.IndexBinaryMultiHash(bits, spec["nhash"], spec["b"])
    else:
        quantizer = faiss.IndexBinaryFlat(bits)
        index = faiss.IndexBinaryIVF(quantizer, bits, spec["nlist"])
        index.keep_quantizer = quantizer  # the IVF index holds it by pointer
        index.cp.niter = 10
        sample = min(len(codes), spec["nlist"] * 40, spec["train_max"])
        pick = np.sort(np.random.default_rng(seed).choice(len(codes), sample, replace=False))
        index.train(codes[pick])
    for s in range(0, len(codes), 1_000_000):
        index.add(codes[s : s + 1_000_000])
    return index


def settings(spec: dict) -> list[tuple[str, dict]]:
    if spec["kind"] == "flat":
        return [("", {})]
    if spec["kind"] == "mih":
        return [(f"nflip={f}", {"nflip": f}) for f in spec["nflip"]]
    return [(f"nprobe={p}", {"nprobe": p}) for p in spec["nprobe"]]


def label(spec: dict) -> str:
    if spec["kind"] == "flat":
        return "IndexBinaryFlat (exhaustive)"
    if spec["kind"] == "mih":
        return f"IndexBinaryMultiHash nhash={spec['nhash']} b={spec['b']}"
    return f"IndexBinaryIVF nlist={spec['nlist']}"


def run_method(spec: dict, db_path: str, queries: np.ndarray, threads: int, seed: int) -> list:
    """In a fresh process: build, measure the RSS it added, search one query at a time."""
    import faiss

    codes = np.load(db_path)
    base = rss_mb()
    t0 = time.perf_counter()
    index = build_index(spec, codes, threads, seed)
    build_s, mem = time.perf_counter() - t0, rss_mb() - base
    stored = len(faiss.serialize_index_binary(index)) / len(codes)  # what a file would hold
    faiss.omp_set_num_threads(1)
    out = []
    for name, attrs in settings(spec):
        for key, value in attrs.items():
            setattr(index, key, value)
        index.search(queries[:1], K)  # warm-up
        ids, lat = np.empty((len(queries), K), np.int64), []
        for i in range(len(queries)):
            t = time.perf_counter()
            _, ids[i] = index.search(queries[i : i + 1], K)
            lat.append((time.perf_counter() - t) * 1000)
        out.append({"setting": name, "build_s": build_s, "mem_mb": mem, "ids": ids,
                    "lat": np.asarray(lat), "stored": stored})
    if spec["kind"] == "flat":
        out[0]["ties"] = tie_groups(index, queries, ids, codes)
    return out


def tie_groups(index, queries: np.ndarray, ids: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per query: how many codes lie within the exhaustive K-th distance (all equally good
    answers). Above the search's re-rank pool, the pool is an arbitrary pick among ties."""
    kth = hamming_rows(queries, codes[ids[:, K - 1]])
    counts = np.empty(len(queries), np.int64)
    for i in range(len(queries)):
        lims, _, _ = index.range_search(queries[i : i + 1], int(kth[i]) + 1)
        counts[i] = lims[1] - lims[0]
    return counts


def run_isolated(spec: dict, db_path: str, queries: np.ndarray, threads: int, seed: int):
    """:func:`run_method` in a spawned child, so each index's memory is measured alone."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_method, (spec, db_path, queries, threads, seed))


def recall(db: np.ndarray, queries: np.ndarray, ids: np.ndarray, kth: np.ndarray) -> np.ndarray:
    """Per query: share of the K returned codes within the exhaustive K-th distance (ties at
    that distance are equally correct); -1 ids (fewer than K found) count as misses."""
    valid = ids >= 0
    dist = hamming_rows(queries[:, None, :], db[np.where(valid, ids, 0)])
    return ((dist <= kth[:, None]) & valid).sum(axis=1) / K



# --------------------------------------------------------------------------- the table


def specs(args) -> list[dict]:
    out = [{"kind": "ivf", "nlist": n, "nprobe": args.nprobe, "train_max": args.train_max}
           for n in args.ivf]
    for hb in args.mih:
        nhash, b = (int(x) for x in hb.split("x"))
        nflip = [f for f in args.nflip if b > 8 or f <= 1]
        out.append({"kind": "mih", "nhash": nhash, "b": b, "nflip": nflip})
    return out


def result_rows(spec, results, db, queries, kth, nq, flat_p50) -> list[list]:
    rows = []
    for res in results:
        rec = recall(db, queries, res["ids"], kth)
        p50, p95 = np.percentile(res["lat"], [50, 95])
        rows.append([label(spec), res["setting"] or "-", f"{res['build_s']:.0f}",
                     f"{res['mem_mb']:.0f}", f"{res['stored']:.1f}",
                     f"{rec[:nq].mean():.3f}", f"{rec[nq:].mean():.3f}",
                     f"{p50:.3f} / {p95:.3f}", f"{flat_p50 / p50:.1f}x"])
    return rows


def make_db(args, bits: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """The expanded database (checked) and the queries (tile codes, then text codes)."""
    real, group, meta = load_real(bits)
    print(f"{bits} bits: {len(real):,} real codes ({meta['backend']}, {meta['views']} views)",
          file=sys.stderr)
    query_pool = real
    if args.held_out:
        # tile queries from images and rasters kept out of the database: new scenes, no copy of
        # the query (or of its other views) waiting at distance 0
        out = np.isin(group, rng.choice(np.unique(group), args.held_out, replace=False))
        query_pool, real, group = real[out], real[~out], group[~out]
        print(f"  {out.sum():,} codes of {args.held_out} images/rasters held out as tile queries",
              file=sys.stderr)
    if args.n < len(real):
        keep = np.sort(rng.choice(len(real), args.n, replace=False))
        real, group = real[keep], group[keep]
    nn_real = nn_distances(real, group)
    db, parents, flips = expand(real, max(args.n, len(real)), nn_real, rng, min_flip=args.min_flip)
    check_expansion(real, nn_real, db, parents, flips, rng)
    tiles = query_pool[rng.choice(len(query_pool), args.queries, replace=False)]
    return db, np.concatenate([tiles, text_queries(bits, args.queries, args.seed, meta["sha"])])


def search_table(args, bits: int) -> None:
    rng = np.random.default_rng(args.seed)
    db, queries = make_db(args, bits, rng)
    nq = args.queries
    db_path = cache_dir() / "scale" / f"tmp-db-{bits}-{args.n}.npy"
    np.save(db_path, db)
    try:
        flat = run_isolated({"kind": "flat"}, str(db_path), queries, args.threads, args.seed)
        kth = hamming_rows(queries, db[flat[0]["ids"][:, K - 1]])
        flat_p50 = float(np.percentile(flat[0]["lat"], 50))
        rows = result_rows({"kind": "flat"}, flat, db, queries, kth, nq, flat_p50)
        for spec in specs(args):
            print(f"  {time.strftime('%H:%M:%S')} {label(spec)}", file=sys.stderr, flush=True)
            res = run_isolated(spec, str(db_path), queries, args.threads, args.seed)
            rows += result_rows(spec, res, db, queries, kth, nq, flat_p50)
            for done in rows[-len(res):]:  # as they come: a long run killed keeps its rows
                print("    " + " | ".join(str(x) for x in done), file=sys.stderr, flush=True)
    finally:
        db_path.unlink(missing_ok=True)
    ties = flat[0]["ties"]
    for name, part in (("tile", ties[:nq]), ("text", ties[nq:])):
        print(f"{name} queries: codes within the exhaustive {K}th distance, median "
              f"{np.median(part):,.0f}, p90 {np.percentile(part, 90):,.0f}; above the re-rank "
              f"pool of 200 for {100 * np.mean(part > 200):.0f} % of queries")
    d1 = hamming_rows(queries, db[flat[0]["ids"][:, 0]])
    print(f"\nexhaustive 1st / 20th neighbour distance, median: tile queries "
          f"{np.median(d1[:nq]):.0f} / {np.median(kth[:nq]):.0f}, text queries "
          f"{np.median(d1[nq:]):.0f} / {np.median(kth[nq:]):.0f}")
    table(f"(f) {len(db):,} codes x {bits} bits, k={K}, one faiss thread, one query at a time "
          f"({nq} tile + {nq} text queries); recall@{K} vs exhaustive, tie-aware",
          ["index", "search setting", "build s", "RSS added MB", "stored B/code",
           f"recall@{K} tile",
           f"recall@{K} text", "ms p50 / p95", "speed-up p50"], rows)


def cmd_search(args) -> int:
    import faiss

    faiss.omp_set_num_threads(1)
    print(f"faiss {faiss.__version__}; peak RSS so far {rss_mb():.0f} MB", file=sys.stderr)
    for bits in args.bits:
        search_table(args, bits)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    enc = sub.add_parser("encode", help="encode the real tiles once (cached)")
    enc.add_argument("--bits", type=int, nargs="+", default=[64])
    enc.add_argument("--views", type=int, default=21, help="views per UCM image (incl. plain)")
    enc.add_argument("--batch", type=int, default=32)
    enc.add_argument("--backend", help="default: onnx when installed, else torch")
    enc.add_argument("--seed", type=int, default=0)
    sea = sub.add_parser("search", help="the 10M table (needs encode first)")
    sea.add_argument("--bits", type=int, nargs="+", default=[64])
    sea.add_argument("--n", type=int, default=10_000_000)
    sea.add_argument("--queries", type=int, default=300, help="of each kind (tile, text)")
    sea.add_argument("--ivf", type=_ints, default=[1024, 4096, 16384], help="nlist values")
    sea.add_argument("--nprobe", type=_ints, default=[1, 4, 16, 64, 256])
    sea.add_argument("--train-max", type=int, default=131_072,
                     help="IVF k-means sample: min(40 x nlist, this) codes, 10 iterations")
    sea.add_argument("--mih", type=lambda s: [x for x in s.split(",") if x],
                     default=["4x16", "8x8"],
                     help="MultiHash nhash x bits per hash (nflip above 1 is skipped for b <= 8: "
                     "it would probe a large share of every table)")
    sea.add_argument("--nflip", type=_ints, default=[0, 1, 2])
    sea.add_argument("--threads", type=int, default=2, help="faiss threads to build (train, add)")
    sea.add_argument("--seed", type=int, default=0)
    sea.add_argument("--held-out", type=int, default=0,
                     help="images/rasters whose codes are kept out of the database as tile queries")
    sea.add_argument("--min-flip", type=int, default=0, help="at least this many bits flipped")
    sea.add_argument("--quick", action="store_true", help="300k codes, 50 queries, few settings")
    args = ap.parse_args(argv)
    if getattr(args, "quick", False):
        args.n, args.queries, args.ivf, args.mih = 300_000, 50, [256, 1024], ["4x16"]
    return {"encode": cmd_encode, "search": cmd_search}[args.cmd](args)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


if __name__ == "__main__":
    sys.exit(main())
