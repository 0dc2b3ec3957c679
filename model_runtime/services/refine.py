"""Refined searches: fit ``feedback.py``'s learner on an index's marked tiles, score every tile
with it, and keep it as a saved search (``saved_search.py``) to run on other indexes.

Pure orchestration between an open :class:`~model_runtime.index.query.Index` (its features held
compactly in RAM by ``Index.feature_blocks``) and the NumPy learner.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from model_runtime import __version__
from model_runtime.errors import DataError
from model_runtime.feedback import (
    Features,
    FitOptions,
    LinearScorer,
    Prior,
    Refiner,
    fit_refiner,
    monotone,
)
from model_runtime.protocol import Hit
from model_runtime.saved_search import SavedSearch
from model_runtime.services.queries import QueryParts, query_vector

#: the learner's name in a result's ``query.learner`` and in saved files
METHOD = "logistic-prior"


_PROJ_SHA: dict[str, str] = {}
#: the tensors of a heads file that make the stored projection (the same in every bit length's
#: shipped heads, and kept by adaptation)
PROJ_TENSORS = ("image_proj.matrix", "image_proj.mean")


def proj_sha(heads: Any) -> str:
    """Identity of the heads' feature projection: the SHA-256 of its tensors (heads without
    them: the heads' own SHA, or that of the heads they were adapted from)."""
    if heads.sha not in _PROJ_SHA:
        digest = hashlib.sha256()
        try:
            from safetensors.numpy import load_file

            tensors = load_file(str(heads.path))
            for name in PROJ_TENSORS:
                digest.update(np.ascontiguousarray(tensors[name], "<f4").tobytes())
            _PROJ_SHA[heads.sha] = digest.hexdigest()
        except (KeyError, OSError, ValueError):
            _PROJ_SHA[heads.sha] = str((heads.meta.get("extra") or {}).get("adapted_from")
                                       or heads.sha)
    return _PROJ_SHA[heads.sha]


def _rows(blocks: Any, ids: Sequence[int], index: Any) -> np.ndarray:
    ids = np.asarray([int(i) for i in ids], np.int64)
    rows = np.searchsorted(blocks.ids, ids)
    rows = np.minimum(rows, max(len(blocks.ids) - 1, 0))
    missing = [int(i) for i, r in zip(ids, rows, strict=True)
               if not len(blocks.ids) or blocks.ids[r] != i]
    if missing:
        raise DataError(f"There is no tile {missing[0]} in the index at {index.path}.",
                        code="tile_not_found")
    return rows


def features_of(blocks: Any, rows: np.ndarray) -> Features:
    return Features(blocks.tanh[rows].astype(np.float32),
                    None if blocks.proj is None else blocks.proj[rows].astype(np.float32))


