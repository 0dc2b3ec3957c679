"""Adapt an index to its own archive without labels, and re-hash it without the encoder.

The index stores, per tile, the projection of its frozen image features. The image head is
fine-tuned on those projections (``hashing/adapt.py``: keep the frozen features' similarity
structure, stay close to the shipped head's outputs so text queries stay aligned), saved inside
the index (``<index>/heads/``: the shipped heads are never touched), and every tile's code and
tanh outputs are recomputed from its stored projection in one transaction. Adapting again starts
from the shipped heads again; incremental runs afterwards encode with the adapted heads.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.codes import pack
from model_runtime.errors import ConfigError, IndexStateError
from model_runtime.index.store import Store
from model_runtime.index.writer import finalize
from model_runtime.model.heads import HeadsRef, find_heads, index_heads_dir, read_heads
from model_runtime.model.numpy_heads import (
    NumpyHeads,
    fold_onto_projection,
    load_numpy_heads,
    save_numpy_heads,
)

LOG = logging.getLogger(__name__)

Progress = Callable[[dict], None]


def stored_projections(store: Store, proj_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(tile ids, float32 projections [N, proj_dim]) of every tile, in id order."""
    ids, rows = [], []
    for batch_ids, blobs in store.iter_vectors("proj"):
        if any(b is None for b in blobs):
            raise IndexStateError(
                f"The index at {store.dir} has tiles without the stored feature projection "
                "that adaptation needs: index the folders again with 'Rebuild' first.",
                code="index_needs_rebuild")
        ids.append(batch_ids)
        rows.append(np.frombuffer(b"".join(blobs), np.float16).reshape(-1, proj_dim))
    if not ids:
        raise IndexStateError(f"The index at {store.dir} holds no tiles to adapt to.",
                              code="index_empty")
    return np.concatenate(ids), np.concatenate(rows).astype(np.float32)


def base_heads(heads: HeadsRef, index_dir: Path) -> HeadsRef:
    """The heads adaptation starts from: the shipped heads these heads were adapted from."""
    origin = (heads.meta.get("extra") or {}).get("adapted_from")
    if not origin:
        return heads
    ref = find_heads(str(origin), [index_heads_dir(index_dir)])
    if ref is None:
        raise ConfigError(f"The heads {heads.path.name} were adapted from heads this "
                          "installation does not have; index the folders again with 'Rebuild'.")
    return ref


def _save_adapted(module: NumpyHeads, base: HeadsRef, index_dir: Path, extra: dict) -> HeadsRef:
    folder = index_heads_dir(index_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if find_heads(base.sha, [folder]) is None:  # heads of the user's own: the index keeps them
        shutil.copy2(base.path, folder / base.path.name)
    stem = base.path.stem
    path = folder / f"{stem}-adapted-{time.strftime('%Y%m%d-%H%M%S')}.safetensors"
    text_from = (base.meta.get("extra") or {}).get("text_head_from") or base.sha
    save_numpy_heads(module, path,
                     extra={**extra, "adapted_from": base.sha, "text_head_from": text_from})
    return read_heads(path)


def _rehash(store: Store, module: NumpyHeads, ids: np.ndarray, proj: np.ndarray,
            heads: HeadsRef, batch: int = 8192) -> None:
    """New codes and tanh outputs for every tile from its projection, in one transaction."""
    with store.transaction() as tx:
        for start in range(0, len(ids), batch):
            tanh = module.encode_image_proj_np(proj[start : start + batch])
            store.update_codes(tx, ids[start : start + batch], pack(tanh), tanh)
        model = store.meta().get("model") or {}
        store.set_meta(tx, model={**model, "heads_sha": heads.sha, "heads": heads.path.name,
                                  "method": heads.method})
        store._bump(tx)


def adapt_index(index_dir: Path, heads: HeadsRef, steps: int | None = None,
                progress: Progress | None = None, cancel: threading.Event | None = None
                ) -> dict[str, Any]:
    """Adapt the index's image head to its tiles and re-hash it; returns a summary (NumPy only:
    the lean runtime adapts without torch)."""
    from model_runtime.hashing.adapt import adapt_image_head
    from model_runtime.index.lock import IndexLock

    started = time.perf_counter()
    base = base_heads(heads, index_dir)
    if not base.proj_dim:
        raise IndexStateError(f"The index at {index_dir} was built with heads that store no "
                              "feature projection, which adaptation needs: index the folders "
                              "again with 'Rebuild' (current model) first.",
                              code="index_needs_rebuild")
    with IndexLock(index_dir):
        store = Store(index_dir)
        try:
            ids, proj = stored_projections(store, base.proj_dim)
            module = fold_onto_projection(load_numpy_heads(base.path))
            ref = module.encode_image_proj_np(proj)
            report = _progress_adapter(progress)
            kwargs = {} if steps is None else {"steps": int(steps)}
            adapted = adapt_image_head(module, proj, ref, progress=report,
                                       cancel=cancel, **kwargs)
            new = _save_adapted(adapted, base, index_dir, {"tiles": int(len(ids))})
            _rehash(store, adapted, ids, proj, new)
            tiles = finalize(store, new.bits)
        finally:
            store.close()
    return {"tiles": tiles, "heads": new.path.name, "heads_sha": new.sha,
            "adapted_from": base.sha, "seconds": round(time.perf_counter() - started, 2)}


def _progress_adapter(progress: Progress | None) -> Callable[[int, int], None] | None:
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        progress({"stage": "adapt", "done": done, "total": total, "message": "adapting"})

    return report
