"""The shipped CACH heads: present, small, well-formed, and evaluating to the model card's numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model_runtime.hashing.heads_io import load_heads, read_metadata, shipped_heads_path
from model_runtime.paths import HEADS_DIR, PLUGIN_ROOT

BITS = (16, 32, 64, 128)
EXPECTED = HEADS_DIR / "expected_metrics.json"


@pytest.mark.parametrize("bits", BITS)
def test_shipped_file_is_well_formed(bits):
    path = shipped_heads_path(bits)
    meta = read_metadata(path)
    assert (meta["method"], meta["backbone"], meta["bits"]) == ("cach", "effnetlite0-minilm", bits)
    assert (meta["image_dim"], meta["text_dim"]) == (1280, 384)
    assert meta["extra"]["split"] == "duch-train"
    heads = load_heads(path, expect_backbone="effnetlite0-minilm", expect_bits=bits)
    assert heads.bits == bits


def test_shipped_heads_are_small_and_inference_only():
    from safetensors import safe_open

    total = 0
    for bits in BITS:
        path = shipped_heads_path(bits)
        total += path.stat().st_size
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            # the heads and the frozen projection the image head reads; no decoders
            assert all(k.startswith(("image_head.", "text_head.", "image_proj.")) for k in keys)
            assert {"image_proj.mean", "image_proj.matrix"} <= set(keys)
            assert str(f.get_tensor(keys[0]).dtype) == "torch.float16"
    assert total < 8e6, f"shipped heads take {total / 1e6:.1f} MB"
    card = (HEADS_DIR / "MODEL_CARD.md").read_text()
    assert "effnetlite0-minilm" in card and "split_duch" in card


@pytest.mark.slow
def test_shipped_heads_match_model_card():
    """Needs the UCM features (extracted once, ~15 min on 2 CPU cores; cached afterwards)."""
    expected = json.loads(EXPECTED.read_text())
    tol = expected["tolerance"]
    proc = subprocess.run(
        [sys.executable, "-m", "model_runtime", "eval", "--dataset", "ucm", "--json"],
        capture_output=True,
        text=True,
        cwd=PLUGIN_ROOT,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert (out["dataset"], out["protocol"]) == ("ucm", "duch")
    got = {(r["bits"], r["direction"]): r for r in out["results"]}
    assert len(got) == 16 and {r["method"] for r in out["results"]} == {"cach"}
    for bits, rows in expected["eval"].items():
        for row in rows:
            r = got[(int(bits), row["direction"])]
            for key in ("map20_duch", "map20_topk", "map_all"):
                assert r[key] == pytest.approx(row[key], abs=tol), (bits, row["direction"], key)


@pytest.mark.parametrize("bits", (64, 128))
def test_the_third_release_is_the_first_heads_with_the_second_projection(bits):
    """64 and 128 bits: the first release's image and text heads, unchanged (their image head
    reads the features), and the second release's projection beside them (docs/unseen.md)."""
    from safetensors.numpy import load_file

    name = shipped_heads_path(bits).name
    now = load_file(str(shipped_heads_path(bits)))
    first = load_file(str(HEADS_DIR / "archive" / "round1" / name))
    second = load_file(str(HEADS_DIR / "archive" / "round2" / name))
    assert set(now) == set(first) | {"image_proj.mean", "image_proj.matrix"}
    for key, value in now.items():
        origin = second if key.startswith("image_proj.") else first
        assert value.dtype == origin[key].dtype and (value == origin[key]).all(), key
    assert read_metadata(shipped_heads_path(bits))["image_input"] == "features"
    assert read_metadata(HEADS_DIR / "archive" / "round2" / name)["image_input"] == "projection"
