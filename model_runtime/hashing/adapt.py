"""Adapt the image head to an analyst's archive, without labels and without torch: arrays in,
new heads out.

Only the image head is fine-tuned, on the archive's stored projections (no encoder run), with two
terms over random batches:

- **structure**: the codes' cosine matrix follows the similarity of the stored projections within
  the batch (batch-centred cosine, sharpened by shared nearest neighbours), so images that look
  alike in the frozen features get close codes;
- **distillation** towards the shipped head's outputs for the same tiles, so the image codes stay
  where the (untouched) text head expects them and text queries keep working.

The head is a small MLP, so its forward and backward passes and Adam are written out in NumPy
(``model/numpy_heads.py``): the lean runtime adapts without PyTorch. ``hashing/adapt_torch.py``
keeps the PyTorch version it replaced; a test holds the two within .01 mAP on held-out classes.
600 steps take a few seconds on one CPU core whatever the archive's size (cost is per step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from model_runtime.errors import CancelledError, DataError
from model_runtime.model.numpy_heads import (
    NumpyHeads,
    fold_onto_projection,
    from_torch,
    mlp_backward,
    mlp_forward,
)

LOG = logging.getLogger(__name__)

HEAD = "image_head"


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
    """Hyper-parameters of :func:`adapt_image_head`, chosen on tuning held-out sets 0 and 1 (64
    bits): against 200 steps, distillation 1.0 and neighbour share 0.3, these raised pure-code
    I→I from +4.5 to +13 points of the frozen features' mAP with text→image unchanged or up
    (docs/unseen.md)."""

    steps: int = 600
    batch_size: int = 256
    lr: float = 1e-3
    w_structure: float = 1.0
    w_distil: float = 0.3
    #: weight of the shared-neighbour term in the structure target (0: plain centred cosine)
    neighbour: float = 0.6
    k: int = 10


def check_inputs(heads: NumpyHeads, proj: np.ndarray, tanh_ref: np.ndarray) -> None:
    """Stored projections and reference outputs an adaptation can use (any heads object with
    ``proj_dim``, ``image_dim`` and ``bits``: the torch reference checks with this too)."""
    width = heads.proj_dim or heads.image_dim
    if proj.ndim != 2 or proj.shape[1] != width:
        raise DataError(f"stored projections must be [N, {width}], got shape {proj.shape}")
    if tanh_ref.shape != (len(proj), heads.bits):
        raise DataError(
            f"reference outputs must be [{len(proj)}, {heads.bits}], got shape {tanh_ref.shape}"
        )
    if len(proj) < 8:
        raise DataError(f"adaptation needs at least 8 tiles, got {len(proj)}")
    if not (np.isfinite(proj).all() and np.isfinite(tanh_ref).all()):
        raise DataError("stored projections or reference outputs hold NaN or infinite values")


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    n = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return n @ n.T


def knn_affinity(s: np.ndarray, k: int) -> np.ndarray:
    """``A[i, j] = |kNN(i) ∩ kNN(j)| / k`` under similarity ``s`` (each row counts itself)."""
    k = max(1, min(k, s.shape[0]))
    idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
    member = np.zeros_like(s)
    np.put_along_axis(member, idx, 1.0, axis=1)
    return member @ member.T / k


def structure_target(p: np.ndarray, neighbour: float, k: int) -> np.ndarray:
    """Batch target in [-1, 1]: centred cosine of the projections, mixed with shared-kNN overlap."""
    s1 = cosine_matrix(p - p.mean(axis=0, keepdims=True))
    if neighbour <= 0:
        return s1
    nb = 2.0 * knn_affinity(s1, k) - 1.0
    return np.clip((1.0 - neighbour) * s1 + neighbour * nb, -1.0, 1.0)


def loss_and_grads(w: dict[str, np.ndarray], p: np.ndarray, ref: np.ndarray, cfg: AdaptConfig
                   ) -> tuple[float, dict[str, np.ndarray]]:
    """The adaptation loss on one batch and its gradients for the image head's parameters."""
    h, cache = mlp_forward(w, HEAD, p, keep=True)
    norm = np.maximum(np.linalg.norm(h, axis=-1, keepdims=True), 1e-12)
    hn = h / norm
    diff = hn @ hn.T - structure_target(p, cfg.neighbour, cfg.k)
    dist = h - ref
    loss = cfg.w_structure * float((diff**2).mean()) + cfg.w_distil * float((dist**2).mean())
    d_cos = cfg.w_structure * 2.0 * diff / diff.size
    d_hn = (d_cos + d_cos.T) @ hn
    dh = (d_hn - hn * (d_hn * hn).sum(axis=-1, keepdims=True)) / norm
    dh += cfg.w_distil * 2.0 * dist / dist.size
    return loss, mlp_backward(w, HEAD, cache, dh.astype(np.float32))


