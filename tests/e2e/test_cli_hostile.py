"""The real ``cach`` command given hostile arguments and environment: every one ends in a coded,
worded error (exit 1, or argparse's exit 2 for a malformed option), never a traceback, and
nothing is written. Model-free except the thread-cap case, which fails before a model loads."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from model_runtime.paths import PLUGIN_ROOT, SAMPLES_DIR

CACH = [sys.executable, "-m", "model_runtime"]
HUGE = "1180591620717411303424"  # 2**70: more than SQLite's integers hold


def cach(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CACH, *map(str, args)], cwd=PLUGIN_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


@pytest.fixture
def picture(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "q.png"
    Image.new("RGB", (64, 64), (40, 90, 20)).save(path)
    return path


@pytest.mark.parametrize("args", [
    ("search", "--index", "IDX", "--tile", HUGE),
    ("search", "--index", "IDX", "--positive", "3", HUGE),
    ("search", "--index", "IDX", "--tile", "-1"),
    ("caption", "--index", "IDX", "--tile", HUGE),
])
def test_a_tile_id_out_of_range_is_refused_like_the_worker_does(args, tmp_path):
    args = tuple(str(tmp_path / "idx") if a == "IDX" else a for a in args)
    proc = cach(*args)
    assert proc.returncode == 2, proc.stderr
    assert "a tile id is from 0 to 9223372036854775807" in proc.stderr
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("steps", ["-5", "0", "100000"])
def test_adapt_refuses_steps_out_of_range(steps, tmp_path):
    proc = cach("adapt", "--index", tmp_path / "idx", "--steps", steps)
    assert proc.returncode == 2 and "steps is from 1 to 10000" in proc.stderr, proc.stderr
    assert not (tmp_path / "idx").exists()


def test_a_billion_encoder_threads_is_a_configuration_error(picture):
    proc = cach("caption", "--image", picture, env={"CACH_ENCODER_THREADS": "1000000000"},
                timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "CACH_ENCODER_THREADS=1000000000 is more than the 1024" in proc.stderr


def test_an_endpoint_that_is_not_a_url_is_a_configuration_error(tmp_path):
    proc = cach("index", "s3://bucket/ortho", "--index", tmp_path / "idx",
                env={"AWS_ENDPOINT_URL": "notaurl", "AWS_ACCESS_KEY_ID": "k",
                     "AWS_SECRET_ACCESS_KEY": "s"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "AWS_ENDPOINT_URL must be an http:// or https:// URL" in proc.stderr


@pytest.mark.parametrize("where", ["/proc/cach-index", "/proc/self/fdinfo", "/sys/cach"])
def test_an_index_folder_in_a_system_folder_is_refused(where):
    proc = cach("index", SAMPLES_DIR, "--index", where)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "a system folder that cannot hold an index" in proc.stderr


def test_a_fifo_as_the_query_image_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "q.png"
    os.mkfifo(fifo)
    proc = cach("caption", "--image", fifo, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "not a regular file" in proc.stderr and "does not exist" not in proc.stderr


def test_a_file_whose_name_is_not_utf8_is_indexed_searched_exported_and_dropped(tmp_path):
    """The name's bytes reach GDAL (through a UTF-8 alias) and SQLite (as a BLOB) unchanged:
    indexed, found, exported with its bytes shown as \\xNN, and dropped when it is deleted."""
    src = tmp_path / "src"
    src.mkdir()
    odd = os.fsencode(src) + b"/caf\xe9-\xff.tif"  # Latin-1 and a byte no encoding has
    with open(SAMPLES_DIR / "cogeo.tif", "rb") as fin, open(odd, "wb") as fout:
        fout.write(fin.read())
    index = tmp_path / "idx"
    env = {"CACH_CACHE": str(tmp_path / "cache"), "CACH_DEVICE": "cpu"}
    proc = cach("index", src, "--index", index, "--tile-size", "256", "--json", env=env,
                timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["skipped"] == [] and summary["added"] == 1 and summary["tiles"] > 0
    gpkg = tmp_path / "hits.gpkg"
    proc = cach("search", "--index", index, "--text", "houses", "-k", "3", "--json",
                "--gpkg", gpkg, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    hits = json.loads(proc.stdout.strip().splitlines()[-1])["results"]
    assert hits and {h["source"] for h in hits} == {os.fsdecode(odd)}
    with sqlite3.connect(gpkg) as conn:
        shown = _any_source(conn)
    assert shown == {os.fsencode(src).decode() + "/caf\\xe9-\\xff.tif"}
    os.remove(odd)
    proc = cach("index", src, "--index", index, "--json", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["removed"] == 1


def _any_source(conn) -> set[str]:
    """The ``source`` values of the GeoPackage's feature table, whatever its name."""
    layer = conn.execute("SELECT table_name FROM gpkg_contents WHERE data_type='features'"
                         ).fetchone()[0]
    return {r[0] for r in conn.execute(f'SELECT source FROM "{layer}"')}


def test_json_with_the_large_run_confirmation_prints_one_json_object(tmp_path):
    """``--json`` and a run that waits for --yes: stdout is JSON (the coded error with the
    estimate), exit 3, nothing encoded."""
    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "small.dat").write_bytes((SAMPLES_DIR / "cogeo.tif").read_bytes())
    (folder / "huge.vrt").write_text(
        '<VRTDataset rasterXSize="200000" rasterYSize="200000"><VRTRasterBand dataType="Byte" '
        'band="1"><SimpleSource><SourceFilename relativeToVRT="1">small.dat</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>")
    proc = cach("index", folder, "--index", tmp_path / "idx", "--json",
                env={"CACH_CACHE": str(tmp_path / "cache"), "CACH_DEVICE": "cpu"}, timeout=600)
    assert proc.returncode == 3, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout[:2000]
    error = json.loads(lines[0])["error"]
    assert (error["type"], error["code"]) == ("confirm", "confirm_large_run")
    assert error["details"]["estimate"]["new_tiles"] > 100_000
