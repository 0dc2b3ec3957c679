"""What users run on cached features: train heads on a subset, score the DUCH protocol.

``cach train`` uses :func:`train_on`; ``cach eval`` uses :func:`eval_duch`. The scoring half of
the DUCH protocol, :func:`score_duch`, takes precomputed tanh outputs, so any backend that turns
pixels and tokens into tanh outputs (torch, ONNX, OpenVINO) can be scored the same way: get the
items with :func:`duch_items`, encode them, pass the outputs. Research protocols (instance-level,
unseen classes) live in ``research/hashing/protocols.py``, outside the plugin.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from model_runtime.hashing import metrics as M

if TYPE_CHECKING:  # scoring needs no torch (the lean runtime's `cach eval`); training does
    from model_runtime.hashing.model import HashHeads
    from model_runtime.hashing.train import TrainConfig

LOG = logging.getLogger(__name__)

DIRECTIONS = ("i2t", "t2i", "i2i", "t2t")
K = 20
#: shortlist length of the product path (Hamming top-K re-ranked by the stored float vectors)
RERANK_K = 100


def caption_index(feats) -> np.ndarray:
    """The one caption paired with each item in the DUCH protocol: caption ``id mod n_captions``.

    Deterministic and spread over the five caption slots (documented in docs/results.md).
    """
    n = len(feats.image)
    ncap = getattr(feats, "n_captions", None)
    ncap = np.full(n, feats.text.shape[1]) if ncap is None else np.asarray(ncap)
    return np.arange(n) % np.maximum(ncap, 1)


def train_on(
    method: str,
    feats,
    mask: np.ndarray,
    bits: int,
    seed: int,
    config: TrainConfig | None = None,
    text_bank: np.ndarray | None = None,
) -> HashHeads:
    """Train heads on the items selected by ``mask`` only (their pairs, captions and views).

    ``text_bank [M, Dt]``: caption features without images, used when the config's
    ``w_text_preserve`` is above 0.
    """
    from model_runtime.hashing.train import train_heads

    aug = feats.image_aug[mask] if getattr(feats, "image_aug", None) is not None else None
    text = feats.text[mask]
    ncap = getattr(feats, "n_captions", None)
    if ncap is not None and int(np.min(ncap[mask])) < text.shape[1]:
        LOG.debug("some items have fewer captions; cycled captions are used as extra views")
    return train_heads(
        method, feats.image[mask], text, bits, seed, aug, config, text_bank=text_bank
    )


def duch_items(split_duch: np.ndarray, caption_idx: np.ndarray) -> dict[str, np.ndarray]:
    """Dataset indices of the query and database items and the caption slot paired with each.

    ``{"query": idx, "db": idx, "query_caption": slot, "db_caption": slot}``; a backend that
    encodes pixels and tokens encodes exactly these images and captions.
    """
    out = {}
    for part in ("query", "db"):
        idx = np.flatnonzero(np.asarray(split_duch) == part)
        out[part] = idx
        out[f"{part}_caption"] = np.asarray(caption_idx)[idx]
    return out


def duch_codes(heads: HashHeads, feats) -> dict[str, np.ndarray]:
    """tanh outputs of query/database images and their paired captions (split_duch)."""
    items = duch_items(feats.split_duch, caption_index(feats))
    out = {}
    for part in ("query", "db"):
        idx = items[part]
        out[f"img_{part}"] = heads.encode_image_np(feats.image[idx])
        out[f"txt_{part}"] = heads.encode_text_np(feats.text[idx, items[f"{part}_caption"]])
        out[f"lab_{part}"] = feats.class_id[idx]
    return out


def _pairs(enc: dict[str, np.ndarray]):
    for d in DIRECTIONS:
        q = enc["img_query"] if d[0] == "i" else enc["txt_query"]
        db = enc["img_db"] if d[2] == "i" else enc["txt_db"]
        yield d, q, db


def score_duch(
    enc: dict[str, np.ndarray], k: int = K, pk: Sequence[int] = (10, 50, 100)
) -> list[dict]:
    """DUCH protocol rows from precomputed outputs, one per direction (Hamming ranking of signs).

    ``enc`` holds ``img_query, txt_query, img_db, txt_db`` (tanh outputs or ±1 codes ``[n, bits]``)
    and ``lab_query, lab_db`` (class ids). Rows: mAP@k (DUCH and top-k definitions), mAP@ALL, P@K.
    """
    rel = M.relevance(enc["lab_query"], enc["lab_db"])
    rows = []
    for d, q, db in _pairs(enc):
        dist = M.hamming_distance(q, db)
        rs = M.ranked_relevance(dist, rel)
        row = {"direction": d, **M.retrieval_scores(dist, rel, k)}
        row.update({f"p@{kk}": v for kk, v in M.precision_at_k(rs, pk).items()})
        rows.append(row)
    return rows


def eval_duch(heads: HashHeads, feats, k: int = K, pk: Sequence[int] = (10, 50, 100)) -> list[dict]:
    """DUCH protocol rows of ``heads`` on cached features (see :func:`score_duch`)."""
    return score_duch(duch_codes(heads, feats), k, pk)
