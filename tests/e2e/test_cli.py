"""The real ``cach`` command as a subprocess on the bundled sample rasters: index (dry run,
build, incremental re-run), text search with --json and every export, tile search, bbox,
caption, and the errors a user sees. Uses the shipped 64-bit heads (the product path)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from model_runtime.paths import HEADS_DIR, PLUGIN_ROOT, SAMPLES_DIR
from model_runtime.protocol import FOOTPRINT_FIELDS

CACH = [sys.executable, "-m", "model_runtime"]
HIT_KEYS = {"rank", "tile_id", "source", "window", "crs", "georeferenced", "footprint",
            "footprint_src", "hamming", "score", "confidence"}
SHIPPED = HEADS_DIR / "cach-effnetlite0-minilm-64.safetensors"

pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason=f"shipped heads missing: {SHIPPED}")


def cach(*args: str, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*CACH, *map(str, args)],
        cwd=PLUGIN_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if ok:
        assert proc.returncode == 0, f"cach {' '.join(map(str, args))}\n{proc.stderr[-3000:]}"
    return proc


def as_json(proc: subprocess.CompletedProcess) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"--json must print one JSON object, got:\n{proc.stdout[:2000]}"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "CACH_CACHE": str(cache), "CACH_DEVICE": "cpu"}


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    for path in SAMPLES_DIR.glob("*.tif"):
        shutil.copy2(path, folder / path.name)
    assert len(list(folder.glob("*.tif"))) >= 3
    return folder


@pytest.fixture(scope="module")
def index_dir(samples, env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("index")
    dry = as_json(cach("index", samples, "--index", out, "--dry-run", "--json", env=env))
    assert dry["files"] == len(list(samples.glob("*.tif"))) and dry["tiles"] > 0
    assert not (out / "index.sqlite").exists(), "a dry run writes nothing"
    summary = as_json(cach("index", samples, "--index", out, "--json", env=env))
    assert summary["added"] == dry["files"] and summary["skipped"] == []
    assert 0 < summary["tiles"] <= dry["tiles"]
    return out


def test_reindex_is_incremental(index_dir, samples, env) -> None:
    again = as_json(cach("index", samples, "--index", index_dir, "--json", env=env))
    assert again["encoded"] == 0 and again["added"] == 0
    assert again["unchanged"] == len(list(samples.glob("*.tif")))


def test_text_search_json_and_exports(index_dir, env, tmp_path) -> None:
    gpkg, png, geojson = tmp_path / "hits.gpkg", tmp_path / "hits.png", tmp_path / "hits.geojson"
    out = as_json(
        cach(
            "search",
            "--index",
            index_dir,
            "--text",
            "a residential area with houses",
            "-k",
            "5",
            "--json",
            "--gpkg",
            gpkg,
            "--contact-sheet",
            png,
            "--geojson",
            geojson,
            env=env,
        )
    )
    results = out["results"]
    assert len(results) == 5 and [h["rank"] for h in results] == [1, 2, 3, 4, 5]
    for hit in results:
        assert HIT_KEYS <= set(hit)
        assert 0.0 <= hit["score"] <= 1.0 and 0 <= hit["hamming"] <= 64
        assert len(hit["window"]) == 4 and Path(hit["source"]).is_file()
        if hit["crs"] is None:
            assert hit["footprint"] is None
        else:
            assert hit["footprint"]["type"] == "Polygon"
    assert [h["score"] for h in results] == sorted((h["score"] for h in results), reverse=True)
    assert out["query"]["text"] == "a residential area with houses"
    assert out["model"]["backbone"] == "effnetlite0-minilm" and out["model"]["bits"] == 64
    assert out["index"]["bits"] == 64 and out["timing_ms"]["total"] > 0
    assert set(out["outputs"]) == {"gpkg", "contact_sheet", "geojson"}
    assert isinstance(out["weak_match"], bool | None)
    with sqlite3.connect(gpkg) as conn:
        rows = conn.execute("SELECT rank, tile_id, score FROM cach_hits ORDER BY rank").fetchall()
        kind = conn.execute("SELECT data_type FROM gpkg_contents WHERE table_name='cach_hits'")
        assert kind.fetchone()[0] == "features"
        columns = [c[1] for c in conn.execute("PRAGMA table_info(cach_hits)")]
    # the plugin saves footprints with exactly this schema (protocol.FOOTPRINT_FIELDS)
    assert columns == ["fid", "geom", *(name for name, _ in FOOTPRINT_FIELDS)]
    assert [r[1] for r in rows] == [h["tile_id"] for h in results]
    from PIL import Image

    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > 100
    assert len(json.loads(geojson.read_text())["features"]) == 5


def test_table_output(index_dir, env) -> None:
    proc = cach("search", "--index", index_dir, "--tile", "1", "--k", "3", env=env)
    assert "rank" in proc.stdout and "score" in proc.stdout
    assert proc.stdout.count(".tif") == 3


def test_tile_search_and_bbox(index_dir, env) -> None:
    # every tile but tile 1 (a tile query needs no encoder: it uses the stored outputs)
    first = as_json(
        cach(
            "search",
            "--index",
            index_dir,
            "--tile",
            "1",
            "--k",
            "100",
            "--no-collapse",
            "--json",
            env=env,
        )
    )["results"]
    cogeo = next(h for h in first if h["source"].endswith("cogeo.tif"))
    assert len(first) == len({h["tile_id"] for h in first}) >= 30
    similar = as_json(
        cach(
            "search",
            "--index",
            index_dir,
            "--tile",
            cogeo["tile_id"],
            "--k",
            "4",
            "--json",
            env=env,
        )
    )["results"]
    assert 1 <= len(similar) <= 4
    assert cogeo["tile_id"] not in [h["tile_id"] for h in similar]
    # a box in web mercator around the cogeo.tif tile keeps only tiles meeting it
    xs = [p[0] for p in cogeo["footprint"]["coordinates"][0]]
    ys = [p[1] for p in cogeo["footprint"]["coordinates"][0]]
    from rasterio.warp import transform

    (x0, x1), (y0, y1) = transform("EPSG:4326", "EPSG:3857", [min(xs), max(xs)], [min(ys), max(ys)])
    boxed = as_json(
        cach(
            "search",
            "--index",
            index_dir,
            "--tile",
            cogeo["tile_id"],
            "--json",
            "--bbox",
            x0,
            y0,
            x1,
            y1,
            "--bbox-crs",
            "EPSG:3857",
            "--no-collapse",
            env=env,
        )
    )["results"]
    assert boxed and all(h["source"].endswith("cogeo.tif") for h in boxed)


def test_caption_tile_and_image(index_dir, samples, env) -> None:
    out = as_json(cach("caption", "--index", index_dir, "--tile", "1", "--json", env=env))
    assert [c["rank"] for c in out["captions"]] == [1, 2, 3, 4, 5]
    assert all(c["text"] and 0 <= c["score"] <= 1 for c in out["captions"])
    assert len({c["text"] for c in out["captions"]}) == 5
    assert 1 not in [h["tile_id"] for h in out["similar"]]
    image = as_json(
        cach("caption", "--image", samples / "cogeo.tif", "--k", "3", "--json", env=env)
    )
    assert len(image["captions"]) == 3 and image["similar"] == []


def test_errors_are_messages_not_tracebacks(index_dir, tmp_path, env) -> None:
    missing = cach("search", "--index", tmp_path / "nothing", "--text", "x", env=env, ok=False)
    assert missing.returncode == 1 and "no CACH index" in missing.stderr
    assert "Traceback" not in missing.stderr
    bits = cach("search", "--index", index_dir, "--text", "x", "--bits", "32", env=env, ok=False)
    assert bits.returncode == 1 and "64-bit" in bits.stderr and "Traceback" not in bits.stderr
    tile = cach("search", "--index", index_dir, "--tile", "999999", env=env, ok=False)
    assert tile.returncode == 1 and "999999" in tile.stderr
    noquery = cach("search", "--index", index_dir, env=env, ok=False)
    assert noquery.returncode == 1 and "query" in noquery.stderr


def test_an_empty_folder_says_nothing_was_indexed(tmp_path, env) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cach("index", empty, "--index", tmp_path / "idx", env=env)
    assert "holds no tiles" in proc.stderr and "no raster files were found" in proc.stderr


def test_a_huge_run_waits_for_yes_with_exit_code_3(tmp_path, env) -> None:
    """A 200,000 x 200,000 px VRT (about 610k tiles) is refused without --yes: the estimate
    is printed, exit code 3, nothing is encoded and no model is loaded."""
    folder = tmp_path / "huge"
    folder.mkdir()
    shutil.copy2(SAMPLES_DIR / "cogeo.tif", folder / "small.dat")
    (folder / "huge.vrt").write_text(
        '<VRTDataset rasterXSize="200000" rasterYSize="200000"><VRTRasterBand dataType="Byte" '
        'band="1"><SimpleSource><SourceFilename relativeToVRT="1">small.dat</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>")
    proc = cach("index", folder, "--index", tmp_path / "idx", env=env, ok=False)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "--yes" in proc.stderr and "new tiles" in proc.stdout and "Traceback" not in proc.stderr
    assert "model effnetlite0-minilm" not in proc.stderr  # nothing loaded
    with sqlite3.connect(tmp_path / "idx" / "index.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM tiles").fetchone()[0] == 0
