"""The learner behind refined searches (``feedback.py``), its saved form (``saved_search.py``)
and the pipeline's refined search on a small index (synthetic features, no encoder)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace as dataclasses_replace

import numpy as np
import pytest

from model_runtime import saved_search
from model_runtime.errors import ConfigError, DataError, ModelMismatchError
from model_runtime.feedback import (
    Features,
    LinearScorer,
    NearMarks,
    Prior,
    fit_logistic,
    fit_platt,
    fit_refiner,
    loo_decisions,
    monotone,
    sigmoid,
    unit_rows,
)


def _problem(seed: int = 0, n: int = 60, d: int = 5):
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(n), rng.normal(size=(n, d))])
    y = (x[:, 1] + 0.5 * rng.normal(size=n) > 0).astype(float)
    weight = rng.uniform(0.5, 2.0, n)
    lam = np.full(d + 1, 0.7)
    mean = rng.normal(size=d + 1) * 0.1
    return x, y, weight, lam, mean


def _loss(x, y, weight, lam, mean, w):
    s = x @ w
    return weight @ (np.logaddexp(0, s) - y * s) + 0.5 * lam @ (w - mean) ** 2


def test_newton_fit_is_the_minimum_of_the_regularised_loss():
    x, y, weight, lam, mean = _problem()
    w = fit_logistic(x, y, weight, lam, mean)
    grad = x.T @ (weight * (sigmoid(x @ w) - y)) + lam * (w - mean)
    assert np.abs(grad).max() < 1e-6
    # brute force: no nearby point is lower
    rng = np.random.default_rng(1)
    best = _loss(x, y, weight, lam, mean, w)
    for _ in range(200):
        assert _loss(x, y, weight, lam, mean, w + rng.normal(size=w.size) * 0.05) >= best


def test_approximate_leave_one_out_is_close_to_refitting():
    x, y, weight, lam, mean = _problem(seed=3, n=40)
    w = fit_logistic(x, y, weight, lam)
    approx = loo_decisions(x, y, weight, lam, w)
    exact = np.array([x[i] @ fit_logistic(np.delete(x, i, 0), np.delete(y, i),
                                          np.delete(weight, i), lam) for i in range(len(y))])
    assert np.abs(approx - exact).max() < 0.05 * np.abs(exact).max()
    assert not np.allclose(approx, x @ w)  # held-out, not the in-sample decisions


def test_confidence_never_rises_as_rank_falls():
    assert monotone([0.9, 0.95, 0.4, 0.5, 0.1]).tolist() == [0.9, 0.9, 0.4, 0.4, 0.1]
    assert monotone([]).size == 0
    # Platt's slope is never negative: a higher decision never gets a lower confidence
    rng = np.random.default_rng(0)
    dec = rng.normal(size=50)
    slope, _ = fit_platt(dec, (dec < 0).astype(float), np.ones(50))  # ranks backwards
    assert slope == 0.0
    slope, offset = fit_platt(dec, (dec > 0).astype(float), np.ones(50))
    conf = LinearScorer(0.0, None, np.zeros(3), slope, offset).confidence(np.sort(dec)[::-1])
    assert slope > 0 and np.all(np.diff(conf) <= 0)


def _clusters(seed: int = 0, n: int = 600, bits: int = 16, proj_dim: int = 24):
    """Tiles of 6 types: each type a direction in both blocks, plus noise."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 6, n)
    centres_t, centres_p = rng.normal(size=(6, bits)), rng.normal(size=(6, proj_dim))
    tanh = centres_t[kind] + 1.2 * rng.normal(size=(n, bits))
    proj = centres_p[kind] + 1.2 * rng.normal(size=(n, proj_dim))
    return kind, Features.of(tanh, proj), centres_t


def _auc(score, rel):
    pos, neg = score[rel], score[~rel]
    return (pos[:, None] > neg[None, :]).mean()


