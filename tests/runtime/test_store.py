"""The SQLite metadata store: schema versions, transactions, hashes, bbox lookups, disk full."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest

from model_runtime.errors import DiskFullError, IndexStateError, ModelMismatchError
from model_runtime.index.store import (
    DB_NAME,
    VERSION,
    Store,
    check_model,
    content_hash,
)


def _polygon(x0, y0, x1, y1):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x0, y1], [x1, y1], [x1, y0], [x0, y0]]]}


def _source(path="/data/a.tif"):
    return {
        "path": path,
        "size": 10,
        "mtime": 1.0,
        "sha1": "ab",
        "crs": "EPSG:4326",
        "width": 100,
        "height": 100,
        "info": {"bands": [1, 2, 3]},
    }


def _insert(store, path="/data/a.tif", n=3, offset=0.0):
    windows = [(i * 10, 0, 10, 10, 1) for i in range(n)]
    fps = [_polygon(offset + i, 0, offset + i + 1, 1) for i in range(n)]
    codes = np.arange(n * 8, dtype=np.uint8).reshape(n, 8)
    feats = np.linspace(-1, 1, n * 64, dtype=np.float32).reshape(n, 64)
    with store.transaction() as tx:
        return store.replace_source(tx, _source(path), windows, [1.0] * n, fps, fps, codes, feats)


def test_new_store_is_migrated_to_the_current_version_and_reopens(tmp_path):
    store = Store(tmp_path, create=True)
    assert store.version == VERSION
    store.set_meta(bits=64, model={"backbone": "x"})
    store.close()
    again = Store(tmp_path)
    assert again.meta() == {"bits": 64, "model": {"backbone": "x"}}
    assert again.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_missing_newer_and_corrupt_stores_are_refused_with_a_message(tmp_path):
    with pytest.raises(IndexStateError, match="run 'cach index' first"):
        Store(tmp_path / "none")
    newer = tmp_path / "newer"
    newer.mkdir()
    conn = sqlite3.connect(newer / DB_NAME)
    conn.execute(f"PRAGMA user_version = {VERSION + 1}")
    conn.close()
    with pytest.raises(IndexStateError, match="newer"):
        Store(newer)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(IndexStateError, match="not a readable index"):
        Store(bad)


def test_replace_source_round_trips_and_replaces_old_tiles(tmp_path):
    store = Store(tmp_path, create=True)
    first = _insert(store, n=3)
    ids, codes = store.all_codes(8)
    assert list(ids) == first and codes.shape == (3, 8)
    second = _insert(store, n=2)
    assert min(second) > max(first)  # ids are never reused
    rows = store.tiles(second + first)
    assert sorted(rows) == second
    assert rows[second[1]].window == (10, 0, 10, 10) and rows[second[1]].crs == "EPSG:4326"
    code, vec = store.vectors([second[0]], 64)[second[0]]
    assert code == bytes(range(8)) and vec.dtype == np.float32 and vec.shape == (64,)
    assert store.sources()["/data/a.tif"].tiles == 2
    assert store.integrity_problems() == []
    assert store.meta()["complete"] is False  # any change clears the complete flag


def test_failed_transaction_leaves_nothing_behind(tmp_path):
    store = Store(tmp_path, create=True)
    _insert(store, "/data/keep.tif")
    with pytest.raises(RuntimeError), store.transaction() as tx:
        store.replace_source(
            tx,
            _source("/data/b.tif"),
            [(0, 0, 1, 1, 1)],
            [1.0],
            [None],
            [_polygon(0, 0, 1, 1)],
            np.zeros((1, 8), np.uint8),
            None,
        )
        raise RuntimeError("killed mid-source")
    assert set(store.sources()) == {"/data/keep.tif"}
    assert store.count_tiles() == 3 and store.integrity_problems() == []


def test_bbox_lookup_and_delete_keep_the_rtree_in_step(tmp_path):
    store = Store(tmp_path, create=True)
    ids_a = _insert(store, "/data/a.tif", n=3, offset=0.0)
    _insert(store, "/data/b.tif", n=3, offset=100.0)
    assert list(store.ids_in_bbox(0.5, 0.2, 1.5, 0.8)) == ids_a[:2]
    assert store.delete_sources(["/data/b.tif", "/data/never.tif"]) == 1
    assert len(store.ids_in_bbox(-1000, -1000, 1000, 1000)) == 3
    assert store.integrity_problems() == []


def test_content_hash_follows_content_not_mtime(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3 << 20))
    before = content_hash(path)
    os.utime(path, (1, 1))
    assert content_hash(path) == before
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # last MiB is hashed
    path.write_bytes(bytes(data))
    assert content_hash(path) != before


def test_disk_full_rolls_back_and_raises_disk_full_error(tmp_path):
    store = Store(tmp_path, create=True)
    _insert(store, "/data/a.tif")
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(DiskFullError, match="disk full"):
        _insert(store, "/data/big.tif", n=2000)
    store.conn.execute("PRAGMA max_page_count = 1073741823")
    assert set(store.sources()) == {"/data/a.tif"} and store.integrity_problems() == []


def test_check_model_names_what_differs(tmp_path):
    stored = {"backbone": "effnetlite0-minilm", "bits": 64, "heads_sha": "aa"}
    check_model(stored, dict(stored), tmp_path)
    check_model(stored, {"backbone": "effnetlite0-minilm"}, tmp_path)
    with pytest.raises(ModelMismatchError, match="bits 64 \\(index\\) vs 128 \\(model\\)"):
        check_model(stored, {**stored, "bits": 128}, tmp_path)
    with pytest.raises(ModelMismatchError, match="heads_sha"):
        check_model(stored, {**stored, "heads_sha": "bb"}, tmp_path)
