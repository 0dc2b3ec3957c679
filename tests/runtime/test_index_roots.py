"""What an index holds (docs/indexing.md): its roots and its one tiling. A run over one folder
never drops another folder's tiles; another tiling re-tiles every root only when confirmed; a
root goes only when removed; old indexes (schema 2) get their roots on upgrade."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

from model_runtime.errors import ConfigError, ConfirmationNeeded
from model_runtime.index.build import BuildOptions, build_index
from model_runtime.index.roots import derive_roots, holdings, plan_run, resolve_tiling
from model_runtime.index.store import DB_NAME, Store
from model_runtime.raster.tiling import TilingOptions

T96 = TilingOptions(tile_size=96)


def build(index_dir, paths, model, tiling=T96, **options):
    return build_index(index_dir, [str(p) for p in paths], model,
                       BuildOptions(tiling=tiling, **options))


@pytest.fixture
def two_folders(tmp_path, write_raster):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, value in ((a, 40), (b, 90)):
        folder.mkdir()
        for i in range(2):
            write_raster(folder / f"{folder.name}{i}.tif",
                         np.full((3, 200, 200), value + i, np.uint8))
    return a, b


def _state(index_dir):
    store = Store(index_dir)
    try:
        return store.roots(), store.meta().get("tiling"), store.count_tiles(), store.sources()
    finally:
        store.close()


def test_the_stored_tiling_is_used_unless_another_is_asked_for():
    stored = T96.to_json()
    plan = plan_run(stored, ["/x/a", "/x/b"], [], ["/x/b"], {}, confirm=False, rebuild=False)
    assert plan.tiling.tile_size == 96 and not plan.retile and plan.paths == ["/x/b"]
    assert plan.roots_added == []
    plan = plan_run(stored, ["/x/a"], [], ["/x/b"], {"tile_size": 96}, False, False)
    assert plan.roots_added == ["/x/b"] and not plan.retile
    with pytest.raises(ConfirmationNeeded) as err:
        plan_run(stored, ["/x/a", "/x/b"], [], ["/x/b"], {"tile_size": 128}, False, False)
    assert err.value.code == "confirm_retile" and "--yes" in str(err.value)
    assert "2 folder(s)" in str(err.value)
    plan = plan_run(stored, ["/x/a", "/x/b"], [], ["/x/b"], {"tile_size": 128}, True, False)
    assert plan.retile and plan.paths == ["/x/a", "/x/b"]  # every root is re-tiled
    # a new index takes what was asked, over the defaults
    assert plan_run(None, [], [], ["/x/a"], {"overlap": 0.5}, False, False).tiling.overlap == 0.5
    assert resolve_tiling({"tile_metres": 50.0}, {"tile_size": 64}).tile_metres is None


def test_indexing_one_folder_again_keeps_the_other_folders_tiles(two_folders, tmp_path,
                                                                 FakeEncoder):
    a, b = two_folders
    idx = tmp_path / "idx"
    first = build(idx, [a, b], FakeEncoder())
    assert sorted(first.roots_added) == sorted([str(a), str(b)])
    roots, tiling, tiles, _ = _state(idx)
    assert roots == [str(a), str(b)] and tiling["tile_size"] == 96 and tiles == first.tiles
    # the repro, through the builder: the default tiling is another tiling -> refused
    with pytest.raises(ConfirmationNeeded):
        build(idx, [b], FakeEncoder(), TilingOptions())
    assert _state(idx)[2] == tiles
    # with the index's own tiling (what the CLI/worker now resolve), nothing is dropped
    again = build(idx, [b], FakeEncoder())
    assert again.removed == 0 and again.tiles == tiles and again.unchanged == 2
    assert again.roots_added == () and set(again.roots) == {str(a), str(b)}


def test_another_tiling_confirmed_retiles_every_root(two_folders, tmp_path, FakeEncoder):
    a, b = two_folders
    idx = tmp_path / "idx"
    build(idx, [a, b], FakeEncoder())
    summary = build(idx, [b], FakeEncoder(), TilingOptions(tile_size=100), confirm=True)
    assert summary.updated == 4 and summary.removed == 0  # a's files too
    clean = build(tmp_path / "clean", [a, b], FakeEncoder(), TilingOptions(tile_size=100))
    assert summary.tiles == clean.tiles
    assert _state(idx)[1]["tile_size"] == 100


def test_a_source_goes_only_when_its_file_is_gone_or_its_root_removed(two_folders, tmp_path,
                                                                      FakeEncoder):
    a, b = two_folders
    idx = tmp_path / "idx"
    build(idx, [a, b], FakeEncoder())
    (a / "a0.tif").unlink()  # gone from a remembered root
    summary = build(idx, [b], FakeEncoder())
    assert summary.removed == 1 and len(_state(idx)[3]) == 3
    # a remembered root missing as a whole (an unmounted disk) keeps its tiles
    moved = tmp_path / "elsewhere"
    shutil.move(str(a), moved)
    summary = build(idx, [b], FakeEncoder())
    assert summary.removed == 0 and len(_state(idx)[3]) == 3
    shutil.move(str(moved), a)
    store = Store(idx)
    try:
        assert store.remove_root(str(a)) == 1
        assert store.roots() == [str(b)] and len(store.sources()) == 2
        assert store.integrity_problems() == []
    finally:
        store.close()


def test_remove_roots_through_the_pipeline(two_folders, tmp_path, FakeEncoder):
    from model_runtime.pipeline import Pipeline

    a, b = two_folders
    idx = tmp_path / "idx"
    before = build(idx, [a, b], FakeEncoder())
    pipeline = Pipeline()
    with pytest.raises(ConfigError, match="not a folder of this index"):
        pipeline.remove_roots(idx, [str(tmp_path / "nope")])
    summary = pipeline.remove_roots(idx, [str(a)])
    assert summary.roots_removed == (str(a),) and summary.roots == (str(b),)
    assert summary.removed == 2 and 0 < summary.tiles < before.tiles
    store = Store(idx)
    try:
        meta = store.meta()
        assert meta["complete"] is True and meta["tiles"] == summary.tiles
    finally:
        store.close()


def _downgrade_to_schema_2(idx, keep_meta_roots: bool) -> None:
    """Make ``idx`` look as an index written before roots were stored (schema 2)."""
    store = Store(idx)
    roots = store.roots()
    store.close()
    conn = sqlite3.connect(idx / DB_NAME)
    conn.execute("DROP TABLE roots")
    if keep_meta_roots:
        conn.execute("INSERT INTO meta(key, value) VALUES ('roots', ?)", (json.dumps(roots),))
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("keep_meta_roots", [True, False])
def test_an_index_of_schema_2_gets_its_roots_and_keeps_them(two_folders, tmp_path, FakeEncoder,
                                                            keep_meta_roots):
    a, b = two_folders
    idx = tmp_path / "idx"
    first = build(idx, [a, b], FakeEncoder())
    _downgrade_to_schema_2(idx, keep_meta_roots)
    store = Store(idx)
    try:
        assert store.version == 3
        assert store.roots() == [str(a), str(b)]
        assert [h.tiles for h in holdings(store.roots(), store.sources().values())] == \
            [first.tiles // 2, first.tiles // 2]
        assert "roots" not in store.meta()
    finally:
        store.close()
    again = build(idx, [b], FakeEncoder())
    assert again.removed == 0 and again.tiles == first.tiles


def test_derived_roots_merge_nested_folders():
    uris = ["/d/x/1.tif", "/d/x/sub/2.tif", "/d/y/3.tif", "s3://bkt/o/4.tif"]
    assert derive_roots(uris) == ["/d/x", "/d/y", "s3://bkt/o"]
    assert derive_roots(uris, known=["/d"]) == ["/d", "s3://bkt/o"]


def test_a_read_only_index_of_schema_2_is_still_read_with_derived_roots(two_folders, tmp_path,
                                                                        FakeEncoder,
                                                                        monkeypatch):
    """An index on a read-only mount cannot be migrated: schema 2 is read as it is (its roots
    derived), never refused for the roots table it lacks."""
    from model_runtime.index import store as store_module

    a, b = two_folders
    idx = tmp_path / "idx"
    first = build(idx, [a, b], FakeEncoder())
    _downgrade_to_schema_2(idx, keep_meta_roots=False)
    monkeypatch.setattr(store_module, "is_writable", lambda _dir: False)
    store = Store(idx)
    try:
        assert store.readonly and store.version == 2
        assert store.roots() == [str(a), str(b)] and store.count_tiles() == first.tiles
    finally:
        store.close()
