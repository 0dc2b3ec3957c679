"""What an index holds, through the real ``cach index`` (docs/indexing.md, "What an index
holds"): re-indexing one folder without repeating the tiling keeps every other folder's tiles
(issue 16, item 1), another tiling re-tiles every folder only with --yes, ``--remove ROOT``
drops a folder, and an index of the previous schema keeps working."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from test_cli import SAMPLES_DIR, as_json, cach

pytestmark = pytest.mark.skipif(not (SAMPLES_DIR / "cogeo.tif").is_file(),
                                reason="sample rasters missing")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    import os

    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "CACH_CACHE": str(cache), "CACH_DEVICE": "cpu"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("roots")
    a, b = root / "a", root / "b"
    a.mkdir()
    b.mkdir()
    for name in ("cogeo.tif", "rotated.tif"):
        shutil.copy2(SAMPLES_DIR / name, a / name)
    shutil.copy2(SAMPLES_DIR / "landsat_2020_epsg4326.tif", b / "landsat.tif")
    return a, b


@pytest.fixture(scope="module")
def built(folders, env, tmp_path_factory) -> tuple[Path, dict]:
    """Folders a and b indexed with --tile-size 96 (the issue's repro, first step)."""
    idx = tmp_path_factory.mktemp("built") / "idx"
    a, b = folders
    summary = as_json(cach("index", a, b, "--index", idx, "--tile-size", "96", "--json",
                           env=env))
    assert summary["tiles"] > 0
    return idx, summary


@pytest.fixture
def idx(built, tmp_path) -> Path:
    copy = tmp_path / "idx"
    shutil.copytree(built[0], copy)
    return copy


def sources(idx: Path) -> dict[str, int]:
    conn = sqlite3.connect(idx / "index.sqlite")
    try:
        return dict(conn.execute("SELECT path, tiles FROM sources").fetchall())
    finally:
        conn.close()


def test_reindexing_one_folder_keeps_the_other_folders_tiles(idx, built, folders, env):
    a, b = folders
    before = sources(idx)
    summary = as_json(cach("index", b, "--index", idx, "--json", env=env))
    assert summary["removed"] == 0 and summary["tiles"] == built[1]["tiles"]
    assert built[1].get("roots_added") == [str(a), str(b)]
    assert summary["roots"] == [str(a), str(b)] and summary["roots_added"] == []
    assert sources(idx) == before  # a's rasters are all still there, with the 96 px tiling
    # a new folder is added as a root and the summary says so
    c = idx.parent / "c"
    c.mkdir()
    shutil.copy2(SAMPLES_DIR / "cogeo.tif", c / "again.tif")
    plain = cach("index", c, "--index", idx, env=env).stdout
    assert f"added folder {c} to the index" in plain


def test_another_tiling_is_refused_then_retiles_every_folder_with_yes(idx, built, folders, env):
    a, b = folders
    before = sources(idx)
    refused = cach("index", b, "--index", idx, "--tile-size", "128", "--json", env=env,
                   ok=False)
    assert refused.returncode == 3
    error = as_json(refused)["error"]
    assert error["code"] == "confirm_retile" and "--yes" in error["message"]
    assert error["details"]["retile_tiles"] == built[1]["tiles"]
    assert f"{built[1]['tiles']:,} tiles" in error["message"]
    assert sources(idx) == before  # nothing written
    done = as_json(cach("index", b, "--index", idx, "--tile-size", "128", "--yes", "--json",
                        env=env))
    assert done["updated"] == 3 and done["removed"] == 0  # a's two files re-tiled too
    after = sources(idx)
    assert set(after) == set(before) and after != before
    tiling = json.loads(sqlite3.connect(idx / "index.sqlite").execute(
        "SELECT value FROM meta WHERE key='tiling'").fetchone()[0])
    assert tiling["tile_size"] == 128


def test_remove_a_root(idx, folders, env):
    a, b = folders
    done = as_json(cach("index", "--remove", a, "--index", idx, "--json", env=env))
    assert done["roots_removed"] == [str(a)] and done["roots"] == [str(b)]
    left = sources(idx)
    assert left and all(p.startswith(str(b)) for p in left)
    assert done["tiles"] == sum(left.values())
    found = as_json(cach("search", "--index", idx, "--text", "a river", "--k", "3", "--json",
                         env=env))
    assert found["results"] and all(h["source"].startswith(str(b)) for h in found["results"])


def test_an_index_of_the_previous_schema_keeps_its_folders(idx, built, folders, env):
    a, b = folders
    conn = sqlite3.connect(idx / "index.sqlite")
    conn.execute("DROP TABLE roots")  # as written before roots were stored (schema 2)
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    summary = as_json(cach("index", b, "--index", idx, "--json", env=env))
    assert summary["tiles"] == built[1]["tiles"] and summary["removed"] == 0
    assert summary["roots"] == [str(a), str(b)]
    assert sqlite3.connect(idx / "index.sqlite").execute("PRAGMA user_version").fetchone()[0] == 3


def test_rebuild_starts_over_from_every_folder_with_the_index_tiling(idx, built, folders, env):
    a, b = folders
    done = as_json(cach("index", b, "--index", idx, "--rebuild", "--json", env=env))
    assert done["added"] == 3 and done["tiles"] == built[1]["tiles"]  # a's files too, at 96 px
    assert done["roots"] == [str(a), str(b)]