def background_rows(n: int, marked: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` distinct random rows of ``n`` outside ``marked`` (all of them when fewer),
    drawn without building a permutation of all n (a million rows: 2.8 s that way)."""
    rng = np.random.default_rng(seed)
    if n - len(np.unique(marked)) <= 2 * size:
        return np.setdiff1d(np.arange(n), marked)[:size]
    rows = np.zeros(0, np.int64)
    while len(rows) < size:
        rows = np.setdiff1d(np.union1d(rows, rng.integers(0, n, 2 * size)), marked)
    return np.sort(rng.permutation(rows)[:size])


#: settings when most marks say the typed query was right (its page was mostly right): stay
#: close to it, with the marks' weighted sum (today's query) as the prior; else learn freely
#: (the nearest-mark term there only when it orders the marks better than the model: always on,
#: it cost UC Merced's seen classes .05; docs/search.md)
TRUST = FitOptions(prior_alpha=1.5, proj_scale=4.0, tanh_scale=4.0, lam=1.0, near_check=True)
LEARN = FitOptions()


def choose_options(n_pos: int, n_neg: int) -> tuple[FitOptions, bool]:
    """``(options, combined prior?)`` for these marks: TRUST when at least half are right."""
    trusting = n_pos >= max(1, n_neg)
    return (TRUST, True) if trusting else (LEARN, False)


def fit_marks(index: Any, prior: Prior, positive: Sequence[int], negative: Sequence[int],
              opts: FitOptions | None = None, portable: bool = False,
              combined: bool = False) -> Refiner:
    """The learner fitted on this index's marked tiles, with random tiles as pseudo-negatives
    (``portable``: also the projection-only scorer that a saved search keeps). Without
    ``opts`` the settings follow the marks (:func:`choose_options`); ``combined`` (or that
    choice) makes the prior's tanh direction today's weighted sum of the text and the marks."""
    if opts is None:
        opts, combined = choose_options(len(positive), len(negative))
    blocks = index.feature_blocks()
    pos_rows = _rows(blocks, positive, index)
    neg_rows = _rows(blocks, negative, index)
    bg = background_rows(len(blocks.ids), np.concatenate([pos_rows, neg_rows]),
                         opts.background, opts.seed)
    if combined and prior.tanh is not None:
        vec = query_vector(QueryParts(prior.tanh, None, None, list(blocks.tanh[pos_rows]),
                                      list(blocks.tanh[neg_rows])))
        prior = Prior(vec / (np.linalg.norm(vec) + 1e-12), prior.proj)
    if blocks.proj is None:
        prior = Prior(prior.tanh, None)
    return fit_refiner(features_of(blocks, pos_rows), features_of(blocks, neg_rows),
                       features_of(blocks, bg), prior, opts, portable)


def scored_hits(index: Any, scorer: LinearScorer, k: int, bbox, bbox_crs: str, collapse: bool,
                exclude: Sequence[int], query_code: np.ndarray | None,
                page: int | None = None) -> list[Hit]:
    """Top-k tiles of the whole index by ``scorer``, each with its calibrated confidence
    (non-increasing down the ranking); ``page`` as in ``Index.search``."""
    hits, decision = index.search_scored(
        lambda b: ranking_score(scorer, b.linear(scorer.bias, scorer.w_tanh, scorer.w_proj),
                                b.proj),
        k=k, bbox=bbox, bbox_crs=bbox_crs, collapse=collapse, exclude_ids=exclude,
        query_code=query_code, page=page)
    calibrated = scorer.confidence if scorer.near is None else scorer.near.confidence
    conf = monotone(calibrated(decision))
    return [dataclasses.replace(h, confidence=round(float(c), 3))
            for h, c in zip(hits, conf, strict=True)]


#: tiles re-ranked with the nearest-mark term: the best by the logistic decision (one product
#: of a few dozen marks with 50,000 projections: ~40 ms; with all of 1M tiles it was ~0.8 s)
NEAR_POOL = 50_000


def ranking_score(scorer: LinearScorer, decision: np.ndarray, proj: np.ndarray | None
                  ) -> np.ndarray:
    """The score that ranks tiles: the logistic decision, or with the nearest-mark term the
    ensemble (``NearMarks.rank``) on the NEAR_POOL best tiles by decision, the rest after them
    in decision order."""
    if scorer.near is None or proj is None:
        return decision
    n = len(decision)
    if n <= NEAR_POOL:
        return scorer.near.rank(decision, proj)
    pool = np.argpartition(-decision, NEAR_POOL - 1)[:NEAR_POOL]
    out = np.asarray(decision, np.float64) - float(decision.max())
    ranked = scorer.near.rank(decision[pool], proj[pool])
    out += float(ranked.min()) - 1.0
    out[pool] = ranked
    return out


def saved_of(refiner: Refiner, heads: Any, index: Any, query: dict[str, Any],
             opts: FitOptions | None = None) -> SavedSearch:
    """What ``--save`` keeps: both scorers, the query and its marks, model and provenance."""
    opts = opts or choose_options(len(query.get("positive", [])),
                                  len(query.get("negative", [])))[0]
    blocks = index.feature_blocks()
    marks = [*((t, True) for t in query.get("positive", [])),
             *((t, False) for t in query.get("negative", []))]
    rows = index.store.tiles([t for t, _ in marks], geometry=False)
    marked = [{"tile_id": int(t), "right": right, "source": rows[t].source,
               "window": list(rows[t].window)} for t, right in marks if t in rows]
    model = {"backbone": heads.backbone, "bits": int(heads.bits), "heads_sha": heads.sha,
             "heads": heads.path.name, "proj_sha": proj_sha(heads),
             "proj_dim": 0 if blocks.proj is None else int(blocks.proj.shape[1])}
    has_proj = blocks.proj is not None
    return SavedSearch(model, {**query, "marked": marked, "index": str(index.path)},
                       refiner.full, refiner.portable if has_proj else None,
                       {"cach_version": __version__, "method": METHOD,
                        "options": dataclasses.asdict(opts), "tiles": int(len(blocks.ids)),
                        "marks": list(refiner.marks), **refiner.diagnostics},
                       refiner.projection if has_proj else None)
