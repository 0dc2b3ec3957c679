"""Shards (no Ray needed): a unit's rows survive the round trip through a shard file exactly;
the manifest ignores a line torn by a kill; shards left by a killed run are merged once (by the
local executor too), and shards of another model or of a source changed since are discarded.
A crafted shards folder (paths out of it, links, a header naming another file, non-npz and
truncated files) loads, commits and deletes nothing that is not a shard of this run."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from types import SimpleNamespace

import numpy as np
from conftest import FakeEncoder

from model_runtime.index.build import BuildOptions, build_index
from model_runtime.index.scan import Todo
from model_runtime.index.shards import (
    ShardSet,
    decode_shard,
    encode_shard,
    merge_leftovers,
    run_identity,
)
from model_runtime.index.store import Store
from model_runtime.index.units import encode_unit, plan_source, unit_key
from model_runtime.index.writer import IndexWriter
from model_runtime.raster.sources import list_sources
from model_runtime.raster.tiling import TilingOptions

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


def scan_of(folder):
    """What a run's scan hands the merge: the sources it listed to encode."""
    refs, _ = list_sources([str(folder)])
    return SimpleNamespace(todo=[Todo(ref, "added") for ref in refs])


def test_leftovers_merged_once_stale_and_foreign_dropped(tmp_path, sample_folder):
    model = FakeEncoder()
    info, tiling = model.info.to_json(), TILING.to_json()
    results = unit_results(sample_folder, model)
    shards = ShardSet(tmp_path, run_identity(info, tiling)).open()
    for r in results:
        shards.add(r.unit.key, r.unit.source.uri, encode_shard(r), len(r.rows))
    store = Store(tmp_path, create=True)
    writer = IndexWriter(store, info)
    writer.begin(tiling)
    scan = scan_of(sample_folder)
    units, tiles = merge_leftovers(writer, info, tiling, scan)
    assert units == len(results) and tiles == sum(len(r.rows) for r in results)
    assert {k for t in scan.todo for k in t.done} == {r.unit.key for r in results}
    assert not shards.dir.exists()
    assert merge_leftovers(writer, info, tiling, scan_of(sample_folder)) == (0, 0)
    assert len(store_rows(tmp_path)) == tiles
    # a shard of a source changed since (another size or version than the scan's) is stale
    stale = results[0]
    changed = scan_of(sample_folder)
    changed.todo = [Todo(SimpleNamespace(uri=t.source.uri, size=t.source.size + 1,
                                         version=t.source.version), "updated")
                    for t in changed.todo]
    shards.open().add(stale.unit.key, stale.meta.uri, encode_shard(stale), len(stale.rows))
    before = store_rows(tmp_path)
    assert merge_leftovers(writer, info, tiling, changed) == (0, 0)
    assert store_rows(tmp_path) == before
    # shards written for another model are never merged
    other = ShardSet(tmp_path, run_identity(FakeEncoder(seed=1).info.to_json(), tiling)).open()
    other.add(stale.unit.key, stale.meta.uri, encode_shard(stale), len(stale.rows))
    assert merge_leftovers(writer, info, tiling, scan_of(sample_folder)) == (0, 0)
    assert not other.dir.exists()
    assert json.loads(json.dumps(run_identity(info, tiling)))["model"]["bits"] == 64
    store.close()


def test_local_executor_merges_what_a_killed_ray_run_left(tmp_path, sample_folder):
    """docs/ray.md: a killed Ray run's shards are merged by the next run, local or Ray,
    without encoding those units again (on 61685e6 the local executor ignored them)."""
    model = FakeEncoder()
    options = BuildOptions(tiling=TILING, unit_tiles=8, batch_size=4)
    results = unit_results(sample_folder, model)
    index = tmp_path / "idx"
    shards = ShardSet(index, run_identity(model.info.to_json(), TILING.to_json())).open()
    for r in results[:3]:
        shards.add(r.unit.key, r.unit.source.uri, encode_shard(r), len(r.rows))
    summary = build_index(index, [str(sample_folder)], model, options)
    left = sum(len(r.rows) for r in results[:3])
    assert summary.encoded == summary.tiles - left, (summary.encoded, summary.tiles, left)
    assert not shards.dir.exists()
    clean = build_index(tmp_path / "clean", [str(sample_folder)], FakeEncoder(), options)
    assert store_rows(index) == store_rows(tmp_path / "clean") and clean.tiles == summary.tiles


