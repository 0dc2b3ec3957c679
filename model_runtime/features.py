"""Frozen features of a caption dataset, extracted once and cached on disk.

The cache key covers the backbone config, the image files (path, size, mtime), the captions and
the image views, so a changed file or backbone never reuses stale features. Files are written
atomically (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model_runtime.data.datasets import CaptionDataset, load_ucm
from model_runtime.errors import DataError
from model_runtime.fsutil import atomic_write
from model_runtime.paths import cache_dir
from model_runtime.protocol import DEFAULT_BACKBONE

LOG = logging.getLogger(__name__)

#: geometric views used as image augmentations for intra-modal contrastive terms
AUG_VIEWS = ("hflip", "vflip", "rot90")


@dataclass
class DatasetFeatures:
    backbone: str
    dataset: str
    image: np.ndarray  # float32 [N, Di]
    text: np.ndarray  # float32 [N, C, Dt]; captions cycled to C per item
    n_captions: np.ndarray  # int [N]: real captions per item
    class_id: np.ndarray  # int64 [N], -1 without a label
    split_duch: np.ndarray  # str [N] ('' when the protocol does not apply)
    split_official: np.ndarray  # str [N]
    image_aug: np.ndarray | None = None  # float32 [N, V, Di]
    images_per_second: float = 0.0


def _apply_view(img, view: str):
    from PIL import Image

    if view == "id":
        return img
    ops = {
        "hflip": Image.Transpose.FLIP_LEFT_RIGHT,
        "vflip": Image.Transpose.FLIP_TOP_BOTTOM,
        "rot90": Image.Transpose.ROTATE_90,
        "rot180": Image.Transpose.ROTATE_180,
        "rot270": Image.Transpose.ROTATE_270,
    }
    return img.transpose(ops[view])


def _file_signature(dataset: CaptionDataset) -> str:
    digest = hashlib.sha1()
    for item in dataset.items:
        if item.image is None:
            raise DataError(
                f"{dataset.source}: item without an image file; pass the image folder "
                "(e.g. --image-dir RSICD_images/) to extract features."
            )
        try:
            st = item.image.stat()
        except OSError as err:
            raise DataError(f"Image not found: {item.image}") from err
        digest.update(f"{item.image}|{st.st_size}|{int(st.st_mtime)}|".encode())
        digest.update("\x1f".join(item.captions).encode())
    return digest.hexdigest()


def cache_key(dataset: CaptionDataset, backbone_cfg: object, views: tuple[str, ...]) -> str:
    cfg_json = json.dumps(asdict(backbone_cfg), sort_keys=True, default=str)  # type: ignore[arg-type]
    raw = f"{cfg_json}|{dataset.name}|{_file_signature(dataset)}|{','.join(views)}"
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez adds no ".npz" to the name
            np.savez(fh, **arrays)

    atomic_write(path, write)


def encode_dataset_images(encoder, dataset: CaptionDataset, views: tuple[str, ...] = ("id",),
                          batch_size: int = 64, progress: bool = True) -> tuple[np.ndarray, float]:
    """Image features ``[N, len(views), D]`` and images/s; decoding overlaps encoding."""
    from tqdm import tqdm

    from model_runtime.encoders import read_image

    paths = [it.image for it in dataset.items]
    jobs = [(p, v) for p in paths for v in views]

    def load(batch):
        imgs, cache = [], {}
        for path, view in batch:
            if path not in cache:
                cache[path] = read_image(path)
            imgs.append(_apply_view(cache[path], view))
        return encoder.preprocess(imgs)

    batches = [jobs[i : i + batch_size] for i in range(0, len(jobs), batch_size)]
    out = []
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc=f"{dataset.name} images", unit="img", file=sys.stderr,
               disable=None if progress else True)  # None: only on a terminal
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, batches[0]) if batches else None
        for i in range(len(batches)):
            pixels = pending.result()
            pending = pool.submit(load, batches[i + 1]) if i + 1 < len(batches) else None
            out.append(encoder.encode_pixels(pixels))
            bar.update(len(batches[i]))
    bar.close()
    rate = len(jobs) / max(time.perf_counter() - start, 1e-9)
    LOG.info("%s: %d images encoded at %.1f images/s on %s", dataset.name, len(jobs), rate,
             encoder.device)
    feats = np.concatenate(out).astype(np.float32)
    return feats.reshape(len(paths), len(views), -1), rate


def extract_features(dataset: CaptionDataset, encoder, views: tuple[str, ...] = ("id",),
                     progress: bool = True) -> DatasetFeatures:
    image, rate = encode_dataset_images(encoder, dataset, views, progress=progress)
    ncap = np.array([len(it.captions) for it in dataset.items])
    width = int(ncap.max())
    flat = [it.captions[j % len(it.captions)] for it in dataset.items for j in range(width)]
    unique = sorted(set(flat))
    vecs = encoder.encode_texts(unique)
    lookup = {c: i for i, c in enumerate(unique)}
    text = vecs[[lookup[c] for c in flat]].reshape(len(dataset), width, -1)
    return DatasetFeatures(
        backbone=encoder.backbone_id, dataset=dataset.name,
        image=image[:, 0], text=text.astype(np.float32), n_captions=ncap,
        class_id=dataset.class_ids(), split_duch=dataset.split_array("duch"),
        split_official=dataset.split_array("official"),
        image_aug=image[:, 1:] if len(views) > 1 else None, images_per_second=rate,
    )


def cached_features(dataset: CaptionDataset, backbone: str = DEFAULT_BACKBONE,
                    device: str | None = None, augment: bool = False,
                    progress: bool = True) -> DatasetFeatures:
    """Features of ``dataset`` from the cache, extracting them first when missing."""
    from model_runtime.config import get_backbone_config

    cfg = get_backbone_config(backbone)
    full = ("id", *AUG_VIEWS)
    views = full if augment else ("id",)
    folder = cache_dir() / "features"
    path = folder / f"{dataset.name}-{cfg.name}-{cache_key(dataset, cfg, views)}.npz"
    # a cache with augmented views also serves a request without them
    candidates = [path] if augment else [
        path, folder / f"{dataset.name}-{cfg.name}-{cache_key(dataset, cfg, full)}.npz"]
    for candidate in candidates:
        if not candidate.exists():
            continue
        try:
            with np.load(candidate, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as err:
            LOG.warning("ignoring unreadable feature cache %s: %s", candidate, err)
            continue
        LOG.info("features from cache %s", candidate)
        aug = arrays.pop("image_aug", None)
        ips = float(arrays.pop("images_per_second", 0.0))
        return DatasetFeatures(backbone=cfg.name, dataset=dataset.name,
                               image_aug=aug if augment else None,
                               images_per_second=ips, **arrays)
    from model_runtime.encoders import load_encoder

    feats = extract_features(dataset, load_encoder(cfg, device), views, progress)
    arrays = {
        "image": feats.image, "text": feats.text, "n_captions": feats.n_captions,
        "class_id": feats.class_id, "split_duch": feats.split_duch,
        "split_official": feats.split_official,
        "images_per_second": np.float64(feats.images_per_second),
    }
    if feats.image_aug is not None:
        arrays["image_aug"] = feats.image_aug
    _atomic_savez(path, **arrays)
    LOG.info("features cached at %s", path)
    return feats


def ucm_features(data_root: str | os.PathLike | None = None, backbone: str = DEFAULT_BACKBONE,
                 device: str | None = None, augment: bool = False,
                 progress: bool = True) -> DatasetFeatures:
    """UCM-captions features (2,100 images x 5 captions); ``augment`` adds flipped/rotated views."""
    return cached_features(load_ucm(data_root), backbone, device, augment, progress)


#: caption-only datasets whose sentences form the text bank of text-structure preservation
CAPTION_BANK = ("rsicd", "rsitmd")


def caption_bank_sentences(names=CAPTION_BANK, data_root=None) -> list[str]:
    """The distinct sentences of caption datasets (no images needed), sorted."""
    from model_runtime.data.datasets import load_dataset

    found: set[str] = set()
    for name in names:
        found.update(c for c in load_dataset(name, data_root).all_captions() if c)
    return sorted(found)


def caption_bank_features(names=CAPTION_BANK, data_root=None, backbone: str = DEFAULT_BACKBONE,
                          device: str | None = None) -> np.ndarray:
    """Text features ``float32 [M, Dt]`` of :func:`caption_bank_sentences`, cached on disk."""
    from model_runtime.config import get_backbone_config

    cfg = get_backbone_config(backbone)
    sentences = caption_bank_sentences(names, data_root)
    if not sentences:
        raise DataError(f"no captions in {', '.join(names)}")
    digest = hashlib.sha1(json.dumps(asdict(cfg), sort_keys=True, default=str).encode())
    digest.update("\x1f".join(sentences).encode())
    stem = f"bank-{'-'.join(names)}-{cfg.name}-{digest.hexdigest()[:16]}"
    path = cache_dir() / "features" / f"{stem}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return z["text"]
    from model_runtime.encoders import load_encoder

    start = time.perf_counter()
    text = load_encoder(cfg, device).encode_texts(sentences).astype(np.float32)
    rate = len(sentences) / max(time.perf_counter() - start, 1e-9)
    LOG.info("caption bank: %d sentences encoded at %.0f/s", len(sentences), rate)
    _atomic_savez(path, text=text, sentences_per_second=np.float64(rate))
    return text
