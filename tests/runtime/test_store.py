"""The SQLite metadata store: schema versions, transactions, hashes, bbox lookups, disk full."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest

from model_runtime.errors import DiskFullError, IndexStateError, ModelMismatchError
from model_runtime.fsutil import file_signature
from model_runtime.index.store import (
    DB_NAME,
    MIGRATIONS,
    VERSION,
    SourceMeta,
    Store,
    TileRows,
    check_model,
)


def _polygon(x0, y0, x1, y1):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x0, y1], [x1, y1], [x1, y0], [x0, y0]]]}


def _meta(path="/data/a.tif", size=10, version="1"):
    return SourceMeta(path, size, version, 1.0, "ab", "EPSG:4326", 100, 100, {"bands": [1, 2, 3]})


def _rows(n=3, offset=0.0, start=0, proj=True):
    windows = [((start + i) * 10, 0, 10, 10, 1) for i in range(n)]
    fps = [_polygon(offset + i, 0, offset + i + 1, 1) for i in range(n)]
    codes = np.arange(n * 8, dtype=np.uint8).reshape(n, 8)
    tanh = np.linspace(-1, 1, n * 64, dtype=np.float32).reshape(n, 64)
    return TileRows(windows, [1.0] * n, fps, fps, codes, tanh.astype(np.float16),
                    np.ones((n, 16), np.float16) if proj else None)


def _insert(store, path="/data/a.tif", n=3, offset=0.0, key=None, units=1, version="1"):
    with store.transaction() as tx:
        sid = store.begin_source(tx, _meta(path, version=version), units)
        return store.commit_unit(tx, sid, key or f"{path}#{version}", (0, n), _rows(n, offset))


def test_new_store_is_migrated_to_the_current_version_and_reopens(tmp_path):
    store = Store(tmp_path, create=True)
    assert store.version == VERSION
    store.set_meta(bits=64, model={"backbone": "x"})
    store.close()
    again = Store(tmp_path)
    assert again.meta() == {"bits": 64, "model": {"backbone": "x"}}
    assert again.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_missing_newer_and_corrupt_stores_are_refused_with_a_message(tmp_path):
    with pytest.raises(IndexStateError, match="no CACH index") as err:
        Store(tmp_path / "none")
    assert err.value.code == "index_missing"
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
    with pytest.raises(IndexStateError, match="damaged") as err:
        Store(bad)
    assert err.value.code == "index_corrupt"


def test_units_round_trip_and_a_changed_source_replaces_its_tiles(tmp_path):
    store = Store(tmp_path, create=True)
    first = _insert(store, n=3)
    ids, codes = store.all_codes(8)
    assert list(ids) == first and codes.shape == (3, 8)
    second = _insert(store, n=2, version="2")  # the file changed: old tiles and units go
    assert min(second) > max(first)  # ids are never reused
    rows = store.tiles(second + first)
    assert sorted(rows) == second
    assert rows[second[1]].window == (10, 0, 10, 10) and rows[second[1]].crs == "EPSG:4326"
    code, tanh, proj = store.vectors([second[0]])[second[0]]
    assert code == bytes(range(8)) and tanh.dtype == np.float32 and tanh.shape == (64,)
    assert proj.shape == (16,)
    source = store.sources()["/data/a.tif"]
    assert source.tiles == 2 and source.status == "done" and source.version == "2"
    assert store.done_units("/data/a.tif") == {"/data/a.tif#2"}
    assert store.integrity_problems() == []
    assert store.meta()["complete"] is False  # any change clears the complete flag


def test_a_source_is_done_when_all_its_units_are_in_and_units_are_never_doubled(tmp_path):
    store = Store(tmp_path, create=True)
    with store.transaction() as tx:
        sid = store.begin_source(tx, _meta(), 2)
        assert store.commit_unit(tx, sid, "u1", (0, 3), _rows(3))
    assert store.sources()["/data/a.tif"].status == "partial"
    with store.transaction() as tx:  # a shard delivered twice adds nothing
        sid = store.begin_source(tx, _meta(), 2)
        assert store.commit_unit(tx, sid, "u1", (0, 3), _rows(3)) is None
        store.commit_unit(tx, sid, "u2", (3, 6), _rows(3, start=3))
    source = store.sources()["/data/a.tif"]
    assert (source.status, source.tiles, store.count_tiles()) == ("done", 6, 6)
    assert store.integrity_problems() == []


def test_a_version_1_index_is_migrated_in_place(tmp_path):
    conn = sqlite3.connect(tmp_path / DB_NAME)
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO sources(path, size, mtime, sha1, status, tiles, indexed_at) "
                 "VALUES ('/data/old.tif', 5, 2.5, 'x', 'done', 1, 'then')")
    conn.execute("INSERT INTO tiles(source_id, col, row, width, height, scale, valid, "
                 "footprint_src, code) VALUES (1, 0, 0, 8, 8, 1, 1.0, '{}', ?)", (bytes(8),))
    conn.commit()
    conn.close()
    store = Store(tmp_path)
    assert store.version == VERSION
    old = store.sources()["/data/old.tif"]
    assert (old.status, old.version, old.tiles) == ("done", None, 1)
    assert store.vectors([1])[1][2] is None  # no projection in old rows


def test_failed_transaction_leaves_nothing_behind(tmp_path):
    store = Store(tmp_path, create=True)
    _insert(store, "/data/keep.tif")
    with pytest.raises(RuntimeError), store.transaction() as tx:
        sid = store.begin_source(tx, _meta("/data/b.tif"), 1)
        store.commit_unit(tx, sid, "b", (0, 1), _rows(1))
        raise RuntimeError("killed mid-unit")
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


def test_file_signature_follows_content_not_mtime(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3 << 20))
    before = file_signature(path)
    os.utime(path, (1, 1))
    assert file_signature(path) == before
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last bytes are in the signature
    path.write_bytes(bytes(data))
    assert file_signature(path) != before


def test_disk_full_rolls_back_and_raises_disk_full_error(tmp_path):
    store = Store(tmp_path, create=True)
    _insert(store, "/data/a.tif")
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(DiskFullError, match="disk is full"):
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