class Adam:
    """torch.optim.Adam's update (no weight decay, bias-corrected), on a dict of arrays."""

    def __init__(self, params: dict[str, np.ndarray], lr: float, betas=(0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1.0 - b1) * g
            self.v[k] = b2 * self.v[k] + (1.0 - b2) * g * g
            denom = np.sqrt(self.v[k]) / np.sqrt(c2) + self.eps
            self.params[k] -= ((self.lr / c1) * self.m[k] / denom).astype(np.float32)


def batch_order(n: int, batch: int, seed: int):
    """Endless random batches of ``batch`` indices out of ``n`` (both versions draw these)."""
    rng = np.random.default_rng(seed)
    while True:
        yield rng.permutation(n)[:batch]


def _one_blas_thread():
    """BLAS on one thread while adapting: these small matrices gain nothing from more, and on a
    busy machine a threaded BLAS made 600 steps 7x slower (measured 23.9 s against 2.9 s for 200
    steps); it also leaves QGIS its cores, as the torch version did with set_num_threads(1)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - pinned in requirements/runtime.txt
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def adapt_image_head(
    heads: NumpyHeads | Any,
    proj: np.ndarray,
    tanh_ref: np.ndarray,
    steps: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    config: AdaptConfig | None = None,
) -> NumpyHeads:
    """New heads whose image head is fine-tuned on an archive; ``heads`` is left unchanged.

    ``heads``: :class:`NumpyHeads` (a torch ``HashHeads`` is converted; an image head that
    reads the features is folded onto the projection first). ``proj [N, P]``: the
    archive's stored projections (float16 is fine); ``tanh_ref [N, bits]``: the shipped head's
    outputs for them. The text head and the projection are copied unchanged. ``progress(done,
    total)`` is called after each step; ``cancel.is_set()`` is checked between steps and raises
    :class:`CancelledError`. ``new.train_info`` records steps, seconds and tiles.
    """
    cfg = config or AdaptConfig()
    steps = cfg.steps if steps is None else int(steps)
    new = fold_onto_projection(heads if isinstance(heads, NumpyHeads) else from_torch(heads))
    new = new.copy()
    p_all = np.asarray(proj, dtype=np.float32)
    r_all = np.asarray(tanh_ref, dtype=np.float32)
    check_inputs(new, p_all, r_all)
    params = {k: v for k, v in new.weights.items() if k.startswith(HEAD + ".")}
    opt = Adam(params, cfg.lr)
    batches = batch_order(len(p_all), min(cfg.batch_size, len(p_all)), seed)
    start = time.perf_counter()
    with _one_blas_thread():
        for step in range(steps):
            if cancel is not None and cancel.is_set():
                raise CancelledError("Adaptation cancelled; the index keeps its previous heads.")
            idx = next(batches)
            _loss, grads = loss_and_grads(new.weights, p_all[idx], r_all[idx], cfg)
            opt.step(grads)
            if progress is not None:
                progress(step + 1, steps)
    seconds = time.perf_counter() - start
    new.train_info = {"adapted_steps": steps, "seconds": seconds, "n_tiles": len(p_all)}
    LOG.info("adapted the image head on %d tiles in %d steps (%.1f s)", len(p_all), steps, seconds)
    return new