def test_learner_beats_the_prior_and_the_prior_weighs_less_as_marks_accumulate():
    kind, feats, centres_t = _clusters()
    rel = kind == 2
    # a poor prior: the wanted type's direction mixed with another type's
    prior = Prior(tanh=unit_rows(centres_t[2] + 0.8 * centres_t[4])[0])
    prior_score = prior.score(feats)
    bg = feats.take(np.arange(500, 600))
    aucs, shares = [], []
    for marks in (10, 40, 200):
        order = np.argsort(-prior_score[:500])[:marks]
        pos, neg = order[rel[order]], order[~rel[order]]
        fit = fit_refiner(feats.take(pos), feats.take(neg), bg, prior)
        aucs.append(_auc(fit.full.decision(feats), rel))
        shares.append(fit.diagnostics["prior_share"])
    assert aucs[0] > _auc(prior_score, rel)  # ten marks already help
    assert aucs[2] > aucs[1] > aucs[0]
    assert shares[2] < shares[1] < shares[0]  # more marks: the typed query weighs less


def test_portable_scorer_reads_no_tanh_block_beyond_the_prior():
    kind, feats, centres_t = _clusters(seed=2)
    prior = Prior(tanh=unit_rows(centres_t[1])[0])
    pos = np.flatnonzero(kind == 1)[:5]
    neg = np.flatnonzero(kind == 3)[:5]
    fit = fit_refiner(feats.take(pos), feats.take(neg), feats.take(np.arange(400, 500)), prior)
    w_t = fit.portable.w_tanh
    cos = w_t @ prior.tanh / (np.linalg.norm(w_t) + 1e-12)
    assert abs(abs(cos) - 1) < 1e-5  # only the prior's direction
    assert fit.full.w_tanh is not None and abs(fit.full.w_tanh @ prior.tanh) / np.linalg.norm(
        fit.full.w_tanh) < 0.9999
    assert fit.projection.w_tanh is None and fit.projection.w_proj is not None
    assert _auc(fit.projection.decision(feats), kind == 1) > 0.8


def test_marks_without_a_right_tile_or_a_prior_are_refused():
    _, feats, _ = _clusters()
    with pytest.raises(ConfigError):
        fit_refiner(feats.take([]), feats.take([1, 2]), feats.take(np.arange(10, 50)), Prior())
    with pytest.raises(ConfigError):
        fit_refiner(feats.take([]), feats.take([]), feats.take(np.arange(10, 50)), Prior())


def test_feature_blocks_score_every_tile_like_the_scorer():
    from model_runtime.index.query import FeatureBlocks

    rng = np.random.default_rng(0)
    feats = Features.of(rng.normal(size=(1000, 16)), rng.normal(size=(1000, 24)))
    blocks = FeatureBlocks(np.arange(1000), np.hstack([feats.tanh, feats.proj]), 16)
    s = LinearScorer(0.3, rng.normal(size=16).astype(np.float32),
                     rng.normal(size=24).astype(np.float32))
    assert np.allclose(blocks.linear(s.bias, s.w_tanh, s.w_proj), s.decision(feats), atol=1e-4)
    assert np.allclose(blocks.linear(0.0, None, s.w_proj), feats.proj @ s.w_proj, atol=1e-4)
    no_proj = FeatureBlocks(np.arange(1000), np.ascontiguousarray(feats.tanh), 16)
    assert no_proj.proj is None
    with pytest.raises(ConfigError):
        no_proj.linear(0.0, None, s.w_proj)


# --- saved searches -------------------------------------------------------------------------------
MODEL = {"backbone": "bb", "bits": 16, "heads_sha": "a" * 64, "proj_sha": "b" * 64,
         "proj_dim": 24, "heads": "h.safetensors"}


def _saved(tmp_path):
    rng = np.random.default_rng(0)
    near = NearMarks(unit_rows(rng.normal(size=(3, 24))), unit_rows(rng.normal(size=(2, 24))),
                     2.0, 0.5, 0.1, 1.2, 0.3, 0.2)
    full = LinearScorer(0.1, rng.normal(size=16).astype(np.float32),
                        rng.normal(size=24).astype(np.float32), 1.5, -0.2, near)
    portable = LinearScorer(0.2, rng.normal(size=16).astype(np.float32),
                            rng.normal(size=24).astype(np.float32), 0.5, 0.0)
    projection = LinearScorer(0.3, None, rng.normal(size=24).astype(np.float32), 0.7, 0.1)
    path = saved_search.save(tmp_path / "s.json", saved_search.SavedSearch(
        MODEL, {"text": "a harbour", "positive": [1]}, full, portable, {"tiles": 3},
        projection))
    return path, full, portable


