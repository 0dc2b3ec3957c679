"""The caption bank: building from the datasets, the shipped file, and Hamming search checked
against a brute-force reference (no model needed)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from model_runtime.captions import (
    BANK_PATH,
    CaptionBank,
    bank_codes,
    clean_caption,
    codes_key,
    collect_training_captions,
    load_bank,
    write_bank,
)
from model_runtime.errors import DataError
from model_runtime.index.binary import hamming
from model_runtime.paths import data_root


def test_clean_caption() -> None:
    assert clean_caption("there is a piece of farmland .") == "There is a piece of farmland."
    assert clean_caption("  many  planes , parked") == "Many planes, parked."
    assert clean_caption("What is it ?") == "What is it?"


def test_shipped_bank_is_deduplicated_text() -> None:
    captions = load_bank()
    assert len(captions) > 20_000
    keys = [c.lower().rstrip(".") for c in captions]
    assert len(set(keys)) == len(keys)
    assert all(c and "\n" not in c for c in captions)
    assert BANK_PATH.stat().st_size < 1_000_000  # compressed, small enough to ship


def test_bank_matches_the_datasets() -> None:
    root = data_root()
    if not (root / "ucm" / "captions.json").is_file():
        pytest.skip(f"datasets not found at {root}")
    captions, counts = collect_training_captions(root)
    assert captions == load_bank(), "resources/captions/bank.txt.gz is stale: rebuild it"
    assert set(counts) == {"ucm", "rsitmd", "rsicd", "sydney"}
    assert counts["ucm"]["raw"] == 1680 * 5  # official train split only


def test_write_bank_is_reproducible(tmp_path) -> None:
    a = write_bank(["One.", "Two."], tmp_path / "a.txt.gz")
    b = write_bank(["One.", "Two."], tmp_path / "b.txt.gz")
    assert a.read_bytes() == b.read_bytes()
    assert load_bank(a) == ["One.", "Two."]
    (tmp_path / "bad.txt.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="bad.txt.gz"):
        load_bank(tmp_path / "bad.txt.gz")
    with pytest.raises(DataError, match="not found"):
        load_bank(tmp_path / "missing.txt.gz")
    assert gzip.decompress(a.read_bytes()) == b"One.\nTwo.\n"


def test_bank_search_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (500, 8), dtype=np.uint8)
    codes[7] = codes[3]  # equal codes: ties break by bank order
    captions = [f"caption {i}" for i in range(500)]
    bank = CaptionBank(captions, codes, 64)
    for q in rng.integers(0, 256, (20, 8), dtype=np.uint8):
        got = bank.search(q, k=10)
        dist = hamming(q, codes)
        order = np.lexsort((np.arange(500), dist))[:10]
        assert [m.text for m in got] == [captions[i] for i in order]
        assert [m.hamming for m in got] == dist[order].tolist()
        assert [m.rank for m in got] == list(range(1, 11))
        assert all(m.score == pytest.approx(1 - m.hamming / 64, abs=1e-4) for m in got)
    top = bank.search(codes[3], k=2)
    assert [m.text for m in top] == ["caption 3", "caption 7"] and top[0].hamming == 0


def test_bank_codes_are_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CACH_CACHE", str(tmp_path))
    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.tanh(np.random.default_rng(1).standard_normal((3, 16)))

    key = codes_key("test-backbone", "ab" * 32, "cd" * 32)
    first = bank_codes(["a", "b", "c"], key, 2, compute)
    again = bank_codes(["a", "b", "c"], key, 2, compute)
    assert first.dtype == np.uint8 and first.shape == (3, 2)
    assert np.array_equal(first, again) and len(calls) == 1
    # a cache for another bank size is ignored, not trusted
    bank_codes(["a", "b"], key, 2, lambda: np.ones((2, 16)))
    assert (tmp_path / "captions" / f"codes-{key}.npy").is_file()


def test_shipped_heads_have_shipped_caption_codes() -> None:
    """Retrained heads need 'python -m model_runtime.commands.caption_bank ship-codes' (the
    first caption is then fast)."""
    from model_runtime.captions import CAPTIONS_DIR
    from model_runtime.paths import HEADS_DIR
    from model_runtime.paths import sha256_file as file_sha256

    heads = sorted(HEADS_DIR.glob("cach-effnetlite0-minilm-*.safetensors"))
    if not heads:
        pytest.skip("no shipped heads")
    from model_runtime.model.heads import read_heads
    from model_runtime.services.captions import text_head_sha

    bank_sha = file_sha256(BANK_PATH)
    n = len(load_bank())
    for path in heads:
        bits = int(path.stem.rsplit("-", 1)[1])
        # heads that carry another file's text head share its codes (extra.text_head_from)
        key = codes_key("effnetlite0-minilm", text_head_sha(read_heads(path)), bank_sha)
        codes_file = CAPTIONS_DIR / f"codes-{key}.npy"
        assert codes_file.is_file(), f"{codes_file.name} missing for {path.name}: run ship-codes"
        assert np.load(codes_file).shape == (n, bits // 8)


def test_bank_search_skips_near_paraphrases() -> None:
    from model_runtime.captions import CaptionBank

    captions = [
        "A part of a golf course with turfs and bunkers.",
        "This is a part of a golf course with turfs and bunkers.",
        "A river runs past a farm.",
        "Many cars are parked in a parking lot.",
    ]
    codes = np.zeros((4, 2), np.uint8)
    codes[3] = 0xFF  # far from the query
    bank = CaptionBank(captions, codes, 16)
    got = [m.text for m in bank.search(np.zeros(2, np.uint8), k=2)]
    assert got == [captions[0], captions[2]]
    # with too few distinct captions the closest others fill the list
    got3 = [m.text for m in bank.search(np.zeros(2, np.uint8), k=4)]
    assert sorted(got3) == sorted(captions) and got3[-1] == captions[3]
