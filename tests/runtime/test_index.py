"""Build, update, search and export an index over real rasters with a stand-in encoder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_runtime.codes import hamming, pack
from model_runtime.errors import (
    CancelledError,
    ConfigError,
    DiskFullError,
    IndexStateError,
    ModelMismatchError,
)
from model_runtime.index import (
    BinaryIndex,
    BuildOptions,
    build_index,
    contact_sheet,
    open_index,
    write_geojson,
    write_gpkg,
)
from model_runtime.index.store import Store
from model_runtime.protocol import Hit
from model_runtime.raster.tiling import TilingOptions
from model_runtime.services.queries import combine

OPTS = TilingOptions(tile_size=128)
HERE = Path(__file__).resolve().parent


def build(index_dir, paths, model, tiling=OPTS, progress=None, cancel=None, **options):
    """``build_index`` with these tiling options and build options."""
    return build_index(index_dir, [str(p) for p in paths], model,
                       BuildOptions(tiling=tiling, **options), progress, cancel)


def _tile_set(index_dir):
    """(source name, window, scale, code) of every tile: what a correct index must hold."""
    store = Store(index_dir)
    try:
        rows = store.conn.execute(
            "SELECT s.path, t.col, t.row, t.width, t.height, t.scale, t.code FROM tiles t "
            "JOIN sources s ON s.id = t.source_id"
        ).fetchall()
        assert store.integrity_problems() == []
    finally:
        store.close()
    items = [(Path(r[0]).name, *r[1:6], r[6]) for r in rows]
    assert len(items) == len(set(items)), "duplicate tiles"
    return sorted(items)


# -- binary codes ----------------------------------------------------------------------------
def test_binary_search_matches_brute_force_reference(tmp_path):
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (5000, 8), dtype=np.uint8)
    ids = rng.permutation(10_000)[:5000].astype(np.int64)
    index = BinaryIndex.from_codes(codes, ids, 64)
    queries = rng.integers(0, 256, (5, 8), dtype=np.uint8)
    dist, found = index.search(queries, 10)
    for q, d, f in zip(queries, dist, found, strict=True):
        ref = np.sort(hamming(q, codes))[:10]
        np.testing.assert_array_equal(d, ref)
        by_id = dict(zip(ids.tolist(), hamming(q, codes).tolist(), strict=True))
        assert [by_id[i] for i in f] == list(d)
    subset = ids[::7]
    d, f = index.search_subset(queries[0], 5, subset)
    sub_ref = np.sort(hamming(queries[0], codes[::7]))[:5]
    np.testing.assert_array_equal(d, sub_ref)
    assert set(f) <= set(subset.tolist())
    index.save(tmp_path / "c.faiss")
    loaded = BinaryIndex.load(tmp_path / "c.faiss", 64)
    np.testing.assert_array_equal(loaded.search(queries, 10)[0], dist)
    assert list(tmp_path.iterdir()) == [tmp_path / "c.faiss"]  # no temp file left
    with pytest.raises(IndexStateError):
        BinaryIndex.load(tmp_path / "c.faiss", 128)


def test_pack_combine_and_padding():
    v = np.array([0.5, -0.1, 0.0, 0.9, -1, 1, 1, -1], dtype=np.float32)
    assert pack(v).tolist() == [[0b10010110]]
    q = combine([np.ones(8), -np.ones(8), v], [1.0, 0.5, 2.0])
    np.testing.assert_allclose(q, 0.5 + 2 * v)
    with pytest.raises(ConfigError):
        combine([np.ones(8), np.ones(16)])
    small = BinaryIndex.from_codes(np.zeros((2, 1), np.uint8), np.array([5, 3]), 8)
    d, i = small.search(np.zeros((1, 1), np.uint8), 4)
    assert i.tolist() == [[3, 5, -1, -1]] and d.tolist() == [[0, 0, -1, -1]]


# -- build and search ------------------------------------------------------------------------
def test_build_then_search_finds_the_tile_itself_first(
    sample_folder, tmp_path, encoder, model_info
):
    events = []
    summary = build(tmp_path / "idx", [sample_folder], encoder, OPTS,
        progress=events.append,
        batch_size=8,
    )
    assert summary.added == 4 and summary.skipped == () and summary.tiles == encoder.tiles > 0
    assert events[-1]["stage"] == "done" and any(e["stage"] == "encode" for e in events)
    assert {"done", "total", "stage", "message"} <= set(events[-1])
    with open_index(tmp_path / "idx", expect=model_info) as index:
        assert index.complete and index.tiles == summary.tiles
        for tile_id in (1, summary.tiles // 2, summary.tiles):
            hits = index.search(index.tile_vector(tile_id), k=5)
            assert hits[0].tile_id == tile_id and hits[0].hamming == 0
            assert hits[0].score == pytest.approx(1.0, abs=1e-3)
            assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
            assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
        # plain Hamming search (packed code) agrees with a brute-force reference
        code = index.tile_code(3)
        hits = index.search(code, k=10, collapse=False)
        ids, codes = index.store.all_codes(8)
        ref = np.sort(hamming(code, codes))[:10]
        assert [h.hamming for h in hits] == ref.tolist()
        assert all(h.score == pytest.approx(1 - h.hamming / 64, abs=1e-4) for h in hits)


def test_hit_json_matches_the_protocol(sample_folder, tmp_path, encoder, model_info):
    build(tmp_path / "idx", [sample_folder], encoder, OPTS)
    with open_index(tmp_path / "idx") as index:
        hit = index.search(index.tile_code(1), k=1)[0]
    data = json.loads(json.dumps(hit.to_json()))
    assert list(data) == ["rank", "tile_id", "source", "window", "crs", "georeferenced",
                          "footprint", "footprint_src", "hamming", "score", "confidence"]
    assert isinstance(data["window"], list) and len(data["window"]) == 4
    assert Hit.from_json(data) == hit


def test_collapse_drops_overlaps_and_copies_and_spreads_sources(
    geotiff_dir, tmp_path, encoder, model_info
):
    folder = tmp_path / "copies"
    folder.mkdir()
    for name in ("RGB.byte.tif", "rgb_deflate.tif", "cogeo.tif"):  # first two: same pixels
        shutil.copy2(geotiff_dir / "rasterio" / name, folder / name)
    opts = TilingOptions(tile_size=128, overlap=0.5)
    build(tmp_path / "idx", [folder], encoder, opts)
    with open_index(tmp_path / "idx") as index:
        query = index.tile_vector(1)
        raw = index.search(query, k=20, collapse=False)
        hits = index.search(query, k=20)
    names = [Path(h.source).name for h in raw[:2]]
    assert sorted(names) == ["RGB.byte.tif", "rgb_deflate.tif"]  # the copy ties with itself
    assert len(hits) == 20
    from model_runtime.index.collapse import window_iou

    for i, a in enumerate(hits):
        for b in hits[i + 1 :]:
            if a.source == b.source:
                assert window_iou(a.window, b.window) <= 0.5
            else:
                assert not (
                    a.window == b.window
                    and {Path(a.source).name, Path(b.source).name}
                    == {"RGB.byte.tif", "rgb_deflate.tif"}
                )
    assert (
        max(sum(h.source == s for h in hits) for s in {h.source for h in hits}) <= 10
        or len({h.source for h in raw}) == 1
    )


def test_bbox_filter_in_another_crs_and_locate(sample_folder, tmp_path, encoder, model_info):
    build(tmp_path / "idx", [sample_folder], encoder, OPTS)
    cogeo = str(sample_folder / "rasterio/cogeo.tif")
    with open_index(tmp_path / "idx") as index:
        query = index.tile_vector(1)
        # cogeo.tif bounds in EPSG:3857, shrunk a little
        bbox = [14321900.0, 4532450.0, 14322400.0, 4532980.0]
        hits = index.search(query, k=50, bbox=bbox, bbox_crs="EPSG:3857", collapse=False)
        assert hits and {h.source for h in hits} == {cogeo}
        assert all(h.crs is not None for h in hits)
        everything = index.search(query, k=500, bbox=[-180, -90, 180, 90], collapse=False)
        assert all(h.footprint is not None for h in everything)  # rotated.tif has no CRS
        assert len(everything) == index.tiles - 1
        assert index.search(query, k=5, bbox=[0, 0, 1, 1]) == []
        tile = index.search(query, k=1, bbox=bbox, bbox_crs="EPSG:3857")[0]
        ring = tile.footprint_src["coordinates"][0]
        cx = sum(p[0] for p in ring[:4]) / 4
        cy = sum(p[1] for p in ring[:4]) / 4
        found = index.locate(cx, cy, "EPSG:3857")
        assert found is not None and found.source == cogeo
        assert found.window[2] == 128  # the smallest tile containing the point
        assert found.tile_id == tile.tile_id or index.get_tile(found.tile_id).source == cogeo
        assert index.locate(0.0, 0.0) is None


def test_read_tile_pixels_returns_what_the_encoder_saw(
    sample_folder, tmp_path, encoder, model_info
):
    build(tmp_path / "idx", [sample_folder], encoder, OPTS, batch_size=4)
    with open_index(tmp_path / "idx") as index:
        for tile_id in (1, index.tiles):
            np.testing.assert_array_equal(
                index.read_tile_pixels(tile_id), encoder.seen[tile_id - 1]
            )


def test_rerank_with_floats_orders_by_cosine(sample_folder, tmp_path, encoder, model_info):
    build(tmp_path / "idx", [sample_folder], encoder, OPTS)
    with open_index(tmp_path / "idx") as index:
        query = index.tile_vector(2) + 0.3 * index.tile_vector(7)
        hits = index.search(query, k=10, collapse=False)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        plain = index.search(query, k=10, collapse=False, rerank=False)
        assert [h.score for h in plain] == [round(1 - h.hamming / 64, 4) for h in plain]


# -- incremental and safe --------------------------------------------------------------------
def test_incremental_reindex(sample_folder, tmp_path, geotiff_dir, model_info, FakeEncoder):
    idx = tmp_path / "idx"
    first = build(idx, [sample_folder], FakeEncoder(), OPTS)
    before = {t[:6]: t for t in _tile_set(idx)}
    # unchanged: nothing re-encoded
    enc = FakeEncoder()
    again = build(idx, [sample_folder], enc, OPTS)
    assert (again.unchanged, again.added, enc.tiles) == (4, 0, 0)
    # add one file, touch another (same content, new mtime), change a third, delete a fourth
    shutil.copy2(geotiff_dir / "rasterio/shade.tif", sample_folder / "shade.tif")
    dsm = sample_folder / "landsat/dsm.tif"
    os.utime(dsm, (time.time() + 100, time.time() + 100))
    cogeo = sample_folder / "rasterio/cogeo.tif"
    shutil.copy(geotiff_dir / "naip/m_4709963_se_14_1_20090818.tif", cogeo)
    (sample_folder / "rasterio/rotated.tif").unlink()
    enc = FakeEncoder()
    summary = build(idx, [sample_folder], enc, OPTS)
    assert (summary.added, summary.updated, summary.removed, summary.unchanged) == (1, 1, 1, 2)
    after = {t[:6]: t for t in _tile_set(idx)}
    assert not any(k[0] == "rotated.tif" for k in after)
    kept = {k: v for k, v in before.items() if k[0] in ("dsm.tif", "landsat_2020_epsg4326.tif")}
    assert all(after[k] == v for k, v in kept.items())
    n_new = sum(k[0] in ("shade.tif", "cogeo.tif") for k in after)
    assert enc.tiles == n_new and summary.tiles == len(after)
    with open_index(idx, expect=model_info) as index:
        assert index.tiles == len(after) and index.complete
    assert first.tiles != summary.tiles


def test_encoder_crash_resumes_without_duplicates_or_gaps(
    sample_folder, tmp_path, model_info, FakeEncoder
):
    clean = tmp_path / "clean"
    build(clean, [sample_folder], FakeEncoder(), OPTS, batch_size=4)
    idx = tmp_path / "idx"
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(idx, [sample_folder], FakeEncoder(fail_after=4), OPTS, batch_size=4)
    with pytest.raises(IndexStateError, match="interrupted"):
        open_index(idx)
    with open_index(idx, allow_incomplete=True) as partial:
        assert 0 < partial.tiles < len(_tile_set(clean))
    resumed = FakeEncoder()
    summary = build(idx, [sample_folder], resumed, OPTS, batch_size=4)
    assert summary.unchanged >= 1 and summary.added >= 1
    assert _tile_set(idx) == _tile_set(clean)
    with open_index(idx) as index:
        assert index.complete and index.tiles == len(_tile_set(clean))


def _rows_in_id_order(index_dir) -> list[tuple]:
    store = Store(index_dir)
    try:
        return store.conn.execute(
            "SELECT t.id, s.path, t.col, t.row, t.scale, t.code FROM tiles t "
            "JOIN sources s ON s.id = t.source_id ORDER BY t.id").fetchall()
    finally:
        store.close()


def _lanes_encoder(FakeEncoder, lanes: int, **kwargs):
    """A FakeEncoder whose ``submit_images`` runs on ``lanes`` threads and finishes batches out
    of order (later batches sleep less), as a multi-lane compiled engine can."""
    from concurrent.futures import ThreadPoolExecutor

    class Lanes(FakeEncoder):
        def __init__(self) -> None:
            super().__init__(**kwargs)
            self.lanes = lanes
            self.pool = ThreadPoolExecutor(lanes)
            self.submitted = 0
            self.at_once = self.running = 0
            self.guard = threading.Lock()

        def submit_images(self, images):
            delay = 0.03 * (3 - self.submitted % 3)
            self.submitted += 1
            return self.pool.submit(self._slow, images, delay)

        def _slow(self, images, delay):
            with self.guard:
                self.running += 1
                self.at_once = max(self.at_once, self.running)
            time.sleep(delay)
            try:
                with self.guard:  # the fake's counters are not thread-safe
                    return self.encode_images(images)
            finally:
                with self.guard:
                    self.running -= 1

    return Lanes()


def test_encoder_lanes_finishing_out_of_order_give_the_same_index(
    sample_folder, tmp_path, FakeEncoder
):
    one, many = tmp_path / "one", tmp_path / "many"
    build(one, [sample_folder], FakeEncoder(), OPTS, batch_size=4)
    encoder = _lanes_encoder(FakeEncoder, 3)
    summary = build(many, [sample_folder], encoder, OPTS, batch_size=4)
    assert encoder.at_once >= 2  # batches really overlapped
    assert summary.timing["encode_s"] > 0
    assert _rows_in_id_order(many) == _rows_in_id_order(one)  # same ids, same order
    with open_index(many) as index:
        assert index.complete and index.tiles == len(_rows_in_id_order(one))


def test_encoder_error_in_a_lane_stops_the_run_and_it_resumes(
    sample_folder, tmp_path, FakeEncoder
):
    clean = tmp_path / "clean"
    build(clean, [sample_folder], FakeEncoder(), OPTS, batch_size=4)
    idx = tmp_path / "idx"
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(idx, [sample_folder], _lanes_encoder(FakeEncoder, 2, fail_after=5), OPTS,
              batch_size=4)
    build(idx, [sample_folder], _lanes_encoder(FakeEncoder, 2), OPTS, batch_size=4)
    assert _tile_set(idx) == _tile_set(clean)


def test_cancel_keeps_committed_sources_and_resumes(
    sample_folder, tmp_path, model_info, FakeEncoder
):
    cancel = threading.Event()

    class CancellingEncoder(FakeEncoder):
        def _encode_batch(self, batch):
            if self.batches == 3:
                cancel.set()
            return super()._encode_batch(batch)

    idx = tmp_path / "idx"
    with pytest.raises(CancelledError, match="to resume"):
        build(idx, [sample_folder], CancellingEncoder(), OPTS, cancel=cancel, batch_size=2
        )
    clean = tmp_path / "clean"
    build(clean, [sample_folder], FakeEncoder(), OPTS)
    # a cancelled run leaves a searchable index of what was committed, marked partial
    with open_index(idx) as index:
        assert index.complete and index.pending_files >= 1
        assert index.info()["pending_files"] == index.pending_files
        assert index.tiles == len(_tile_set(idx)) < len(_tile_set(clean))
    build(idx, [sample_folder], FakeEncoder(), OPTS, batch_size=2)
    assert _tile_set(idx) == _tile_set(clean)
    with open_index(idx) as index:
        assert index.complete and index.pending_files == 0


def test_kill_9_midway_resumes_correctly(sample_folder, tmp_path, model_info, FakeEncoder):
    idx = tmp_path / "idx"
    proc = _slow_build(tmp_path, idx, sample_folder, batch_size=2)
    _wait(proc, lambda: _units(idx) >= 1, "a committed unit", timeout=60)
    committed = _units(idx)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert committed >= 1
    with pytest.raises(IndexStateError, match="interrupted"):
        open_index(idx)
    build(idx, [sample_folder], FakeEncoder(), OPTS, batch_size=2)
    clean = tmp_path / "clean"
    build(clean, [sample_folder], FakeEncoder(), OPTS)
    assert _tile_set(idx) == _tile_set(clean)
    with open_index(idx) as index:
        assert index.complete


def test_unreadable_files_are_skipped_with_a_message(
    sample_folder, tmp_path, geotiff_dir, encoder, model_info
):
    (sample_folder / "notes.tif").write_text("this is not a raster")
    truncated = sample_folder / "truncated.tif"
    truncated.write_bytes((geotiff_dir / "rasterio/shade.tif").read_bytes()[:200_000])
    summary = build(tmp_path / "idx", [sample_folder, tmp_path / "missing"], encoder,
                    TilingOptions(tile_size=128, min_valid=0.0))
    reasons = {s.path: s.reason for s in summary.skipped}
    assert set(reasons) == {
        str(sample_folder / "notes.tif"),
        str(truncated),
        str(tmp_path / "missing"),
    }
    assert all(Path(path).name in reason for path, reason in reasons.items())
    assert summary.added == 4
    assert summary.to_json()["skipped"][0].keys() == {"path", "reason", "code"}
    with open_index(tmp_path / "idx") as index:
        assert index.complete
        assert all(
            Path(index.get_tile(i).source).name != "truncated.tif"
            for i in range(1, index.tiles + 1)
            if _exists(index, i)
        )


def _exists(index, tile_id):
    return tile_id in index.store.tiles([tile_id])


def test_disk_full_during_commit_raises_and_leaves_the_committed_part_searchable(
    sample_folder, tmp_path, encoder, model_info, monkeypatch, FakeEncoder
):
    idx = tmp_path / "idx"
    original = Store.commit_unit
    calls = []

    def full(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise sqlite3.OperationalError("database or disk is full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "commit_unit", full)
    with pytest.raises(DiskFullError, match="index the same folders again"):
        build(idx, [sample_folder], encoder, OPTS)
    monkeypatch.setattr(Store, "commit_unit", original)
    with open_index(idx) as searchable:  # what was committed stays searchable (issue 16)
        assert searchable.pending_files >= 1 and searchable.store.count_tiles() > 0
    partial = _tile_set(idx)  # whole sources or nothing: no duplicates (checked inside)
    build(idx, [sample_folder], FakeEncoder(), OPTS)
    clean = tmp_path / "clean"
    build(clean, [sample_folder], FakeEncoder(), OPTS)
    assert set(partial) <= set(_tile_set(idx)) and _tile_set(idx) == _tile_set(clean)


def test_model_mismatch_is_refused_and_rebuild_starts_over(
    sample_folder, tmp_path, encoder, model_info, FakeEncoder
):
    idx = tmp_path / "idx"
    build(idx, [sample_folder], encoder, OPTS)
    with pytest.raises(ModelMismatchError, match="bits 64 \\(index\\) vs 128"):
        open_index(idx, expect={**model_info, "bits": 128})
    other = FakeEncoder(seed=1)
    with pytest.raises(ModelMismatchError, match="heads_sha"):
        build(idx, [sample_folder], other, OPTS)
    summary = build(idx, [sample_folder], other, OPTS, rebuild=True)
    assert summary.added == 4
    with open_index(idx, expect=other.info.to_json()) as index:
        assert index.model["heads_sha"] == other.heads.sha


def test_model_with_inconsistent_bits_is_a_config_error(sample_folder, tmp_path, FakeEncoder):
    class Wrong(FakeEncoder):
        def _encode_batch(self, batch):
            out = super()._encode_batch(batch)
            return type(out)(np.concatenate([out.tanh, out.tanh], axis=1))

    with pytest.raises(ConfigError, match="128 bits, the index 64"):
        build(tmp_path / "idx", [sample_folder], Wrong(), OPTS)


def test_missing_faiss_file_is_rebuilt_from_the_store(sample_folder, tmp_path, encoder, model_info):
    idx = tmp_path / "idx"
    build(idx, [sample_folder], encoder, OPTS)
    (faiss_file,) = idx.glob("codes-g*.faiss")
    faiss_file.unlink()
    with open_index(idx) as index:
        assert index.tiles == len(_tile_set(idx))
    assert faiss_file.exists()
    # a stale file under the current name (e.g. left by a deleted store) is not trusted
    BinaryIndex.from_codes(np.zeros((3, 8), np.uint8), np.arange(3), 64).save(faiss_file)
    with open_index(idx) as index:
        assert index.tiles == len(_tile_set(idx))
        assert index.search(index.tile_code(1), k=1)[0].tile_id == 1
    # garbage under the current name is detected and rebuilt, never read
    faiss_file.write_bytes(os.urandom(4096))
    with open_index(idx) as index:
        assert index.tiles == len(_tile_set(idx))
        assert index.search(index.tile_code(2), k=1)[0].tile_id == 2


# -- exporters -------------------------------------------------------------------------------
def test_exporters_write_geojson_gpkg_and_contact_sheet(
    sample_folder, tmp_path, encoder, model_info
):
    build(tmp_path / "idx", [sample_folder], encoder, OPTS)
    with open_index(tmp_path / "idx") as index:
        hits = index.search(index.tile_vector(1), k=8)
        query = {"text": "a river", "k": 8}
        gj = write_geojson(hits, tmp_path / "out/hits.geojson", query, model_info)
        gpkg = write_gpkg(hits, tmp_path / "out/hits.gpkg", query, model_info)
        png = contact_sheet(
            hits,
            tmp_path / "out/hits.png",
            thumb=64,
            reader=lambda h: index.read_tile_pixels(h.tile_id),
        )
    doc = json.loads(gj.read_text())
    assert [f["properties"]["rank"] for f in doc["features"]] == [h.rank for h in hits]
    assert doc["features"][0]["geometry"] == hits[0].footprint
    conn = sqlite3.connect(gpkg)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
    rows = conn.execute("SELECT rank, score, query, geom FROM cach_hits ORDER BY rank").fetchall()
    assert [r[0] for r in rows] == [h.rank for h in hits]
    assert json.loads(rows[0][2]) == query
    assert all((r[3] is None) == (h.footprint is None) for r, h in zip(rows, hits, strict=True))
    assert rows[0][3] is None or rows[0][3][:2] == b"GP"
    conn.close()
    if shutil.which("ogrinfo"):
        out = subprocess.run(
            ["ogrinfo", "-so", "-al", str(gpkg)], capture_output=True, text=True, check=True
        ).stdout
        assert "Feature Count: 8" in out and "Polygon" in out
    img = Image.open(png)
    assert img.size[0] >= 5 * 64 and img.mode == "RGB"


# -- one writer, resumable inside a file, confirmation of large runs -----------------------
SLOW_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {here!r})
    from conftest import FakeEncoder
    from model_runtime.index import BuildOptions, build_index
    from model_runtime.raster.tiling import TilingOptions

    class Slow(FakeEncoder):
        def _encode_batch(self, batch):
            time.sleep(0.1)
            return super()._encode_batch(batch)

    build_index(sys.argv[1], [sys.argv[2]], Slow(),
                BuildOptions(tiling=TilingOptions(tile_size=128), batch_size={batch_size},
                             unit_tiles=32))
""")