def test_saved_search_round_trip_and_which_scorer_runs(tmp_path):
    path, full, portable = _saved(tmp_path)
    doc = saved_search.load(path)
    assert np.array_equal(doc.full.w_proj, full.w_proj) and doc.full.slope == 1.5
    assert doc.query["text"] == "a harbour" and doc.provenance["tiles"] == 3
    assert doc.scorer_for("bb", 16, "a" * 64, "b" * 64, 24)[0] == "full"
    # an adapted index: other heads, the same projection
    which, scorer = doc.scorer_for("bb", 16, "c" * 64, "b" * 64, 24)
    assert which == "portable" and np.array_equal(scorer.w_tanh, portable.w_tanh)
    # heads of another bit length sharing the projection: the projection-only scorer
    which, scorer = doc.scorer_for("bb", 32, "e" * 64, "b" * 64, 24)
    assert which == "projection" and scorer.w_tanh is None and scorer.slope == 0.7
    for other in (("xx", 16, "a" * 64, "b" * 64, 24), ("bb", 16, "c" * 64, "d" * 64, 24)):
        with pytest.raises(ModelMismatchError) as err:
            doc.scorer_for(*other)
        assert err.value.code == "saved_search_mismatch"
    assert "backbone 'bb'" in str(pytest.raises(ModelMismatchError, doc.scorer_for,
                                                "xx", 16, "a", "b", 24).value)


def test_saved_search_keeps_the_nearest_mark_term_and_reads_version_1(tmp_path):
    path, full, _ = _saved(tmp_path)
    doc = saved_search.load(path)
    assert json.loads(path.read_text())["version"] == 2
    near = doc.full.near
    assert np.array_equal(near.pos, full.near.pos) and np.array_equal(near.neg, full.near.neg)
    proj = unit_rows(np.random.default_rng(1).normal(size=(50, 24)))
    dec = np.linspace(-1, 1, 50)
    assert np.allclose(near.rank(dec, proj), full.near.rank(dec, proj))
    # a file written before the term existed: version 1, no 'near' -> loads, ranks by decision
    raw = json.loads(path.read_text())
    raw["version"] = 1
    for scorer in raw["scorers"].values():
        if scorer:
            scorer.pop("near", None)
    path.write_text(json.dumps(raw))
    old = saved_search.load(path)
    assert old.full.near is None and np.array_equal(old.full.w_tanh, full.w_tanh)


def test_nearest_mark_term_ranks_a_second_cluster_of_right_tiles_first():
    """Right tiles in two clusters far apart: one weight vector cannot take both above the
    wrong tiles between them; the nearest-mark term does."""
    rng = np.random.default_rng(3)
    a, b, c = (unit_rows(rng.normal(size=(1, 24)))[0] for _ in range(3))
    proj = unit_rows(np.vstack([a + 0.1 * rng.normal(size=(30, 24)),
                                b + 0.1 * rng.normal(size=(30, 24)),
                                (a + b) / 2 + c + 0.1 * rng.normal(size=(300, 24))]))
    near = NearMarks(proj[[0, 30]], proj[[100]], 10.0, 0.5, 0.0, 1.0, 0.0, 1.0)
    rank = near.rank(np.zeros(len(proj)), proj)
    top = np.argsort(-rank)[:60]
    assert (top < 60).all()
    # no weight: the decision alone ranks
    flat = dataclasses_replace(near, weight=0.0).rank(np.arange(len(proj), dtype=float), proj)
    assert np.array_equal(np.argsort(-flat), np.arange(len(proj))[::-1])


