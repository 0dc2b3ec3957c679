"""The worker's ``index`` op follows what an index holds (docs/indexing.md): re-indexing one
folder without the tiling keeps the other folders' tiles, a dry run says what the index holds,
another tiling is refused with ``confirm_retile``, ``remove`` drops a root (issue 16, item 1)."""

from __future__ import annotations

import shutil

from test_worker import WorkerProcess, geotiff, heads_file, model_worker  # noqa: F401


def test_the_index_op_keeps_other_folders_and_removes_only_on_request(
        model_worker, geotiff, tmp_path):  # noqa: F811 - fixtures imported from test_worker
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy2(geotiff / "rasterio" / "cogeo.tif", a / "cogeo.tif")
    shutil.copy2(geotiff / "rasterio" / "rotated.tif", b / "rotated.tif")
    idx = str(tmp_path / "idx")
    first = model_worker.call(1, "index", index=idx, paths=[str(a), str(b)], tile_size=96)
    assert first["ok"], first
    tiles = first["result"]["tiles"]

    again = model_worker.call(2, "index", index=idx, paths=[str(b)])  # no tile_size
    assert again["ok"], again
    assert again["result"]["tiles"] == tiles and again["result"]["removed"] == 0
    assert first["result"]["roots_added"] == [str(a), str(b)] and tiles > 0
    assert again["result"]["roots"] == [str(a), str(b)]

    dry = model_worker.call(3, "index", index=idx, paths=[str(b)], tile_size=128, dry_run=True)
    assert dry["ok"], dry
    held = dry["result"]["roots_held"]
    assert [h["path"] for h in held] == [str(a), str(b)] and sum(h["tiles"] for h in held) == tiles
    assert dry["result"]["retile_tiles"] == tiles and dry["result"]["tiling"]["tile_size"] == 128

    refused = model_worker.call(4, "index", index=idx, paths=[str(b)], tile_size=128)
    assert not refused["ok"]
    assert refused["error"]["type"] == "confirm" and refused["error"]["code"] == "confirm_retile"
    assert refused["error"]["details"]["retile_tiles"] == tiles

    removed = model_worker.call(5, "index", index=idx, remove=[str(a)])
    assert removed["ok"], removed
    assert removed["result"]["roots_removed"] == [str(a)] and removed["result"]["roots"] == [str(b)]
    assert 0 < removed["result"]["tiles"] < tiles

    nothing = model_worker.call(6, "index", index=idx)
    assert not nothing["ok"] and nothing["error"]["code"] == "bad_param"
    assert "'paths'" in nothing["error"]["message"]
