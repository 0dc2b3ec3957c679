"""The caption bank: training captions that describe a tile, hash-indexed with the text head.

The bank is the deduplicated training captions of UCM-captions (official train split), RSITMD,
RSICD and Sydney-captions (train splits), stored as ``resources/captions/bank.txt.gz`` so users
without the datasets can caption. Rebuild it with
``python -m model_runtime.commands.caption_bank build`` (``ship-codes`` writes the shipped codes).

Codes of the bank depend on the text encoder and the text head. They are looked up, in order, in
``resources/captions/codes-<key>.npy`` (shipped for the shipped heads, so the first caption is fast),
then in ``paths.cache_dir()``, and computed (then cached) otherwise. ``<key>`` combines the backbone,
the SHA-256 of the heads file and of the bank, so a retrained head never reads stale codes.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.codes import pack
from model_runtime.errors import DataError
from model_runtime.fsutil import atomic_write
from model_runtime.paths import RESOURCES, cache_dir, data_root
from model_runtime.protocol import Caption

LOG = logging.getLogger(__name__)

CAPTIONS_DIR = RESOURCES / "captions"
BANK_PATH = CAPTIONS_DIR / "bank.txt.gz"

#: (dataset folder, caption file, split key, split value) of each source, in bank order
SOURCES = (
    ("ucm", "captions.json", "split_official", "train"),
    ("rsitmd", "captions.json", "split", "train"),
    ("rsicd", "captions.json", "split", "train"),
    ("sydney", "captions_karpathy_format.json", "split", "train"),
)


# --- building the bank ---------------------------------------------------------------------------
def _dedupe_key(text: str) -> str:
    """Case, spacing and final full stop do not make a caption different."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(" .")


def clean_caption(text: str) -> str:
    """``"there is a farm ."`` -> ``"There is a farm."``: tidy spacing, full stop, capital."""
    text = re.sub(r"\s+", " ", text.strip())
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    if text and not text.endswith((".", "!", "?")):
        text += "."
    return text[:1].upper() + text[1:]


def _captions_of(record: dict[str, Any]) -> list[str]:
    if "captions" in record:
        return [str(c) for c in record["captions"]]
    return [str(s["raw"]) for s in record.get("sentences", [])]  # Karpathy format


def collect_training_captions(root: str | os.PathLike | None = None) -> tuple[list[str], dict]:
    """All training captions of the bank's sources under the data root, deduplicated, in order.

    Returns ``(captions, counts)`` where counts gives per-source raw and newly-added sentences.
    A missing source is skipped with a warning; none at all is a :class:`DataError`.
    """
    base = data_root(root)
    seen: set[str] = set()
    captions: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    for folder, name, split_key, split in SOURCES:
        path = base / folder / name
        if not path.is_file():
            LOG.warning("caption source missing, skipped: %s", path)
            continue
        try:
            records = json.loads(path.read_text(encoding="utf-8"))["images"]
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"Cannot read captions from {path}: {err}") from err
        raw = added = 0
        for record in records:
            if record.get(split_key) != split:
                continue
            for text in _captions_of(record):
                raw += 1
                text = clean_caption(text)
                key = _dedupe_key(text)
                if key and key not in seen:
                    seen.add(key)
                    captions.append(text)
                    added += 1
        counts[folder] = {"raw": raw, "added": added}
    if not captions:
        raise DataError(f"No training captions found under {base}; give --data-root.")
    return captions, counts


def write_bank(captions: Iterable[str], path: str | os.PathLike = BANK_PATH) -> Path:
    """One caption per line, gzip; ``mtime=0`` so the same captions give the same bytes."""
    data = "".join(c.replace("\n", " ") + "\n" for c in captions).encode("utf-8")

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0,
                                                   compresslevel=9) as gz:
            gz.write(data)

    return atomic_write(path, write)


def load_bank(path: str | os.PathLike = BANK_PATH) -> list[str]:
    """The bank's captions, one per entry."""
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return [line.rstrip("\n") for line in fh if line.strip()]
    except FileNotFoundError as err:
        raise DataError(
            f"Caption bank not found: {path}. Rebuild it with "
            "'python -m model_runtime.commands.caption_bank build --data-root DIR'."
        ) from err
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DataError(f"Caption bank {path} is corrupt: {err}") from err


