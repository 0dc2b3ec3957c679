"""A caption dataset through a :class:`HashModel`: pixels and tokens in, tanh outputs out, for the
items of the DUCH protocol (``cach eval --backend ...``).

Unlike the research path (frozen features cached once, heads applied on top), every output here
comes out of the backend's own graph, so the table measures what that backend will index and
search with. Outputs are cached per dataset files, backbone config, heads SHA-256, backend,
precision and engine version: a cache entry is never shared across backends or precisions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from model_runtime.fsutil import atomic_path
from model_runtime.model.base import HashModel
from model_runtime.model.pixels import load_pixels
from model_runtime.paths import cache_dir

LOG = logging.getLogger(__name__)

#: images decoded and encoded per step
BATCH = 64
_ENGINES = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}


def encode_paths(model: HashModel, paths: list[Path]) -> np.ndarray:
    """tanh outputs of image files through ``model`` (decoded in batches of :data:`BATCH`)."""
    pre = model.config.preprocess
    out = [model.encode_images(load_pixels(paths[i : i + BATCH], pre.size, pre.interpolation)).tanh
           for i in range(0, len(paths), BATCH)]
    return np.concatenate(out) if out else np.zeros((0, model.bits), np.float32)


def outputs_key(model: HashModel, dataset: Any) -> str:
    """Hash of everything the outputs depend on (files, captions, model, backend, precision)."""
    digest = hashlib.sha256()
    cfg = json.dumps(dataclasses.asdict(model.config), sort_keys=True, default=str)
    engine = _ENGINES.get(model.backend, model.backend)
    try:
        version = metadata.version(engine)
    except metadata.PackageNotFoundError:
        version = "?"
    digest.update(f"{cfg}|{model.heads.sha}|{model.backend}|{model.precision}|{engine}=="
                  f"{version}|{dataset.name}".encode())
    for item in dataset.items:
        st = Path(item.image).stat()
        digest.update(f"{item.image}|{st.st_size}|{st.st_mtime_ns}|".encode())
        digest.update("\x1f".join(item.captions).encode())
    return digest.hexdigest()[:20]


def _encode_duch(model: HashModel, dataset: Any) -> dict[str, np.ndarray]:
    from model_runtime.hashing.protocols import caption_index, duch_items

    ncap = np.array([len(it.captions) for it in dataset.items])
    slots = caption_index(SimpleNamespace(image=np.empty((len(ncap), 0)), n_captions=ncap))
    items = duch_items(dataset.split_array("duch"), slots)
    labels = dataset.class_ids()
    enc = {}
    for part in ("query", "db"):
        idx = items[part]
        enc[f"img_{part}"] = encode_paths(model, [dataset.items[i].image for i in idx])
        texts = [dataset.items[i].captions[s] for i, s in zip(idx, items[f"{part}_caption"],
                                                               strict=True)]
        enc[f"txt_{part}"] = model.encode_texts(texts)
        enc[f"lab_{part}"] = labels[idx]
    return enc


def duch_outputs(model: HashModel, dataset: Any) -> dict[str, np.ndarray]:
    """tanh outputs of the DUCH query/database images and their paired captions through
    ``model`` (``img_query, txt_query, img_db, txt_db, lab_query, lab_db``), cached."""
    path = (cache_dir() / "outputs" / f"{dataset.name}-duch-{model.config.name}-{model.bits}b-"
            f"{model.backend}-{model.precision}-{outputs_key(model, dataset)}.npz")
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as err:
            LOG.warning("ignoring unreadable output cache %s: %s", path, err)
    enc = _encode_duch(model, dataset)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **enc)
    LOG.info("outputs cached at %s", path)
    return enc


def evaluate_backend(weights: list[Path], backbone: str, backend: str, device: str | None = None,
                     data_root: str | None = None) -> list[dict]:
    """``cach eval --backend``: DUCH rows (the research path's format) for each heads file,
    every output through ``backend``'s own model (``$CACH_PRECISION`` picks its precision)."""
    from model_runtime.data.datasets import load_ucm
    from model_runtime.hashing.protocols import score_duch
    from model_runtime.model.factory import load_model

    dataset = load_ucm(data_root)
    rows = []
    for path in weights:
        model = load_model(backbone, heads=path, device=device, backend=backend)
        LOG.info("evaluating %s through %s %s", path.name, model.backend, model.precision)
        enc = duch_outputs(model, dataset)
        model.close()
        for r in score_duch(enc):
            rows.append({"method": model.heads.method, "bits": model.bits,
                         "direction": r["direction"], "backend": model.backend,
                         "precision": model.precision,
                         **{k: round(r[k], 6) for k in ("map20_duch", "map20_topk", "map_all")}})
    return rows
