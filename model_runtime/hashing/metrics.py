"""Retrieval metrics: NumPy arrays in, numbers out.

Rankings are by Hamming distance (codes) or by descending cosine similarity (floats), ties broken
stably by database index (``argsort(kind="stable")``). Most functions take ``rel_sorted``: a bool
matrix ``[n_query, n_db]`` whose row ``q`` is the relevance of the database items in ranked order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

LOG = logging.getLogger(__name__)


def to_signs(x: np.ndarray) -> np.ndarray:
    """Float outputs or ±1 codes -> ``int32`` ±1 (``> 0`` -> +1)."""
    return np.where(np.asarray(x) > 0, 1, -1).astype(np.int32)


def hamming_distance(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Hamming distances ``int32 [n_q, n_db]`` between sign codes of ``q`` and ``db`` (``[n, bits]``)."""
    qs, ds = to_signs(q), to_signs(db)
    if qs.shape[1] != ds.shape[1]:
        raise ValueError(f"code lengths differ: {qs.shape[1]} vs {ds.shape[1]}")
    return ((qs.shape[1] - qs @ ds.T) // 2).astype(np.int32)


def cosine_scores(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Cosine similarities ``[n_q, n_db]`` of float vectors."""
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    dn = db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-12)
    return (qn @ dn.T).astype(np.float64)


def rank(dist: np.ndarray) -> np.ndarray:
    """Ranking ``[n_q, n_db]`` ascending by distance; equal distances keep database index order."""
    return np.argsort(dist, axis=1, kind="stable")


def rerank_distances(code_dist: np.ndarray, float_dist: np.ndarray, k: int) -> np.ndarray:
    """Distances that rank like "Hamming top-``k``, re-ranked by ``float_dist``".

    The first ``k`` items of the stable Hamming ranking are ordered by ``float_dist`` (lower =
    better, e.g. negative cosine of the stored float outputs); the rest keep their Hamming order
    behind them. This is what an index that stores float vectors does with a Hamming shortlist.
    """
    code_dist = np.asarray(code_dist)
    order = rank(code_dist)
    pos = np.empty_like(order)
    np.put_along_axis(pos, order, np.arange(code_dist.shape[1])[None, :], axis=1)
    fd = np.asarray(float_dist, dtype=np.float64)
    span = float(fd.max() - fd.min()) + 1.0 if fd.size else 1.0
    # shortlisted items keep their float distance (shifted to start at 0); the rest come after,
    # in Hamming order
    return np.where(pos < k, fd - fd.min(), span + pos.astype(np.float64))


def relevance(q_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """``bool [n_q, n_db]``: same class (1-D labels) or sharing a label (2-D multi-hot)."""
    q_labels, db_labels = np.asarray(q_labels), np.asarray(db_labels)
    if q_labels.ndim == 1:
        return q_labels[:, None] == db_labels[None, :]
    return (q_labels.astype(np.float64) @ db_labels.astype(np.float64).T) > 0


def ranked_relevance(dist: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Relevance of database items in ranked order, from distances (lower = better)."""
    order = rank(dist)
    return np.take_along_axis(np.asarray(rel, dtype=bool), order, axis=1)


def map_at_k_duch(rel_sorted: np.ndarray, k: int = 20) -> float:
    """mAP@k as DUCH's code defines it.

    ``AP_q = (1/t) sum_{j<=t} j / pos_j`` with ``t = min(k, R_q)``, ``R_q`` the number of relevant
    items in the database and ``pos_j`` the 1-based position of the j-th relevant item in the *full*
    ranking. Queries with ``R_q = 0`` add 0 but still count in the mean, as in DUCH's code.
    """
    rel_sorted = np.asarray(rel_sorted, dtype=bool)
    total = 0.0
    for row in rel_sorted:
        pos = np.flatnonzero(row) + 1
        t = min(k, len(pos))
        if t == 0:
            continue
        total += float(np.mean(np.arange(1, t + 1) / pos[:t]))
    return total / max(len(rel_sorted), 1)


def map_at_k_topk(rel_sorted: np.ndarray, k: int = 20) -> float:
    """mAP@k over the top-k list: ``AP_q = sum_{j<=k} P@j rel_j / (#relevant in the top k)``.

    Queries with no relevant item in the top k score 0.
    """
    top = np.asarray(rel_sorted, dtype=bool)[:, :k].astype(np.float64)
    hits = top.cumsum(axis=1)
    prec = hits / np.arange(1, top.shape[1] + 1)
    n_rel = top.sum(axis=1)
    ap = np.where(n_rel > 0, (prec * top).sum(axis=1) / np.maximum(n_rel, 1), 0.0)
    return float(ap.mean()) if len(ap) else 0.0


def map_all(rel_sorted: np.ndarray) -> float:
    """mAP over the full ranking: ``AP_q = (1/R_q) sum_j P@pos_j``; queries with ``R_q = 0`` add 0."""
    rel = np.asarray(rel_sorted, dtype=bool).astype(np.float64)
    hits = rel.cumsum(axis=1)
    prec = hits / np.arange(1, rel.shape[1] + 1)
    n_rel = rel.sum(axis=1)
    ap = np.where(n_rel > 0, (prec * rel).sum(axis=1) / np.maximum(n_rel, 1), 0.0)
    return float(ap.mean()) if len(ap) else 0.0


def precision_at_k(rel_sorted: np.ndarray, ks: Sequence[int] = (1, 5, 10, 20, 50, 100)) -> dict:
    """Mean precision of the top ``k`` for each ``k`` (``k`` capped at the database size)."""
    rel = np.asarray(rel_sorted, dtype=bool)
    return {int(k): float(rel[:, : min(k, rel.shape[1])].mean()) for k in ks}


def recall_at_k(rel_sorted: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Instance-level R@K in percent: share of queries with at least one relevant item in the top k."""
    rel = np.asarray(rel_sorted, dtype=bool)
    return {int(k): 100.0 * float(rel[:, :k].any(axis=1).mean()) for k in ks}


def pr_curve_hamming(dist: np.ndarray, rel: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at Hamming radius ``r = 0..bits`` (items with ``dist <= r`` retrieved).

    Both are averaged over queries; precision over queries that retrieve at least one item, recall
    over queries with at least one relevant item.
    """
    dist, rel = np.asarray(dist), np.asarray(rel, dtype=bool)
    n_rel = rel.sum(axis=1)
    precision, recall = np.zeros(bits + 1), np.zeros(bits + 1)
    for r in range(bits + 1):
        got = dist <= r
        n_got = got.sum(axis=1)
        tp = (got & rel).sum(axis=1)
        has = n_got > 0
        precision[r] = float((tp[has] / n_got[has]).mean()) if has.any() else 0.0
        pos = n_rel > 0
        recall[r] = float((tp[pos] / n_rel[pos]).mean()) if pos.any() else 0.0
    return precision, recall


def retrieval_scores(dist: np.ndarray, rel: np.ndarray, k: int = 20) -> dict[str, float]:
    """The three headline numbers for one direction: DUCH mAP@k, top-k mAP@k and mAP@ALL."""
    rs = ranked_relevance(dist, rel)
    return {
        f"map{k}_duch": map_at_k_duch(rs, k),
        f"map{k}_topk": map_at_k_topk(rs, k),
        "map_all": map_all(rs),
    }
