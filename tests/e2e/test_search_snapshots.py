"""Golden outputs of ``cach search --json`` on an index of the bundled sample rasters (the real
command, the shipped 64-bit heads): a change in ranking, scores, confidence or the weak-match
verdict shows up as a diff against ``tests/e2e/output_snapshots/search_<name>.json``.

What is compared: the query, the model and index identity, the weak-match verdict and each hit's
rank, tile id, file name, window, CRS, footprint bounds (5 decimals) and Hamming distance
exactly; score and confidence (stored rounded to 3 decimals) within 0.0015, so a last-digit
wobble of another CPU does not fail it. Timings and paths are left out.

After a deliberate change (new heads, a new score): ``CACH_UPDATE_SNAPSHOTS=1 pytest
tests/e2e/test_search_snapshots.py`` rewrites the snapshots; review their diff before committing.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_runtime.paths import HEADS_DIR, PLUGIN_ROOT, SAMPLES_DIR

SNAPSHOTS = Path(__file__).resolve().parent / "output_snapshots"
SHIPPED = HEADS_DIR / "cach-effnetlite0-minilm-64.safetensors"
UPDATE = os.environ.get("CACH_UPDATE_SNAPSHOTS") == "1"
#: score and confidence may differ from the snapshot by this much (they are stored to 3 decimals)
TOLERANCE = 0.0015
SEARCHES = {
    "text_forest": ["--text", "dense forest on a mountain", "-k", "5"],
    "text_residential_no_collapse": ["--text", "a residential area with houses", "-k", "5",
                                     "--no-collapse"],
    "text_harbour": ["--text", "a harbour with ships", "-k", "5"],
    "tile_1": ["--tile", "1", "-k", "5"],
}

pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason=f"shipped heads missing: {SHIPPED}")


def cach(*args: str | Path, env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "model_runtime", *map(str, args)],
                          cwd=PLUGIN_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"cach {' '.join(map(str, args))}\n{proc.stderr[-3000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout[:2000]
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def search_env(tmp_path_factory) -> tuple[dict, Path]:
    """An index of copies of the sample rasters, built by ``cach index`` in a fresh cache."""
    root = tmp_path_factory.mktemp("snapshots")
    samples = root / "samples"
    samples.mkdir()
    for path in sorted(SAMPLES_DIR.glob("*.tif")):
        shutil.copy2(path, samples / path.name)
    env = {**os.environ, "CACH_CACHE": str(root / "cache"), "CACH_DEVICE": "cpu"}
    summary = cach("index", samples, "--index", root / "index", "--json", env=env)
    assert summary["tiles"] > 0 and summary["skipped"] == []
    return env, root / "index"


def _bounds(geometry: dict | None) -> list[float] | None:
    if not geometry:
        return None
    ring = geometry["coordinates"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return [round(v, 5) for v in (min(xs), min(ys), max(xs), max(ys))]


def normalise(out: dict) -> dict:
    """The stable part of a ``search --json`` answer (no timings, no temporary paths)."""
    hits = [{
        "rank": h["rank"], "tile_id": h["tile_id"], "file": Path(h["source"]).name,
        "window": h["window"], "crs": h["crs"], "footprint_bounds": _bounds(h["footprint"]),
        "hamming": h["hamming"], "score": round(h["score"], 3),
        "confidence": None if h["confidence"] is None else round(h["confidence"], 3),
    } for h in out["results"]]
    model = {k: out["model"][k] for k in ("backbone", "bits", "method", "heads", "heads_sha")}
    index = {k: out["index"][k] for k in ("bits", "tiles", "outdated_model")}
    return {"query": out["query"], "model": model, "index": index,
            "weak_match": out["weak_match"], "results": hits}


def _mismatches(want, got, where: str = "") -> list[str]:
    """Where ``got`` differs from ``want``: score and confidence within TOLERANCE, rest exact."""
    if isinstance(want, dict) and isinstance(got, dict):
        if set(want) != set(got):
            return [f"{where}: keys {sorted(want)} != {sorted(got)}"]
        return [m for k in want for m in _mismatches(want[k], got[k], f"{where}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{where}: {len(want)} items != {len(got)}"]
        return [m for i, (a, b) in enumerate(zip(want, got, strict=True))
                for m in _mismatches(a, b, f"{where}[{i}]")]
    loose = where.endswith((".score", ".confidence"))
    if loose and isinstance(want, float) and isinstance(got, float):
        return [] if abs(want - got) <= TOLERANCE else [f"{where}: {want} != {got}"]
    return [] if want == got and type(want) is type(got) else [f"{where}: {want!r} != {got!r}"]


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_search_json_matches_its_snapshot(name: str, search_env) -> None:
    env, index = search_env
    got = normalise(cach("search", "--index", index, *SEARCHES[name], "--json", env=env))
    path = SNAPSHOTS / f"search_{name}.json"
    text = json.dumps(got, indent=2, sort_keys=True) + "\n"
    if UPDATE:
        path.write_text(text)
        return
    assert path.is_file(), f"no snapshot {path}: run with CACH_UPDATE_SNAPSHOTS=1 and review it"
    want = json.loads(path.read_text())
    problems = _mismatches(want, got)
    diff = "".join(difflib.unified_diff(path.read_text().splitlines(True), text.splitlines(True),
                                        str(path), "this run"))
    assert not problems, ("search output differs from its snapshot (CACH_UPDATE_SNAPSHOTS=1 "
                          "rewrites it after a deliberate change):\n" + "\n".join(problems[:20])
                          + "\n" + diff[:4000])


def test_the_comparison_catches_a_changed_ranking_but_not_a_last_digit() -> None:
    hit = {"rank": 1, "tile_id": 9, "score": 0.873, "confidence": 0.349}
    assert _mismatches({"results": [hit]}, {"results": [{**hit, "score": 0.8735}]}) == []
    assert _mismatches({"results": [hit]}, {"results": [{**hit, "score": 0.869}]})
    assert _mismatches({"results": [hit]}, {"results": [{**hit, "tile_id": 13}]})
    assert _mismatches({"weak_match": False}, {"weak_match": None})
    assert _mismatches({"results": [hit]}, {"results": [hit, hit]})


def test_the_next_page_continues_the_first(search_env) -> None:
    """``--offset k`` is the next page of k: ranks k+1..2k, no tile of the first page, collapsed
    page by page (each page spreads its own tiles across sources, so a tile held back from a
    crowded first page may lead the second); without collapse it continues one longer ranking."""
    env, index = search_env
    query = ["search", "--index", index, "--text", "dense forest on a mountain", "--json"]
    page1 = normalise(cach(*query, "-k", "3", env=env))["results"]
    page2 = cach(*query, "-k", "3", "--offset", "3", env=env)
    assert page2["query"]["offset"] == 3 and page2["query"]["k"] == 3
    hits = normalise(page2)["results"]
    assert [h["rank"] for h in hits] == [4, 5, 6]
    assert not {h["tile_id"] for h in hits} & {h["tile_id"] for h in page1}
    flat = [*query, "--no-collapse"]
    whole = normalise(cach(*flat, "-k", "6", env=env))["results"]
    later = normalise(cach(*flat, "-k", "3", "--offset", "3", env=env))["results"]
    assert [(h["rank"], h["tile_id"]) for h in later] == \
        [(h["rank"], h["tile_id"]) for h in whole[3:6]]
