"""A refined search saved on one index and run on a second, then again after ``cach adapt`` of
the second: the real ``cach`` CLI and the worker as subprocesses, the shipped 64-bit heads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_runtime.paths import HEADS_DIR, PLUGIN_ROOT, SAMPLES_DIR

CACH = [sys.executable, "-m", "model_runtime"]
SHIPPED = HEADS_DIR / "cach-effnetlite0-minilm-64.safetensors"
TEXT = "a residential area with houses"

pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason=f"shipped heads missing: {SHIPPED}")


def cach(*args, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CACH, *map(str, args)], cwd=PLUGIN_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, f"cach {' '.join(map(str, args))}\n{proc.stderr[-3000:]}"
    return proc


def as_json(proc: subprocess.CompletedProcess) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout[:2000]
    return json.loads(lines[0])


def worker_search(params: dict, env: dict) -> dict:
    """One search through the worker (stdio protocol); returns its response."""
    proc = subprocess.Popen([*CACH, "serve", "--stdio"], cwd=PLUGIN_ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, bufsize=1)
    try:
        proc.stdin.write(json.dumps({"id": 1, "op": "search", "params": params}) + "\n")
        proc.stdin.flush()
        for line in proc.stdout:
            msg = json.loads(line)
            if msg.get("id") == 1 and "ok" in msg:
                return msg
        raise AssertionError("the worker ended without answering")
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def confidences_fall(results: list[dict]) -> bool:
    conf = [h["confidence"] for h in results]
    return all(c is not None for c in conf) and conf == sorted(conf, reverse=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "CACH_CACHE": str(cache), "CACH_DEVICE": "cpu"}


@pytest.fixture(scope="module")
def indexes(tmp_path_factory, env) -> tuple[Path, Path]:
    """Index A: two sample rasters; index B: the other two (imagery 'indexed later')."""
    root = tmp_path_factory.mktemp("saved")
    tifs = sorted(p for p in SAMPLES_DIR.glob("*.tif") if p.name != "rotated.tif")
    assert len(tifs) >= 3
    for name, part in (("a", tifs[:1]), ("b", tifs[1:])):
        (root / f"src_{name}").mkdir()
        for path in part:
            shutil.copy2(path, root / f"src_{name}" / path.name)
        cach("index", "--index", root / f"idx_{name}", root / f"src_{name}", env=env)
    return root / "idx_a", root / "idx_b"


def test_saved_on_one_index_runs_on_another_and_after_adapt(indexes, env, tmp_path):
    idx_a, idx_b = indexes
    first = as_json(cach("search", "--index", idx_a, "--text", TEXT, "-k", "6", "--json",
                         env=env))
    ids = [h["tile_id"] for h in first["results"]]
    saved = tmp_path / "refined.json"
    refined = as_json(cach("search", "--index", idx_a, "--text", TEXT, "--positive", *ids[:3],
                           "--negative", *ids[3:], "--save", saved, "--json", env=env))
    assert refined["query"]["learner"] == "logistic-prior"
    assert refined["query"]["saved_to"] == str(saved) and saved.is_file()
    assert not {h["tile_id"] for h in refined["results"]} & set(ids)
    assert confidences_fall(refined["results"])
    doc = json.loads(saved.read_text())
    assert doc["model"]["heads_sha"] == refined["model"]["heads_sha"]
    assert doc["query"]["text"] == TEXT and len(doc["query"]["marked"]) == 6

    # the second index, same heads: the full scorer, CLI and worker alike
    on_b = as_json(cach("search", "--index", idx_b, "--saved", saved, "-k", "5", "--json",
                        env=env))
    assert on_b["query"]["scorer"] == "full" and len(on_b["results"]) == 5
    assert confidences_fall(on_b["results"])
    via_worker = worker_search({"index": str(idx_b), "saved": str(saved), "k": 5}, env)
    assert via_worker["ok"], via_worker
    assert [h["tile_id"] for h in via_worker["result"]["results"]] == [
        h["tile_id"] for h in on_b["results"]]

    # adapt the second index: new image head, same projection -> the portable scorer
    adapted = as_json(cach("adapt", "--index", idx_b, "--steps", "5", "--json", env=env))
    assert adapted["heads_sha"] != refined["model"]["heads_sha"]
    after = as_json(cach("search", "--index", idx_b, "--saved", saved, "-k", "5", "--json",
                         env=env))
    assert after["query"]["scorer"] == "portable" and len(after["results"]) == 5
    assert after["model"]["heads_sha"] == adapted["heads_sha"]
    assert confidences_fall(after["results"])
    via_worker = worker_search({"index": str(idx_b), "saved": str(saved), "k": 5}, env)
    assert via_worker["ok"] and via_worker["result"]["query"]["scorer"] == "portable"

    # the same imagery indexed with the 32-bit heads (same projection): projection-only scorer
    idx_c = idx_b.parent / "idx_c"
    cach("index", "--index", idx_c, "--bits", "32", idx_b.parent / "src_b", env=env)
    on_c = as_json(cach("search", "--index", idx_c, "--saved", saved, "-k", "5", "--json",
                        env=env))
    assert on_c["query"]["scorer"] == "projection" and on_c["index"]["bits"] == 32
    assert len(on_c["results"]) == 5 and confidences_fall(on_c["results"])


def test_a_saved_search_for_another_backbone_or_damaged_is_refused(indexes, env, tmp_path):
    idx_a, _ = indexes
    ids = [h["tile_id"] for h in as_json(cach("search", "--index", idx_a, "--text", TEXT,
                                              "-k", "4", "--json", env=env))["results"]]
    saved = tmp_path / "s.json"
    cach("search", "--index", idx_a, "--positive", *ids[:2], "--negative", *ids[2:],
         "--save", saved, env=env)
    doc = json.loads(saved.read_text())
    doc["model"]["backbone"] = "another-backbone"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    proc = cach("search", "--index", idx_a, "--saved", other, env=env, ok=False)
    assert proc.returncode != 0 and "another-backbone" in proc.stderr
    assert "Refine the search again" in proc.stderr
    reply = worker_search({"index": str(idx_a), "saved": str(other)}, env)
    assert reply["ok"] is False and reply["error"]["code"] == "saved_search_mismatch"

    doc = json.loads(saved.read_text())
    doc["scorers"]["full"]["bias"] = "NaN"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    proc = cach("search", "--index", idx_a, "--saved", bad, env=env, ok=False)
    assert proc.returncode != 0 and "not a usable saved search" in proc.stderr
    reply = worker_search({"index": str(idx_a), "saved": str(bad)}, env)
    assert reply["ok"] is False and reply["error"]["code"] == "saved_search_invalid"
