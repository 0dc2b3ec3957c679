"""Shards (no Ray needed): a unit's rows survive the round trip through a shard file exactly;
the manifest ignores a line torn by a kill; shards left by a killed run are merged once, and
shards of another model or of a source changed since are discarded."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
from conftest import FakeEncoder

from model_runtime.index.shards import (
    ShardSet,
    decode_shard,
    encode_shard,
    merge_leftovers,
    run_identity,
)
from model_runtime.index.store import Store
from model_runtime.index.units import encode_unit, plan_source
from model_runtime.index.writer import IndexWriter
from model_runtime.sources import list_sources
from model_runtime.tiling import TilingOptions

TILING = TilingOptions(tile_size=128)


def unit_results(folder, model, unit_tiles=8):
    refs, _ = list_sources([str(folder)])
    out = []
    for ref in refs:
        plan = plan_source(ref, TILING, unit_tiles)
        out += [encode_unit(u, model, 4, plan=plan) for u in plan.units]
    return [r for r in out if r.ok and len(r.rows)]


def test_round_trip_is_exact(sample_folder):
    model = FakeEncoder(proj_dim=16)
    result = unit_results(sample_folder, model)[0]
    back = decode_shard(encode_shard(result))
    assert back.unit.key == result.unit.key and back.unit.span == result.unit.span
    assert back.unit.total == result.unit.total and back.meta == result.meta
    for name in ("windows", "valid", "footprints", "footprints_src"):
        assert getattr(back.rows, name) == [tuple(w) if name == "windows" else w
                                            for w in getattr(result.rows, name)]
    for name in ("codes", "tanh", "proj"):
        a, b = getattr(result.rows, name), getattr(back.rows, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_manifest_ignores_a_torn_line(tmp_path, sample_folder):
    shards = ShardSet(tmp_path, {"model": "m"}).open()
    result = unit_results(sample_folder, FakeEncoder())[0]
    shards.add(result.unit.key, result.unit.source.uri, encode_shard(result), len(result.rows))
    with open(shards.manifest, "a") as fh:
        fh.write('{"key": "half')  # a kill in the middle of a line
    assert [e["key"] for e in shards.entries()] == [result.unit.key]


def store_rows(index_dir):
    with sqlite3.connect(index_dir / "index.sqlite") as db:
        return sorted(db.execute("SELECT s.path, t.col, t.row, t.code FROM tiles t JOIN "
                                 "sources s ON s.id = t.source_id").fetchall())


def test_leftovers_merged_once_stale_and_foreign_dropped(tmp_path, sample_folder):
    model = FakeEncoder()
    info, tiling = model.info.to_json(), TILING.to_json()
    results = unit_results(sample_folder, model)
    shards = ShardSet(tmp_path, run_identity(info, tiling)).open()
    for r in results:
        shards.add(r.unit.key, r.unit.source.uri, encode_shard(r), len(r.rows))
    store = Store(tmp_path, create=True)
    writer = IndexWriter(store, info)
    units, tiles = merge_leftovers(writer, info, tiling)
    assert units == len(results) and tiles == sum(len(r.rows) for r in results)
    assert not shards.dir.exists()
    assert merge_leftovers(writer, info, tiling) == (0, 0)
    assert len(store_rows(tmp_path)) == tiles
    # a shard of a source whose stored identity changed since is stale: dropped, not merged
    stale = results[0]
    store.set_identity(stale.meta.uri, stale.meta.size + 1, "other", 0.0)
    shards.open().add("k-stale", stale.meta.uri, encode_shard(stale), len(stale.rows))
    before = store_rows(tmp_path)
    assert merge_leftovers(writer, info, tiling) == (0, 0)
    assert store_rows(tmp_path) == before
    # shards written for another model are never merged
    other = ShardSet(tmp_path, run_identity(FakeEncoder(seed=1).info.to_json(), tiling)).open()
    other.add("k-other", stale.meta.uri, encode_shard(stale), len(stale.rows))
    assert merge_leftovers(writer, info, tiling) == (0, 0)
    assert not other.dir.exists()
    assert json.loads(json.dumps(run_identity(info, tiling)))["model"]["bits"] == 64
    store.close()
