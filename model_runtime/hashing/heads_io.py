"""Save :class:`HashHeads` as safetensors (fp16, inference parts only) with metadata.

The file format and the readers live with the inference package
(:mod:`model_runtime.model.heads_format`, :func:`model_runtime.model.torch_heads.load_heads`);
they are re-exported here for training code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_runtime.fsutil import atomic_write
from model_runtime.model.heads_format import (
    FORMAT_VERSION,
    check_metadata,
    heads_metadata,
    read_metadata,
    shipped_heads_path,
)
from model_runtime.model.heads_format import INT_KEYS as _INT_KEYS

if TYPE_CHECKING:  # torch loads only where weights are read or written, not for metadata
    import torch

    from model_runtime.model.torch_heads import HashHeads

__all__ = ["FORMAT_VERSION", "check_metadata", "load_heads", "read_metadata", "save_heads",
           "shipped_heads_path"]

LOG = logging.getLogger(__name__)


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
    proj = None
    if getattr(heads, "proj_dim", 0):
        proj = (heads.image_proj.mean.cpu().numpy(), heads.image_proj.matrix.cpu().numpy())
    dims = {k: getattr(heads, k) for k in _INT_KEYS}
    meta = heads_metadata(method, backbone, dims, proj, extra,
                          getattr(heads, "image_input", "projection"))
    # readable by everyone (0o644): shipped in the plugin zip
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    LOG.info("saved %s heads (%s bits, %s) to %s", method, heads.bits, backbone, path)
    return path


def load_heads(path: str | os.PathLike, *args: Any, **kwargs: Any) -> HashHeads:
    """:func:`model_runtime.model.torch_heads.load_heads`, same arguments (imports torch only
    when called, so importing this module stays torch-free)."""
    from model_runtime.model.torch_heads import load_heads as _load

    return _load(path, *args, **kwargs)