# --- codes and search ----------------------------------------------------------------------------
def codes_key(backbone: str, heads_sha: str, bank_sha: str) -> str:
    return f"{backbone}-{heads_sha[:16]}-{bank_sha[:12]}"


def _load_codes(path: Path, n: int, nbytes: int) -> np.ndarray | None:
    try:
        codes = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        LOG.warning("ignoring unreadable caption codes %s: %s", path, err)
        return None
    if codes.dtype != np.uint8 or codes.shape != (n, nbytes):
        LOG.warning(
            "ignoring caption codes %s of shape %s (want %s)", path, codes.shape, (n, nbytes)
        )
        return None
    return codes


def save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda tmp: np.save(tmp.open("wb"), array, allow_pickle=False))


class CaptionBank:
    """The bank's captions and their packed codes in a faiss binary index."""

    def __init__(self, captions: list[str], codes: np.ndarray, bits: int) -> None:
        import faiss

        if len(captions) != len(codes):
            raise ValueError(f"{len(captions)} captions but {len(codes)} codes")
        self.captions = captions
        self.codes = np.ascontiguousarray(codes, dtype=np.uint8)
        self.bits = bits
        self._index = faiss.IndexBinaryFlat(bits)
        self._index.add(self.codes)

    def __len__(self) -> int:
        return len(self.captions)

    def search(self, query_codes: np.ndarray, k: int = 5,
               max_overlap: float = 0.5) -> list[Caption]:
        """Nearest captions to one packed query code (``uint8 [bits/8]`` or ``[1, bits/8]``).

        Many captions share a code, so ties are broken by the bank's order, which puts the
        shorter official UCM sentences first. Near-paraphrases of a caption already chosen
        (word overlap >= ``max_overlap``) are skipped, so the k captions say k different things;
        if too few differ, the closest remaining ones fill the list.
        """
        q = np.ascontiguousarray(np.asarray(query_codes, dtype=np.uint8).reshape(1, -1))
        want = min(len(self), max(k * 20, k + 64))
        dist, idx = self._index.search(q, want)
        ranked = [(d, i) for d, i in sorted(zip(dist[0].tolist(), idx[0].tolist(), strict=True))
                  if i >= 0]
        chosen: list[tuple[int, int]] = []
        words: list[set[str]] = []
        for d, i in ranked:
            bag = set(re.findall(r"[a-z]+", self.captions[i].lower()))
            if any(len(bag & w) / max(len(bag | w), 1) >= max_overlap for w in words):
                continue
            chosen.append((d, i))
            words.append(bag)
            if len(chosen) == k:
                break
        for d, i in ranked:  # too few distinct captions: fill with the closest others
            if len(chosen) == k:
                break
            if (d, i) not in chosen:
                chosen.append((d, i))
        chosen.sort()
        return [Caption(r + 1, self.captions[i], int(d), round(1.0 - d / self.bits, 4))
                for r, (d, i) in enumerate(chosen)]


def bank_codes(
    captions: list[str],
    key: str,
    nbytes: int,
    compute: Callable[[], np.ndarray],
) -> np.ndarray:
    """Packed codes of ``captions``: shipped file, else cache, else ``compute()`` (tanh outputs
    or packed codes of all captions) and cached. ``key`` is :func:`codes_key`."""
    name = f"codes-{key}.npy"
    for path in (CAPTIONS_DIR / name, cache_dir() / "captions" / name):
        if path.is_file():
            codes = _load_codes(path, len(captions), nbytes)
            if codes is not None:
                LOG.debug("caption codes from %s", path)
                return codes
    LOG.info("no stored caption codes %s: computing them once", name)
    out = np.asarray(compute())
    codes = out if out.dtype == np.uint8 else pack(out)
    try:
        save_npy(cache_dir() / "captions" / name, codes)
    except OSError as err:
        LOG.warning("could not cache caption codes: %s", err)
    return codes
