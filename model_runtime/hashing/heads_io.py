"""Save and load :class:`HashHeads` as safetensors (fp16, inference parts only) with metadata."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from model_runtime.errors import DataError, ModelMismatchError
from model_runtime.fsutil import atomic_write
from model_runtime.paths import HEADS_DIR
from model_runtime.protocol import DEFAULT_BACKBONE

if TYPE_CHECKING:  # torch loads only where weights are read or written, not for metadata
    import torch

    from model_runtime.hashing.model import HashHeads

LOG = logging.getLogger(__name__)

FORMAT_VERSION = "1"
_INT_KEYS = ("bits", "image_dim", "text_dim", "hidden")


def shipped_heads_path(bits: int, backbone: str = DEFAULT_BACKBONE, method: str = "cach") -> Path:
    """``resources/heads/<method>-<backbone>-<bits>.safetensors``."""
    return HEADS_DIR / f"{method}-{backbone}-{int(bits)}.safetensors"


def save_heads(
    heads: HashHeads,
    path: str | os.PathLike,
    method: str,
    backbone: str,
    extra: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write the heads' weights (``dtype``, default fp16) and metadata; returns the path.

    ``extra`` is stored as JSON under the ``extra`` metadata key (seed, training split, ...).
    """
    import torch
    from safetensors.torch import save_file

    dtype = dtype or torch.float16
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in heads.state_dict().items()}
    meta = {
        "format": "cach-heads",
        "format_version": FORMAT_VERSION,
        "method": method,
        "backbone": backbone,
        **{k: str(getattr(heads, k)) for k in _INT_KEYS},
        "proj_dim": str(getattr(heads, "proj_dim", 0)),
        "extra": json.dumps(extra or {}, sort_keys=True),
    }
    if getattr(heads, "proj_dim", 0):
        from model_runtime.hashing.projection import projection_id

        meta["proj_id"] = projection_id(
            heads.image_proj.mean.cpu().numpy(), heads.image_proj.matrix.cpu().numpy()
        )
    # readable by everyone (0o644): shipped in the plugin zip
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    LOG.info("saved %s heads (%s bits, %s) to %s", method, heads.bits, backbone, path)
    return path


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
        for k in _INT_KEYS:
            meta[k] = int(meta[k])
        meta["proj_dim"] = int(meta.get("proj_dim") or 0)
        meta["extra"] = json.loads(meta.get("extra") or "{}")
    except (KeyError, ValueError) as err:
        raise DataError(f"Hash-head file {path} has incomplete metadata: {err}") from err
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


def load_heads(
    path: str | os.PathLike,
    expect_backbone: str | None = None,
    expect_bits: int | None = None,
    expect_dims: tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
) -> HashHeads:
    """Load heads in eval mode (float32). Mismatched backbone, bits or dims -> ModelMismatchError.

    ``expect_dims`` is ``(image_dim, text_dim)`` of the features the caller will feed.
    """
    from safetensors.torch import load_file

    from model_runtime.hashing.model import HashHeads

    path = Path(path)
    meta = read_metadata(path)
    check_metadata(path, meta, expect_backbone, expect_bits, expect_dims)
    heads = HashHeads(
        meta["image_dim"], meta["text_dim"], meta["bits"], meta["hidden"], proj_dim=meta["proj_dim"]
    )
    try:
        state = load_file(str(path))
        heads.load_state_dict({k: v.float() for k, v in state.items()})
    except Exception as err:
        raise DataError(f"Hash-head weights in {path} are corrupt or incomplete: {err}") from err
    heads.method = meta["method"]  # type: ignore[attr-defined]
    heads.backbone = meta["backbone"]  # type: ignore[attr-defined]
    heads.meta = meta  # type: ignore[attr-defined]
    return heads.to(device).eval()
