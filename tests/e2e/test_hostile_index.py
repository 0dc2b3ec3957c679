"""The hostile indexing folder through the real ``cach`` command: one good raster (and a good VRT
over it) beside every bad case found so far (tests/runtime/hostile.py). The run exits 0, names
every bad file with its reason, leaves the good one searchable, a second run changes nothing,
and a loopback listener that every network reference in the folder points at hears nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from hostile import Listener, build_hostile_folder  # noqa: E402

from model_runtime.paths import PLUGIN_ROOT  # noqa: E402

CACH = [sys.executable, "-m", "model_runtime"]


def cach(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*CACH, *map(str, args)], cwd=PLUGIN_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def as_json(proc: subprocess.CompletedProcess) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert len(lines) == 1, f"--json must print one JSON object, got:\n{proc.stdout[:2000]}"
    return json.loads(lines[0])


def _listener_hears(listener: Listener) -> None:
    """Control: a plain request reaches the listener and is logged (then the log is cleared)."""
    try:
        urllib.request.urlopen(listener.url("control"), timeout=5)
    except urllib.error.HTTPError as err:
        assert err.code == 404
    assert listener.requests() == ["GET /control"]
    listener.log.write_text("")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("hostile_e2e")
    env = {**os.environ, "CACH_CACHE": str(tmp / "cache"), "CACH_DEVICE": "cpu"}
    index = tmp / "index"
    with Listener(tmp / "requests.log", timeout=1500) as listener:
        _listener_hears(listener)
        folder = build_hostile_folder(tmp, listener.port)
        first = cach("index", folder.root, "--index", index, "--json", env=env)
        second = cach("index", folder.root, "--index", index, "--json", env=env)
        search = cach("search", "--index", index, "--text", "a field with trees", "--k", "10",
                      "--no-collapse", "--json", env=env)
        requests = listener.requests()
    return SimpleNamespace(folder=folder, first=first, second=second, search=search,
                           requests=requests)


def _skipped(summary: dict) -> dict[str, dict]:
    out = {}
    for item in summary["skipped"]:
        out[item["path"]] = item
        out[os.path.realpath(item["path"])] = item
    return out


def test_index_exits_0_without_a_traceback(run):
    for proc in (run.first, run.second):
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr


def test_every_bad_file_is_named_with_its_reason(run):
    skipped = _skipped(as_json(run.first))
    missing = [p for p in run.folder.bad if p not in skipped]
    assert not missing, f"not reported as skipped: {missing}"
    for path, bad in run.folder.bad.items():
        item = skipped[path]
        assert item["code"] in bad.codes, (path, item)
        assert os.path.basename(path) in item["reason"] and bad.word in item["reason"], item


def test_the_good_raster_and_vrt_are_indexed_and_searchable(run):
    summary = as_json(run.first)
    good = {str(p) for p in run.folder.good}
    assert summary["added"] == len(good) and summary["tiles"] >= 1
    assert not good & set(_skipped(summary))
    vrt = str(run.folder.root / "good_mosaic.vrt")
    assert summary["vrt_sources"] == {vrt: [str(run.folder.root / "good.tif")]}
    results = as_json(run.search)["results"]
    assert results and {h["source"] for h in results} <= good


def test_a_second_run_changes_nothing_and_names_the_same_files(run):
    first, second = as_json(run.first), as_json(run.second)
    assert second["encoded"] == 0 and second["added"] == 0
    assert second["unchanged"] == len(run.folder.good) and second["tiles"] == first["tiles"]
    assert {s["path"] for s in second["skipped"]} == {s["path"] for s in first["skipped"]}


def test_the_listener_never_received_a_request(run):
    assert run.requests == [], "indexing or searching reached the network"