def test_refiner_adds_the_nearest_mark_term_only_with_right_marks():
    from model_runtime.feedback import FitOptions

    kind, feats, centres = _clusters()
    rel = kind == 2
    prior = Prior(tanh=unit_rows(centres[2])[0])
    pos, neg = np.flatnonzero(rel)[:4], np.flatnonzero(~rel)[:6]
    bg = np.flatnonzero(~rel)[100:300]
    fit = fit_refiner(feats.take(pos), feats.take(neg), feats.take(bg), prior, FitOptions())
    assert fit.full.near is not None and len(fit.full.near.pos) == 4
    assert fit.full.near.weight == pytest.approx(FitOptions().near_marks / 10)
    assert fit.projection.near is not None and fit.portable.near is not None
    # the ranking score is calibrated on held-out marks: right tiles are shown as likelier
    near = fit.full.near
    conf = near.confidence(near.rank(fit.full.decision(feats), feats.proj))
    assert near.slope > 0 and conf[rel].mean() > conf[~rel].mean() + 0.2
    off = fit_refiner(feats.take(pos), feats.take(neg), feats.take(bg), prior,
                      FitOptions(near_marks=0.0))
    assert off.full.near is None
    only_wrong = fit_refiner(feats.take(pos[:0]), feats.take(neg), feats.take(bg), prior)
    assert only_wrong.full.near is None


def test_nearest_mark_check_uses_the_term_only_when_it_orders_held_out_marks_better():
    from model_runtime.feedback import FitOptions, near_helps, near_loo_auc

    rng = np.random.default_rng(5)
    a, b, c = (unit_rows(rng.normal(size=(1, 24)))[0] for _ in range(3))
    # right marks in two tight clusters, wrong marks in a third: held out, each right mark's
    # nearest other right mark is its cluster's twin -> AUC 1
    pos = unit_rows(np.vstack([a + 0.05 * rng.normal(size=(3, 24)),
                               b + 0.05 * rng.normal(size=(3, 24))]))
    neg = unit_rows(c + 0.05 * rng.normal(size=(5, 24)))
    assert near_loo_auc(pos, neg, 0.5) == 1.0
    # right and wrong marks drawn alike: no better than chance
    mixed = unit_rows(rng.normal(size=(40, 24)))
    assert near_loo_auc(mixed[:20], mixed[20:], 0.5) < 0.75
    assert near_loo_auc(pos[:1], neg, 0.5) is None  # one right mark: nothing held out
    feats = Features.of(np.ones((11, 4)), np.vstack([pos, neg]))
    opts = FitOptions(near_check=True)
    assert near_helps(feats, (6, 5), opts, 0.9) and not near_helps(feats, (6, 5), opts, 1.0)
    assert not near_helps(feats, (6, 5), opts, None)


def test_ranking_score_reranks_the_best_pool_by_decision_with_the_nearest_marks(monkeypatch):
    from model_runtime.services import refine

    rng = np.random.default_rng(7)
    proj = unit_rows(rng.normal(size=(200, 24)))
    decision = rng.normal(size=200)
    near = NearMarks(proj[:3], proj[3:5], 3.0, 0.5, 0.0, 1.0, 0.0, 1.0)
    scorer = LinearScorer(0.0, None, np.zeros(24, np.float32), near=near)
    whole = refine.ranking_score(scorer, decision, proj)
    assert np.allclose(whole, near.rank(decision, proj))  # all tiles fit in the pool
    monkeypatch.setattr(refine, "NEAR_POOL", 50)
    pooled = refine.ranking_score(scorer, decision, proj)
    pool = np.argsort(-decision)[:50]
    rest = np.setdiff1d(np.arange(200), pool)
    assert np.allclose(pooled[pool], near.rank(decision[pool], proj[pool]))
    assert pooled[rest].max() < pooled[pool].min()  # the rest after the pool ...
    assert np.array_equal(np.argsort(-pooled[rest]), np.argsort(-decision[rest]))  # by decision
    plain = LinearScorer(0.0, None, np.zeros(24, np.float32))
    assert refine.ranking_score(plain, decision, proj) is decision


def _tamper(path, edit):
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _arr(values, dtype="<f4"):
    raw = np.asarray(values, dtype).tobytes()
    return {"dtype": "<f4", "shape": [len(values)], "data": base64.b64encode(raw).decode()}


