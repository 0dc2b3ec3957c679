"""The heads file format: safetensors tensors plus a ``cach-heads`` metadata block.

Torch-free (the metadata is read with ``safetensors``' NumPy side), so the lean runtime reads,
checks and locates heads files without the training stack. Writers: ``hashing.heads_io.save_heads``
(torch) and :func:`model_runtime.model.numpy_heads.save_numpy_heads` (NumPy), both through
:func:`heads_metadata`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from model_runtime.errors import DataError, ModelMismatchError
from model_runtime.paths import HEADS_DIR
from model_runtime.protocol import DEFAULT_BACKBONE

FORMAT_VERSION = "1"
#: metadata values stored as decimal strings and parsed back to int
INT_KEYS = ("bits", "image_dim", "text_dim", "hidden")
#: what the image head reads when the heads carry a projection: the projection (the default,
#: so adaptation can re-hash an index from its stored projections) or the L2-normalised image
#: features themselves (the projection is then stored for re-ranking only, and adaptation first
#: folds the head onto it: ``numpy_heads.fold_onto_projection``)
IMAGE_INPUTS = ("projection", "features")


def shipped_heads_path(bits: int, backbone: str = DEFAULT_BACKBONE, method: str = "cach") -> Path:
    """``resources/heads/<method>-<backbone>-<bits>.safetensors``."""
    return HEADS_DIR / f"{method}-{backbone}-{int(bits)}.safetensors"


def projection_id(mean: np.ndarray, matrix: np.ndarray) -> str:
    """A short fingerprint of a projection (of its float16 form, as shipped and stored)."""
    digest = hashlib.sha256()
    for arr in (mean, matrix):
        digest.update(np.ascontiguousarray(np.asarray(arr, dtype=np.float16)).tobytes())
    return digest.hexdigest()[:16]


def heads_metadata(method: str, backbone: str, dims: dict[str, int], proj: tuple | None,
                   extra: dict | None, image_input: str = "projection") -> dict[str, str]:
    """The metadata block a heads file is written with. ``dims`` holds :data:`INT_KEYS`;
    ``proj`` is ``(mean, matrix)`` of the stored projection, or None for heads without one;
    ``image_input`` (one of :data:`IMAGE_INPUTS`) is written only when it is ``features``."""
    meta = {
        "format": "cach-heads",
        "format_version": FORMAT_VERSION,
        "method": method,
        "backbone": backbone,
        **{k: str(int(dims[k])) for k in INT_KEYS},
        "proj_dim": str(int(np.shape(proj[1])[1]) if proj is not None else 0),
        "extra": json.dumps(extra or {}, sort_keys=True),
    }
    if proj is not None:
        meta["proj_id"] = projection_id(*proj)
        if image_input == "features":
            meta["image_input"] = "features"
    return meta


def reads_projection(meta: dict) -> bool:
    """Whether the image head reads the stored projection (heads with one, by default)."""
    return bool(meta.get("proj_dim")) and meta.get("image_input", "projection") == "projection"


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a heads file, ints parsed; :class:`DataError` if missing or unreadable.

    ``proj_dim`` is the width of the stored image projection (0 for heads without one, which
    includes every file written before it existed); ``proj_id`` (only when ``proj_dim > 0``)
    fingerprints the projection: heads with equal ``proj_id`` read the same stored vectors.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"Hash-head weights not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
    except Exception as err:  # safetensors raises several types for corrupt headers
        raise DataError(f"Cannot read hash-head weights {path}: {err}") from err
    if meta.get("format") != "cach-heads":
        raise DataError(f"{path} is not a CACH hash-head file (no 'cach-heads' metadata)")
    try:
        for k in INT_KEYS:
            meta[k] = int(meta[k])
        meta["proj_dim"] = int(meta.get("proj_dim") or 0)
        meta["extra"] = json.loads(meta.get("extra") or "{}")
    except (KeyError, ValueError) as err:
        raise DataError(f"Hash-head file {path} has incomplete metadata: {err}") from err
    meta["image_input"] = meta.get("image_input") or "projection"
    if meta["image_input"] not in IMAGE_INPUTS:
        raise DataError(f"Hash-head file {path} has an unknown image_input "
                        f"{meta['image_input']!r} (known: {', '.join(IMAGE_INPUTS)})")
    return meta


def check_metadata(
    path: str | os.PathLike,
    meta: dict,
    expect_backbone: str | None = None,
    expect_bits: int | None = None,
    expect_dims: tuple[int, int] | None = None,
) -> None:
    """Raise ModelMismatchError naming ``path`` when its heads do not fit what the caller uses."""
    if expect_backbone is not None and meta["backbone"] != expect_backbone:
        raise ModelMismatchError(
            f"{path} was trained for backbone '{meta['backbone']}', but '{expect_backbone}' is in "
            "use: choose heads trained for this backbone or retrain with 'cach train'."
        )
    if expect_bits is not None and meta["bits"] != int(expect_bits):
        raise ModelMismatchError(
            f"{path} holds {meta['bits']}-bit heads, but {expect_bits} bits were requested."
        )
    if expect_dims is not None and (meta["image_dim"], meta["text_dim"]) != tuple(expect_dims):
        raise ModelMismatchError(
            f"{path} expects features of dims (image {meta['image_dim']}, text {meta['text_dim']}),"
            f" got (image {expect_dims[0]}, text {expect_dims[1]})."
        )
