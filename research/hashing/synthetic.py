"""Seeded synthetic features shaped like the UCM feature cache, for tests and development.

Image and text features share a latent class centre (plus per-item detail), so a good hash head can
learn cross-modal and class structure from pairs alone, as on the real data.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class SyntheticFeatures:
    """Same fields as ``model_runtime.features.DatasetFeatures``."""

    image: np.ndarray
    text: np.ndarray
    class_id: np.ndarray
    split_duch: np.ndarray
    split_official: np.ndarray
    image_aug: np.ndarray
    backbone: str = "synthetic"
    class_names: tuple[str, ...] = ()


def make_features(
    n_classes: int = 21,
    per_class: int = 100,
    image_dim: int = 1280,
    text_dim: int = 384,
    n_captions: int = 5,
    n_views: int = 2,
    latent: int = 32,
    noise: float = 1.0,
    seed: int = 0,
) -> SyntheticFeatures:
    """Clustered Gaussian features: image and text are two random maps of one latent vector."""
    rng = np.random.default_rng(seed)
    n = n_classes * per_class
    class_id = np.repeat(np.arange(n_classes), per_class).astype(np.int64)
    centres = rng.normal(size=(n_classes, latent)) * 1.5
    z = centres[class_id] + noise * rng.normal(size=(n, latent))
    w_img = rng.normal(size=(latent, image_dim)) / np.sqrt(latent)
    w_txt = rng.normal(size=(latent, text_dim)) / np.sqrt(latent)
    # ReLU-like non-negative image features with an offset, like pooled CNN activations
    image = np.maximum(z @ w_img + 0.5 * rng.normal(size=(n, image_dim)) + 1.0, 0)
    views = z[:, None, :] + 0.3 * rng.normal(size=(n, n_views, latent))
    image_aug = np.maximum(views @ w_img + 0.5 * rng.normal(size=(n, n_views, image_dim)) + 1.0, 0)
    caps = z[:, None, :] + 0.4 * rng.normal(size=(n, n_captions, latent))
    text = caps @ w_txt + 0.3 * rng.normal(size=(n, n_captions, text_dim))
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    # split like split_duch: per class 50 % train, then 20 % of the rest as queries
    split_duch = np.empty(n, dtype=object)
    split_off = np.empty(n, dtype=object)
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(class_id == c))
        n_tr = len(idx) // 2
        n_q = max(1, (len(idx) - n_tr) // 5)
        split_duch[idx[:n_tr]] = "train"
        split_duch[idx[n_tr : n_tr + n_q]] = "query"
        split_duch[idx[n_tr + n_q :]] = "db"
        n_te = max(1, len(idx) // 10)
        split_off[idx] = "train"
        split_off[idx[:n_te]] = "test"
        split_off[idx[n_te : 2 * n_te]] = "val"
    return SyntheticFeatures(
        image=image.astype(np.float32),
        text=text.astype(np.float32),
        class_id=class_id,
        split_duch=split_duch.astype(str),
        split_official=split_off.astype(str),
        image_aug=image_aug.astype(np.float32),
        class_names=tuple(f"class{c}" for c in range(n_classes)),
    )
