"""The PyTorch version of ``hashing/adapt.py`` (which the runtime uses: NumPy, no torch), kept
as the reference the NumPy version is tested against (within .01 mAP on held-out classes) and for
research runs on CUDA. Same loss, same hyper-parameters (:class:`AdaptConfig`).

Only the image head is fine-tuned, on the archive's stored projections (no encoder run), with two
terms over random batches:

- **structure**: the codes' cosine matrix follows the similarity of the stored projections within
  the batch (batch-centred cosine, sharpened by shared nearest neighbours), so images that look
  alike in the frozen features get close codes;
- **distillation** towards the shipped head's outputs for the same tiles, so the image codes stay
  where the (untouched) text head expects them and text queries keep working.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from model_runtime.errors import CancelledError
from model_runtime.hashing import losses as L
from model_runtime.hashing.adapt import AdaptConfig, batch_order, check_inputs
from model_runtime.hashing.model import HashHeads

LOG = logging.getLogger(__name__)


def structure_target(p: torch.Tensor, neighbour: float, k: int) -> torch.Tensor:
    """Batch target in [-1, 1]: centred cosine of the projections, mixed with shared-kNN overlap."""
    with torch.no_grad():
        s1 = L.centered_cosine(p)
        if neighbour <= 0:
            return s1
        nb = 2.0 * L.knn_affinity(s1, k) - 1.0
        return ((1.0 - neighbour) * s1 + neighbour * nb).clamp(-1.0, 1.0)


def _step_loss(head: HashHeads, p, ref, cfg: AdaptConfig) -> torch.Tensor:
    h = head.encode_image_proj(p)
    target = structure_target(p, cfg.neighbour, cfg.k)
    structure = (L.cosine_matrix(h) - target).pow(2).mean()
    distil = (h - ref).pow(2).mean()
    return cfg.w_structure * structure + cfg.w_distil * distil


def adapt_image_head_torch(
    heads: HashHeads,
    proj: np.ndarray,
    tanh_ref: np.ndarray,
    steps: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    config: AdaptConfig | None = None,
) -> HashHeads:
    """New heads whose image head is fine-tuned on an archive; ``heads`` is left unchanged.

    ``proj [N, P]``: the archive's stored projections (``heads.project_image`` of its tiles,
    float16 is fine); ``tanh_ref [N, bits]``: the shipped head's outputs for them
    (``heads.encode_image_proj(proj)``). The text head and the projection are copied unchanged.
    ``progress(done, total)`` is called after each step; ``cancel.is_set()`` is checked between
    steps and raises :class:`CancelledError`. ``new.train_info`` records steps, seconds and tiles.
    """
    cfg = config or AdaptConfig()
    steps = cfg.steps if steps is None else int(steps)
    p_all = np.asarray(proj, dtype=np.float32)
    r_all = np.asarray(tanh_ref, dtype=np.float32)
    check_inputs(heads, p_all, r_all)
    new = copy.deepcopy(heads).eval()  # eval: no dropout; only the image head is optimised
    for param in new.parameters():
        param.requires_grad_(False)
    params = list(new.image_head.parameters())
    for param in params:
        param.requires_grad_(True)
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is fastest and leaves the UI alone
    try:
        seconds = _fit(new, params, p_all, r_all, steps, seed, cfg, progress, cancel)
    finally:
        torch.set_num_threads(prev)
    for param in new.parameters():
        param.requires_grad_(False)
    new.train_info = {"adapted_steps": steps, "seconds": seconds, "n_tiles": len(p_all)}
    LOG.info("adapted the image head on %d tiles in %d steps (%.1f s)", len(p_all), steps, seconds)
    return new


def _fit(new, params, p_all, r_all, steps, seed, cfg, progress, cancel) -> float:
    batches = batch_order(len(p_all), min(cfg.batch_size, len(p_all)), seed)  # the NumPy one's
    p_t, r_t = torch.from_numpy(p_all), torch.from_numpy(r_all)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    start = time.perf_counter()
    for step in range(steps):
        if cancel is not None and cancel.is_set():
            raise CancelledError("Adaptation cancelled; the index keeps its previous heads.")
        idx = torch.from_numpy(next(batches))
        loss = _step_loss(new, p_t[idx], r_t[idx], cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1, steps)
    return time.perf_counter() - start
