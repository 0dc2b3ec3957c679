"""Retrieval metrics on hand-made rankings and against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from model_runtime.hashing import metrics as M


def _brute_ap(rel_row: np.ndarray) -> float:
    hits, total = 0, 0.0
    for i, r in enumerate(rel_row, start=1):
        if r:
            hits += 1
            total += hits / i
    return total / hits if hits else 0.0


def test_hamming_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    q, db = rng.normal(size=(7, 32)), rng.normal(size=(11, 32))
    expected = np.array([[int(np.sum((a > 0) != (b > 0))) for b in db] for a in q])
    np.testing.assert_array_equal(M.hamming_distance(q, db), expected)


def test_ranking_breaks_ties_by_index():
    dist = np.array([[2, 1, 1, 0, 1]])
    np.testing.assert_array_equal(M.rank(dist)[0], [3, 1, 2, 4, 0])


def test_map_duch_hand_computed():
    # relevant at positions 1 and 3, R_q = 2 -> t = 2: (1/1 + 2/3) / 2
    rel = np.array([[1, 0, 1, 0, 0]], dtype=bool)
    assert M.map_at_k_duch(rel, k=20) == pytest.approx((1 + 2 / 3) / 2)
    # k = 1 -> only the first relevant item counts
    assert M.map_at_k_duch(rel, k=1) == pytest.approx(1.0)


def test_map_definitions_differ_beyond_top_k():
    # one relevant item at position 25: DUCH counts it (1/25), the top-20 list does not
    rel = np.zeros((1, 30), dtype=bool)
    rel[0, 24] = True
    assert M.map_at_k_duch(rel, 20) == pytest.approx(1 / 25)
    assert M.map_at_k_topk(rel, 20) == 0.0
    assert M.map_all(rel) == pytest.approx(1 / 25)


def test_map_topk_hand_computed():
    rel = np.array([[0, 1, 1, 0, 1]], dtype=bool)
    # top-3: relevant at 2 and 3 -> (1/2 + 2/3) / 2
    assert M.map_at_k_topk(rel, 3) == pytest.approx((0.5 + 2 / 3) / 2)
    # DUCH: R_q = 3, t = min(3, 3) = 3 -> (1/2 + 2/3 + 3/5) / 3, positions in the full ranking
    assert M.map_at_k_duch(rel, 3) == pytest.approx((0.5 + 2 / 3 + 3 / 5) / 3)


def test_query_without_relevant_items_counts_as_zero():
    rel = np.array([[1, 0], [0, 0]], dtype=bool)
    assert M.map_at_k_duch(rel) == pytest.approx(0.5)
    assert M.map_at_k_topk(rel) == pytest.approx(0.5)
    assert M.map_all(rel) == pytest.approx(0.5)


def test_map_all_and_duch_against_brute_force():
    rng = np.random.default_rng(1)
    codes_q, codes_db = rng.normal(size=(20, 16)), rng.normal(size=(60, 16))
    lab_q, lab_db = rng.integers(0, 4, 20), rng.integers(0, 4, 60)
    dist = M.hamming_distance(codes_q, codes_db)
    rel = M.relevance(lab_q, lab_db)
    rs = M.ranked_relevance(dist, rel)
    assert M.map_all(rs) == pytest.approx(np.mean([_brute_ap(r) for r in rs]))
    # with k >= R_q for every query, DUCH's mAP@k equals mAP@ALL
    assert M.map_at_k_duch(rs, k=60) == pytest.approx(M.map_all(rs))
    # sorted order was built from a stable argsort of the distances
    for qi in range(20):
        order = sorted(range(60), key=lambda j: (dist[qi, j], j))
        np.testing.assert_array_equal(rs[qi], rel[qi, order])


def test_relevance_multi_hot():
    q = np.array([[1, 0, 1], [0, 1, 0]])
    db = np.array([[0, 0, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(M.relevance(q, db), [[1, 1, 0], [0, 0, 0]])


def test_precision_and_recall_at_k():
    rel = np.array([[0, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)
    assert M.precision_at_k(rel, (1, 2)) == {1: pytest.approx(0.5), 2: pytest.approx(0.5)}
    assert M.recall_at_k(rel, (1, 2)) == {1: pytest.approx(50.0), 2: pytest.approx(100.0)}


def test_pr_curve_hamming():
    dist = np.array([[0, 1, 2, 4], [1, 1, 3, 0]])
    rel = np.array([[1, 0, 1, 0], [0, 1, 0, 0]], dtype=bool)
    p, r = M.pr_curve_hamming(dist, rel, bits=4)
    assert p.shape == r.shape == (5,)
    # radius 0: q0 gets item 0 (relevant), q1 gets item 3 (not) -> P = 0.5, R = (1/2 + 0) / 2
    assert p[0] == pytest.approx(0.5) and r[0] == pytest.approx(0.25)
    assert np.all(np.diff(r) >= 0) and r[-1] == pytest.approx(1.0)


def test_retrieval_scores_perfect_codes():
    codes = np.array([[1, 1], [1, 1], [-1, -1], [-1, -1]], dtype=float)
    lab = np.array([0, 0, 1, 1])
    s = M.retrieval_scores(M.hamming_distance(codes, codes), M.relevance(lab, lab))
    assert s == {"map20_duch": 1.0, "map20_topk": 1.0, "map_all": 1.0}


def test_rerank_distances_reorders_only_the_hamming_shortlist():
    from model_runtime.hashing.metrics import rank, rerank_distances

    code = np.array([[0, 1, 1, 2, 3]])
    flt = np.array([[0.5, 0.1, 0.9, 0.0, 0.2]])  # lower = better
    # top-3 by Hamming (stable): items 0, 1, 2 -> reordered by float: 1, 0, 2; then 3, 4
    assert rank(rerank_distances(code, flt, 3)).tolist() == [[1, 0, 2, 3, 4]]
    assert rank(rerank_distances(code, flt, 5)).tolist() == [[3, 1, 4, 0, 2]]
    assert rank(rerank_distances(code, flt, 1)).tolist() == [[0, 1, 2, 3, 4]]