def _slow_build(tmp_path, idx, folder, batch_size: int = 8) -> subprocess.Popen:
    """A build in another process whose encoder sleeps 0.1 s per batch (to be killed)."""
    script = tmp_path / "slow.py"
    script.write_text(SLOW_SCRIPT.format(here=str(HERE), batch_size=batch_size))
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent)}
    return subprocess.Popen([sys.executable, str(script), str(idx), str(folder)], env=env,
                            stderr=subprocess.PIPE)


def _units(idx) -> int:
    try:
        conn = sqlite3.connect(idx / "index.sqlite", timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM units").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _wait(proc, predicate, what: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def large_raster(tmp_path, write_raster):
    """One 2048 x 2048 raster: 256 tiles of 128 px, 8 units of 32 tiles."""
    folder = tmp_path / "large"
    folder.mkdir()
    rng = np.random.default_rng(3)
    data = rng.integers(0, 255, (3, 2048, 2048), dtype=np.uint8)
    write_raster(folder / "large.tif", data)
    return folder


def test_a_second_run_on_the_same_index_exits_with_a_message(tmp_path, large_raster,
                                                             FakeEncoder):
    idx = tmp_path / "idx"
    proc = _slow_build(tmp_path, idx, large_raster)
    try:
        _wait(proc, lambda: _units(idx) >= 1, "the first run's first unit")
        second = FakeEncoder()
        with pytest.raises(IndexStateError, match="Another indexing run") as err:
            build(idx, [large_raster], second, OPTS)
        assert err.value.code == "index_locked" and f"process {proc.pid}" in str(err.value)
        assert second.tiles == 0
    finally:
        proc.kill()
        proc.wait()
    # the lock dies with its holder: the next run takes it
    build(idx, [large_raster], FakeEncoder(), OPTS)


def test_a_killed_run_resumes_inside_a_large_file(tmp_path, large_raster, FakeEncoder):
    idx = tmp_path / "idx"
    proc = _slow_build(tmp_path, idx, large_raster)
    _wait(proc, lambda: _units(idx) >= 2, "two committed units")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _units(idx)
    assert 2 <= done < 8
    resumed = FakeEncoder()
    summary = build(idx, [large_raster], resumed, OPTS, unit_tiles=32)
    assert resumed.tiles == 256 - 32 * done, "only the units the killed run did not commit"
    assert summary.tiles == 256
    clean = tmp_path / "clean"
    build(clean, [large_raster], FakeEncoder(), OPTS, unit_tiles=32)
    assert _tile_set(idx) == _tile_set(clean)


def _huge_vrt(folder: Path, small: Path, size: int = 200_000) -> Path:
    """A VRT of ``size`` x ``size`` pixels whose only source is a small raster in ``folder``."""
    vrt = folder / "huge.vrt"
    vrt.write_text(textwrap.dedent(f"""\
        <VRTDataset rasterXSize="{size}" rasterYSize="{size}">
          <VRTRasterBand dataType="Byte" band="1">
            <SimpleSource>
              <SourceFilename relativeToVRT="1">{small.name}</SourceFilename>
              <SourceBand>1</SourceBand>
            </SimpleSource>
          </VRTRasterBand>
        </VRTDataset>"""))
    return vrt


def test_more_than_100000_new_tiles_wait_for_confirmation(tmp_path, write_raster, FakeEncoder,
                                                           monkeypatch):
    from model_runtime.errors import ConfirmationNeeded
    from model_runtime.index import build as build_module

    folder = tmp_path / "huge"
    folder.mkdir()
    small = write_raster(folder / "small.tif", np.full((1, 64, 64), 7, np.uint8))
    small.rename(folder / "small.dat")  # not a raster extension: only the VRT is listed
    _huge_vrt(folder, folder / "small.dat")
    model = FakeEncoder()
    with pytest.raises(ConfirmationNeeded) as err:
        build(tmp_path / "idx", [folder], model, TilingOptions(tile_size=256))
    est = err.value.details["estimate"]
    assert est["new_tiles"] > 100_000 and est["files"] == 1 and model.tiles == 0
    assert "--yes" in str(err.value) and err.value.code == "confirm_large_run"
    # with confirm the run goes ahead (threshold lowered so the test stays small)
    monkeypatch.setattr(build_module, "CONFIRM_ABOVE_TILES", 10)
    rasters = tmp_path / "rasters2"
    rasters.mkdir()
    write_raster(rasters / "a.tif", np.full((3, 512, 512), 9, np.uint8))
    with pytest.raises(ConfirmationNeeded):
        build(tmp_path / "idx2", [rasters], model, OPTS)
    summary = build(tmp_path / "idx2", [rasters], model, OPTS, confirm=True)
    assert summary.tiles == 16 and model.tiles == 16


def test_a_file_whose_tiles_are_all_empty_is_indexed_with_no_tiles(tmp_path, write_raster,
                                                                    FakeEncoder):
    """A unit whose every tile is masked (nodata everywhere) commits with no tiles: the file
    counts as indexed and the next run leaves it alone (regression: it aborted the run)."""
    folder = tmp_path / "nodata"
    folder.mkdir()
    write_raster(folder / "empty.tif", np.full((1, 256, 256), 255, np.uint8), nodata=255)
    write_raster(folder / "full.tif", np.full((3, 256, 256), 80, np.uint8))
    summary = build(tmp_path / "idx", [folder], FakeEncoder(), OPTS)
    assert summary.added == 2 and summary.tiles == 4 and summary.skipped == ()
    again = FakeEncoder()
    assert build(tmp_path / "idx", [folder], again, OPTS).unchanged == 2 and again.tiles == 0


def test_changed_tiling_options_retile_every_file_without_duplicates(sample_folder, tmp_path,
                                                                     FakeEncoder):
    from model_runtime.errors import ConfirmationNeeded

    idx = tmp_path / "idx"
    build(idx, [sample_folder], FakeEncoder(), OPTS)
    wider = TilingOptions(tile_size=256)
    with pytest.raises(ConfirmationNeeded) as err:  # another tiling re-tiles: asked first
        build(idx, [sample_folder], FakeEncoder(), wider)
    assert err.value.code == "confirm_retile" and "--yes" in str(err.value)
    summary = build(idx, [sample_folder], FakeEncoder(), wider, confirm=True)
    assert summary.updated == 4 and summary.removed == 0
    clean = tmp_path / "clean"
    build(clean, [sample_folder], FakeEncoder(), wider)
    assert _tile_set(idx) == _tile_set(clean)


def test_a_large_run_refused_for_confirmation_changes_nothing(sample_folder, tmp_path,
                                                              FakeEncoder, monkeypatch):
    from model_runtime.errors import ConfirmationNeeded
    from model_runtime.index import build as build_module

    idx = tmp_path / "idx"
    build(idx, [sample_folder], FakeEncoder(), OPTS)
    before = _tile_set(idx)
    (sample_folder / "rasterio/rotated.tif").unlink()  # gone: would be dropped by a real run
    monkeypatch.setattr(build_module, "CONFIRM_ABOVE_TILES", 0)
    with pytest.raises(ConfirmationNeeded):
        build(idx, [sample_folder], FakeEncoder(), TilingOptions(tile_size=64))
    assert _tile_set(idx) == before