def _forge(result, uri: str, size: int, version: str) -> bytes:
    """A shard whose header says it holds ``uri`` (with a key that fits it)."""
    unit = SimpleNamespace(uri=uri, size=size, version=version)
    key = unit_key(unit, TILING, result.unit.start, result.unit.stop)
    data = encode_shard(result)
    with np.load(__import__("io").BytesIO(data)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays["header"]))
    header["unit"].update(key=key, uri=uri)
    header["meta"].update(uri=uri, size=size, version=version)
    arrays["header"] = np.array(json.dumps(header))
    buf = __import__("io").BytesIO()
    np.savez(buf, **arrays)
    return key, buf.getvalue()


def test_a_crafted_shards_folder_loads_commits_and_deletes_nothing_else(
        tmp_path, sample_folder, caplog):
    model = FakeEncoder()
    info, tiling = model.info.to_json(), TILING.to_json()
    results = unit_results(sample_folder, model)
    good, other = results[0], results[1]
    index, victim = tmp_path / "a" / "idx", tmp_path / "victim"
    victim.mkdir()
    (victim / "v1.npz").write_bytes(encode_shard(other))
    (victim / "v2.npz").write_bytes(encode_shard(other))
    shards = ShardSet(index, run_identity(info, tiling)).open()
    shards.add(good.unit.key, good.unit.source.uri, encode_shard(good), len(good.rows))
    lines = [{"key": other.unit.key, "file": "../../../victim/v1.npz"},
             {"key": other.unit.key, "file": str(victim / "v2.npz")},
             {"key": "../../../victim/v1", "file": "../../../victim/v1.npz"}]
    # a link in shards/ with a proper name, to a valid shard outside
    (shards.dir / f"{'a' * 40}.npz").symlink_to(victim / "v1.npz")
    lines.append({"key": "a" * 40, "file": f"{'a' * 40}.npz"})
    # a header that names a file no scan listed (/etc/passwd), with a key that fits it
    key, forged = _forge(good, "/etc/passwd", 1234, "1")
    (shards.dir / f"{key}.npz").write_bytes(forged)
    lines.append({"key": key, "file": f"{key}.npz"})
    # not an npz, and a truncated shard
    bad = {"b" * 40: b"hello, not a zip", "c" * 40: encode_shard(other)[:200]}
    for name, data in bad.items():
        (shards.dir / f"{name}.npz").write_bytes(data)
        lines.append({"key": name, "file": f"{name}.npz"})
    with open(shards.manifest, "a") as fh:
        fh.writelines(json.dumps(line) + "\n" for line in lines)
    victim_before = {p.name: p.read_bytes() for p in victim.iterdir()}
    store = Store(index, create=True)
    writer = IndexWriter(store, info)
    writer.begin(tiling)
    with caplog.at_level(logging.WARNING, logger="model_runtime.index.shards"):
        units, tiles = merge_leftovers(writer, info, tiling, scan_of(sample_folder))
    store.close()
    assert (units, tiles) == (1, len(good.rows))  # only the one real shard of this run
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == victim_before
    sources = {r[0] for r in store_rows(index)}
    assert sources == {good.meta.uri} and "/etc/passwd" not in sources
    text = caplog.text
    for name in ("b" * 40, "c" * 40):
        assert f"{name}.npz" in text and "not a readable shard" in text
    assert "victim/v1.npz" in text and "names no shard" in text
    # what the run did not write stays (named), what it checked is gone
    left = sorted(p.name for p in shards.dir.iterdir())
    assert left == sorted([f"{'a' * 40}.npz", f"{'b' * 40}.npz", f"{'c' * 40}.npz"])
    assert (shards.dir / f"{'a' * 40}.npz").is_symlink()
    # the next run over the same folder merges nothing more and finishes
    summary = build_index(index, [str(sample_folder)], model,
                          BuildOptions(tiling=TILING, unit_tiles=8, batch_size=4))
    assert summary.tiles == len(store_rows(tmp_path / "a" / "idx")) and summary.tiles > 40
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == victim_before
    shutil.rmtree(shards.dir)
