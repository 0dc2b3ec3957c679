"""Image-caption dataset loaders: UCM-captions, RSICD, RSITMD, Sydney (Karpathy) and pairs.jsonl.

Every loader returns a :class:`CaptionDataset`; a file in the wrong format raises
:class:`~model_runtime.errors.DataError` naming the file (and the line, for JSON lines).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.errors import DataError
from model_runtime.paths import data_root as default_data_root


@dataclass(frozen=True)
class CaptionItem:
    image: Path | None  # None when only captions are available (RSICD/RSITMD without images)
    captions: tuple[str, ...]
    label: str | None = None
    #: split name per protocol, e.g. {"official": "train", "duch": "query"}
    splits: tuple[tuple[str, str], ...] = ()

    def split(self, protocol: str) -> str | None:
        return dict(self.splits).get(protocol)


@dataclass(frozen=True)
class CaptionDataset:
    name: str
    source: Path  # the caption file
    items: tuple[CaptionItem, ...]
    classes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.items)

    def class_ids(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index.get(it.label, -1) for it in self.items], dtype=np.int64)

    def split_array(self, protocol: str) -> np.ndarray:
        return np.array([it.split(protocol) or "" for it in self.items])

    def all_captions(self, protocol: str | None = None, split: str | None = None) -> list[str]:
        """Captions, optionally only of items in ``split`` of ``protocol``."""
        return [
            c
            for it in self.items
            if split is None or it.split(protocol or "official") == split
            for c in it.captions
        ]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"Caption file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"Caption file {path} is not valid JSON: {err}") from err


def _records(doc: Any, path: Path, required: Iterable[str]) -> list[dict[str, Any]]:
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list) or not images:
        raise DataError(f"{path}: expected an object with a non-empty 'images' list.")
    for i, rec in enumerate(images):
        missing = [k for k in required if not isinstance(rec, dict) or k not in rec]
        if missing:
            raise DataError(f"{path}: record {i} lacks {', '.join(missing)}.")
    return images


def _captions(rec: dict[str, Any], path: Path, i: int) -> tuple[str, ...]:
    caps = rec.get("captions")
    if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
        raise DataError(f"{path}: record {i} needs a non-empty list of caption strings.")
    return tuple(c.strip() for c in caps)


def load_ucm(root: str | Path | None = None) -> CaptionDataset:
    """UC Merced + UCM-captions from ``<data root>/ucm`` (images and splits included)."""
    base = default_data_root(root) / "ucm"
    path = base / "captions.json"
    recs = _records(_read_json(path), path, ("file", "class", "captions"))
    items = tuple(
        CaptionItem(
            image=base / rec["file"],
            captions=_captions(rec, path, i),
            label=rec["class"],
            splits=(("official", rec.get("split_official", "")), ("duch", rec.get("split_duch", ""))),
        )
        for i, rec in enumerate(recs)
    )
    classes = tuple(sorted({it.label for it in items if it.label}))
    return CaptionDataset("ucm", path, items, classes)


def _load_filename_style(name: str, path: Path, image_dir: Path | None) -> CaptionDataset:
    recs = _records(_read_json(path), path, ("filename", "captions"))
    items = tuple(
        CaptionItem(
            image=(image_dir / rec["filename"]) if image_dir else None,
            captions=_captions(rec, path, i),
            label=rec.get("class"),
            splits=(("official", rec.get("split", "")),),
        )
        for i, rec in enumerate(recs)
    )
    classes = tuple(sorted({it.label for it in items if it.label}))
    return CaptionDataset(name, path, items, classes)


def load_rsicd(root: str | Path | None = None, image_dir: str | Path | None = None) -> CaptionDataset:
    """RSICD captions from the data root; images from a user-supplied folder (``RSICD_images/``)."""
    path = default_data_root(root) / "rsicd" / "captions.json"
    folder = Path(image_dir).expanduser() if image_dir else None
    if folder is not None and not folder.is_dir():
        raise DataError(f"RSICD image folder not found: {folder}")
    return _load_filename_style("rsicd", path, folder)


def load_rsitmd(root: str | Path | None = None, image_dir: str | Path | None = None) -> CaptionDataset:
    path = default_data_root(root) / "rsitmd" / "captions.json"
    folder = Path(image_dir).expanduser() if image_dir else None
    if folder is not None and not folder.is_dir():
        raise DataError(f"RSITMD image folder not found: {folder}")
    return _load_filename_style("rsitmd", path, folder)


def load_karpathy(path: str | Path, image_dir: str | Path | None = None,
                  name: str = "sydney") -> CaptionDataset:
    """Karpathy-style JSON (``images[].sentences[].raw``, ``filename``, ``split``)."""
    path = Path(path)
    recs = _records(_read_json(path), path, ("filename", "sentences"))
    folder = Path(image_dir) if image_dir else path.parent
    items = []
    for i, rec in enumerate(recs):
        sents = rec["sentences"]
        if not isinstance(sents, list) or not all(isinstance(s, dict) and "raw" in s for s in sents):
            raise DataError(f"{path}: record {i} 'sentences' must be a list of objects with 'raw'.")
        image = folder / rec["filename"]
        items.append(CaptionItem(
            image=image if image.exists() else None,
            captions=tuple(s["raw"].strip() for s in sents),
            label=rec.get("class"),
            splits=(("official", rec.get("split", "")),),
        ))
    return CaptionDataset(name, path, tuple(items))


def load_sydney(root: str | Path | None = None) -> CaptionDataset:
    base = default_data_root(root) / "sydney"
    return load_karpathy(base / "captions_karpathy_format.json", base / "sample_images", "sydney")


def load_pairs_jsonl(path: str | Path, name: str | None = None) -> CaptionDataset:
    """A user's own archive: one JSON object per line,
    ``{"image": "path (relative to the file)", "captions": ["..."], "label": "optional",
    "split": "train|val|test (optional)"}``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Pairs file not found: {path}")
    items = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg}).") from err
            if not isinstance(rec, dict) or "image" not in rec:
                raise DataError(f"{path}:{lineno}: expected an object with 'image' and 'captions'.")
            caps = rec.get("captions")
            if isinstance(caps, str):
                caps = [caps]
            if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
                raise DataError(f"{path}:{lineno}: 'captions' must be a non-empty list of strings.")
            image = Path(rec["image"]).expanduser()
            if not image.is_absolute():
                image = path.parent / image
            items.append(CaptionItem(
                image=image, captions=tuple(c.strip() for c in caps), label=rec.get("label"),
                splits=(("official", rec.get("split", "train")),),
            ))
    if not items:
        raise DataError(f"{path}: no image-caption pairs.")
    classes = tuple(sorted({it.label for it in items if it.label}))
    return CaptionDataset(name or path.stem, path, tuple(items), classes)


def load_dataset(name: str, root: str | Path | None = None,
                 image_dir: str | Path | None = None) -> CaptionDataset:
    """``ucm``, ``rsicd``, ``rsitmd``, ``sydney``, or the path of a ``.jsonl`` / Karpathy JSON."""
    if name == "ucm":
        return load_ucm(root)
    if name == "rsicd":
        return load_rsicd(root, image_dir)
    if name == "rsitmd":
        return load_rsitmd(root, image_dir)
    if name == "sydney":
        return load_sydney(root)
    if name.endswith(".jsonl"):
        return load_pairs_jsonl(name)
    if name.endswith(".json"):
        return load_karpathy(name, image_dir, Path(name).stem)
    raise DataError(
        f"Unknown dataset '{name}': use ucm, rsicd, rsitmd, sydney, or a pairs .jsonl file."
    )