@pytest.mark.parametrize("edit", [
    lambda d: d.update(version=3),
    lambda d: d.update(version=True),
    lambda d: d.update(version=1),  # version 1 held no nearest-mark term
    lambda d: d["scorers"]["full"]["near"].update(pos_rows=4),
    lambda d: d["scorers"]["full"]["near"].update(pos_rows=0),
    lambda d: d["scorers"]["full"]["near"].update(neg_rows=100000),
    lambda d: d["scorers"]["full"]["near"].update(pos=_arr([np.nan] * 72)),
    lambda d: d["scorers"]["full"]["near"].update(near_std=0.0),
    lambda d: d["scorers"]["full"]["near"].update(weight=-1.0),
    lambda d: d["scorers"]["full"]["near"].update(slope=-1.0),
    lambda d: d["scorers"]["full"].update(near=[1, 2]),
    lambda d: d.update(format="pickle"),
    lambda d: d["scorers"]["full"].update(w_tanh=_arr([np.nan] * 16)),
    lambda d: d["scorers"]["full"].update(w_tanh=_arr([1.0] * 15)),
    lambda d: d["scorers"]["full"].update(w_proj=_arr([1.0] * 16)),
    lambda d: d["scorers"]["full"]["w_tanh"].update(shape=[17]),
    lambda d: d["scorers"]["full"]["w_tanh"].update(data="!!not base64!!"),
    lambda d: d["scorers"]["full"]["w_tanh"].update(dtype="|O"),
    lambda d: d["scorers"]["full"].update(slope=-1.0),
    lambda d: d["scorers"]["full"].update(bias="1"),
    lambda d: d["model"].update(bits=True),
    lambda d: d["model"].pop("heads_sha"),
    lambda d: d["scorers"].update(full=None),
    lambda d: d["scorers"]["projection"].update(w_tanh=_arr([1.0] * 16)),
])
def test_a_damaged_saved_search_is_refused_with_its_code(tmp_path, edit):
    path, _, _ = _saved(tmp_path)
    _tamper(path, edit)
    with pytest.raises(DataError) as err:
        saved_search.load(path)
    assert err.value.code == "saved_search_invalid" and str(path) in str(err.value)


