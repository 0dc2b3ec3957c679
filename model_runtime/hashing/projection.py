"""The stored projection: PCA with partial whitening of L2-normalised frozen image features.

Fitted once on training images (all views), frozen afterwards, shipped inside the heads file. An
index stores it per tile as float16; its cosine re-ranks image queries and the image head reads
it, so an index can be re-hashed (after adaptation) without running the encoder.
"""

from __future__ import annotations

import numpy as np

from model_runtime.errors import DataError
from model_runtime.model.heads_format import projection_id

__all__ = ["fit_projection", "project", "projection_id"]


def fit_projection(
    feats: np.ndarray, dim: int, whiten: float = 0.5, eps: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [D], matrix [D, dim])`` such that ``(x̂ - mean) @ matrix`` is the projection.

    ``x̂`` are the rows of ``feats`` L2-normalised. The matrix holds the top ``dim`` principal
    axes scaled by ``(λ + eps·λ_1)^(-whiten/2)`` (``whiten`` 0: plain PCA, 1: full whitening), and
    a global factor so that training projections have a mean squared norm of ``dim`` (unit
    variance per dimension on average: float16 keeps them precisely).
    """
    x = np.asarray(feats, dtype=np.float64).reshape(-1, np.shape(feats)[-1])
    if len(x) < 2 or not 0 < dim <= x.shape[1]:
        raise DataError(f"cannot fit a {dim}-d projection on {len(x)} features of {x.shape[1]}-d")
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:dim]
    lam, axes = np.clip(evals[order], 0.0, None), evecs[:, order]
    # a deterministic sign per axis: the largest-magnitude loading is positive
    signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(dim)])
    axes = axes * np.where(signs == 0, 1.0, signs)
    scale = (lam + eps * lam[0]) ** (-whiten / 2.0)
    matrix = axes * scale
    proj = (x - mean) @ matrix
    matrix *= np.sqrt(dim / max(float(np.mean(np.sum(proj**2, axis=1))), 1e-12))
    return mean.astype(np.float32), matrix.astype(np.float32)


def project(feats: np.ndarray, mean: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """NumPy form of ``HashHeads.project_image`` (float32)."""
    x = np.asarray(feats, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return (x - mean) @ matrix