def test_not_json_or_missing_saved_search(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x80\x04\x95pickle")
    with pytest.raises(DataError) as err:
        saved_search.load(bad)
    assert err.value.code == "saved_search_invalid"
    bad.write_text('{"format": "cach-refined-search", "version": 1, "x": NaN}')
    with pytest.raises(DataError):
        saved_search.load(bad)
    with pytest.raises(DataError) as err:
        saved_search.load(tmp_path / "nothing.json")
    assert err.value.code == "file_not_found"


# --- the pipeline's refined search on a small synthetic index (no encoder) -----------------------
def _index(folder, seed: int, n_per_type: int = 60):
    """An index of 3 tile types (a direction each in tanh and projection space) with the
    shipped 64-bit heads' identity, written straight into the store."""
    from model_runtime.codes import pack
    from model_runtime.index.store import Store
    from model_runtime.index.writer import finalize
    from model_runtime.model.heads import read_heads
    from model_runtime.paths import HEADS_DIR

    heads = read_heads(HEADS_DIR / "cach-effnetlite0-minilm-64.safetensors")
    rng = np.random.default_rng(seed)
    dirs = np.random.default_rng(99)  # the same types in every index
    ct, cp = dirs.normal(size=(3, 64)), dirs.normal(size=(3, heads.proj_dim or 256))
    kind = np.repeat(np.arange(3), n_per_type)
    tanh = np.tanh(ct[kind] + 1.5 * rng.normal(size=(len(kind), 64))).astype(np.float32)
    proj = (cp[kind] + 1.5 * rng.normal(size=(len(kind), cp.shape[1]))).astype(np.float16)
    store = Store(folder, create=True)
    store.set_meta(model=heads.info().to_json(), complete=True)
    with store.transaction() as tx:
        sid = tx.execute("INSERT INTO sources(path, size, mtime, sha1, status, crs, width, "
                         "height, info, tiles, indexed_at) VALUES ('/syn.tif', 1, 1, 'x', "
                         "'done', NULL, 99999, 256, '{}', ?, 'now')", (len(kind),)).lastrowid
        tx.executemany(
            "INSERT INTO tiles(source_id, col, row, width, height, scale, valid, footprint, "
            "footprint_src, code, feats, proj) VALUES (?, ?, 0, 256, 256, 1, 1.0, NULL, '{}', "
            "?, ?, ?)",
            [(sid, i * 256, pack(tanh[i])[0].tobytes(), tanh[i].astype(np.float16).tobytes(),
              proj[i].tobytes()) for i in range(len(kind))])
        store._bump(tx)
    finalize(store, 64)
    ids = np.asarray(sorted(store.tiles(range(1, len(kind) + 1), geometry=False)))
    store.close()
    return {int(i): int(k) for i, k in zip(ids, kind, strict=True)}


def test_refined_search_learns_saves_and_runs_on_another_index(tmp_path):
    from model_runtime.pipeline import Pipeline
    from model_runtime.protocol import SearchRequest

    kinds_a = _index(tmp_path / "a", seed=0)
    kinds_b = _index(tmp_path / "b", seed=1)
    of = {k: [t for t, v in kinds_a.items() if v == k] for k in range(3)}
    rt = Pipeline()
    pos, neg = of[1][:3], of[0][:2] + of[2][:2]
    a, b, s = str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "s.json")
    res = rt.search(SearchRequest(a, positive=tuple(pos), negative=tuple(neg), k=30,
                                  collapse=False, save=s))
    assert res.query["learner"] == "logistic-prior" and res.query["saved_to"]
    got = [h.tile_id for h in res.results]
    assert not set(got) & set(pos + neg)
    assert sum(kinds_a[t] == 1 for t in got) >= 27
    conf = [h.confidence for h in res.results]
    assert all(c is not None for c in conf) and conf == sorted(conf, reverse=True)
    assert conf[0] > 0.5  # a tile the model is sure of is not shown at a few per cent
    # today's weighted sum is still there, without the learner
    plain = rt.search(SearchRequest(a, positive=tuple(pos), negative=tuple(neg), k=5,
                                    learn=False))
    assert "learner" not in plain.query
    # the saved search on another index made with the same heads: the full scorer
    again = rt.search(SearchRequest(b, saved=s, k=30, collapse=False))
    assert again.query["scorer"] == "full"
    assert sum(kinds_b[h.tile_id] == 1 for h in again.results) >= 27
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["model"]["heads_sha"] == res.model["heads_sha"]
    assert [m["tile_id"] for m in saved["query"]["marked"]] == pos + neg
    with pytest.raises(ConfigError):
        rt.search(SearchRequest(b, saved=s, text="a harbour"))
    with pytest.raises(ConfigError):
        rt.search(SearchRequest(b, text="a harbour", save=str(tmp_path / "t.json")))
    rt.close()


def test_background_rows_are_distinct_random_and_never_marked():
    from model_runtime.services.refine import background_rows

    marked = np.arange(0, 1000, 7)
    rows = background_rows(1000, marked, 200, seed=0)
    assert len(rows) == 200 and len(np.unique(rows)) == 200
    assert not np.isin(rows, marked).any() and rows.min() >= 0 and rows.max() < 1000
    assert np.array_equal(rows, background_rows(1000, marked, 200, seed=0))
    few = background_rows(10, np.array([1, 2]), 200, seed=0)
    assert few.tolist() == [0, 3, 4, 5, 6, 7, 8, 9]


def test_the_protocol_carries_learn_save_and_saved():
    from model_runtime.errors import ProtocolError
    from model_runtime.protocol import ERROR_CODES, validate_params

    validate_params("search", {"index": "/i", "saved": "/s.json", "k": 5})
    validate_params("search", {"index": "/i", "text": "a", "positive": [1], "save": "/s.json",
                               "learn": False})
    with pytest.raises(ProtocolError) as err:
        validate_params("search", {"index": "/i"})
    assert "'saved'" in str(err.value)
    with pytest.raises(ProtocolError):
        validate_params("search", {"index": "/i", "positive": [1], "learn": "yes"})
    assert ERROR_CODES["saved_search_invalid"][0] == "data"
    assert ERROR_CODES["saved_search_mismatch"][0] == "model_mismatch"
