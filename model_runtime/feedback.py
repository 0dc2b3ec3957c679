"""Learning from the analyst's marks: a small logistic model over the stored tile features.

When tiles are marked right (positive) or wrong (negative), a search no longer adds and
subtracts mean vectors: an L2-regularised logistic regression is fitted (Newton's method, NumPy
only) on the stored features of the marked tiles, with a sample of random archive tiles as weak
pseudo-negatives, on

    logit(x) = b + alpha * z(x) + w_p . proj(x) + w_t . tanh(x)

where ``proj``/``tanh`` are the tile's stored projection and tanh outputs (each L2-normalised)
and ``z`` is the typed query's own score (the cosine of the text / example query, standardised
over the pseudo-negatives): the **prior**. ``alpha`` is pulled towards a fixed value and ``w``
towards zero, so with few marks the ranking is the typed query's and the marks take over as they
accumulate. The fitted model is linear in the stored features, so it collapses to one weight
vector per block (:class:`LinearScorer`) that scores a million tiles in one pass.

For a saved search two more are fitted: ``portable`` (the projection block and the text prior,
read through the tanh outputs) and ``projection`` (the projection block alone, with an example
image/tile as prior if there was one). The projection is left unchanged by ``cach adapt`` and is
the same in the shipped heads of every bit length, so these keep working on an index whose image
head was adapted (portable) or that was built with another bit length (projection).

Confidence after marks: a Platt sigmoid fitted on held-out (approximate leave-one-out)
decisions of the marked tiles and the pseudo-negatives (at their weak weight), never decreasing
in the decision, and made non-increasing down the ranking by :func:`monotone`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from model_runtime.errors import ConfigError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitOptions:
    """The learner's settings (chosen with ``research/refine_eval.py``; docs/search.md)."""

    #: L2 weight pulling the feature weights towards zero (per unit of sample weight)
    lam: float = 0.3
    #: L2 weight pulling the prior's coefficient towards ``prior_alpha``
    prior_lam: float = 4.0
    #: the prior's coefficient when there are no marks (logit per standard deviation of z)
    prior_alpha: float = 0.25
    #: random archive tiles used as pseudo-negatives, and the total weight they carry
    background: int = 400
    background_weight: float = 4.0
    #: scale of the projection and tanh blocks (a larger scale = a weaker penalty on that block)
    proj_scale: float = 8.0
    tanh_scale: float = 8.0
    seed: int = 0
    #: weight of the nearest-mark term (:class:`NearMarks`) per mark: with m marks (right +
    #: wrong) it weighs ``near_marks / m`` standard deviations against one of the logistic
    #: decision (0: off). Used only when some marks are right.
    near_marks: float = 80.0
    #: the share of the nearest *wrong* mark's cosine subtracted from the nearest right one's
    near_neg_share: float = 0.5
    #: use the term only when it orders the marks better than the logistic model does (each
    #: mark scored without itself: the nearest-mark AUC vs the model's leave-one-out AUC)
    near_check: bool = False


@dataclass(frozen=True)
class Features:
    """Stored features of some tiles, rows L2-normalised (``proj`` None: heads without one)."""

    tanh: np.ndarray  # float32 [n, bits]
    proj: np.ndarray | None = None  # float32 [n, proj_dim]

    @classmethod
    def of(cls, tanh: np.ndarray, proj: np.ndarray | None = None) -> Features:
        return cls(unit_rows(tanh), None if proj is None else unit_rows(proj))

    def __len__(self) -> int:
        return len(self.tanh)

    def take(self, rows: np.ndarray | Sequence[int]) -> Features:
        rows = np.asarray(rows, np.int64)
        return Features(self.tanh[rows], None if self.proj is None else self.proj[rows])

    @staticmethod
    def concat(parts: Sequence[Features]) -> Features:
        tanh = np.concatenate([p.tanh for p in parts])
        has_proj = all(p.proj is not None for p in parts)
        return Features(tanh, np.concatenate([p.proj for p in parts]) if has_proj else None)


@dataclass(frozen=True)
class Prior:
    """The typed part of the query as unit vectors: ``tanh`` (text, or a combined query's tanh
    vector) and/or ``proj`` (an example image or tile)."""

    tanh: np.ndarray | None = None
    proj: np.ndarray | None = None

    def empty(self) -> bool:
        return self.tanh is None and self.proj is None

    def score(self, feats: Features) -> np.ndarray:
        """The prior's raw score of each row (a sum of cosines)."""
        z = np.zeros(len(feats), np.float64)
        if self.tanh is not None:
            z += feats.tanh @ self.tanh
        if self.proj is not None and feats.proj is not None:
            z += feats.proj @ self.proj
        return z


@dataclass(frozen=True)
class NearMarks:
    """The nearest-mark term of the ranking, in the stored projection (unit rows):
    ``near(x) = max_p cos(x, p) - neg_share * max_n cos(x, n)`` over the right (``pos``) and
    wrong (``neg``) marks' projections. A scene type the heads never learnt is often several
    clusters that no one weight vector separates; the marks themselves find their neighbours.
    The ranking score is ``(decision - lin_mean) / lin_std + weight * (near - near_mean) /
    near_std`` (means and deviations over the pseudo-negatives at fit time, kept as
    constants so that a saved search scores another index the same way)."""

    pos: np.ndarray  # float32 [m, proj_dim]
    neg: np.ndarray | None  # float32 [n, proj_dim] or None
    weight: float
    neg_share: float
    lin_mean: float
    lin_std: float
    near_mean: float
    near_std: float
    #: Platt calibration of the ranking score (fitted on held-out marks, like the model's)
    slope: float = 1.0
    offset: float = 0.0

    def near(self, proj: np.ndarray) -> np.ndarray:
        out = (proj @ self.pos.T).max(axis=1).astype(np.float64)
        if self.neg is not None and len(self.neg) and self.neg_share:
            out -= self.neg_share * (proj @ self.neg.T).max(axis=1)
        return out

    def rank(self, decision: np.ndarray, proj: np.ndarray) -> np.ndarray:
        """Ranking score of rows with these logistic decisions and projections."""
        return self.combine(decision, self.near(proj))

    def combine(self, decision: np.ndarray, near: np.ndarray) -> np.ndarray:
        return ((np.asarray(decision, np.float64) - self.lin_mean) / self.lin_std
                + self.weight * (np.asarray(near, np.float64) - self.near_mean) / self.near_std)

    def confidence(self, rank: np.ndarray) -> np.ndarray:
        """Calibrated probability of a ranking score (non-decreasing in it)."""
        return sigmoid(self.slope * np.asarray(rank, np.float64) + self.offset)


@dataclass(frozen=True)
class LinearScorer:
    """``decision = bias + w_tanh . unit(tanh) + w_proj . unit(proj)``;
    ``confidence = sigmoid(slope * decision + offset)`` (``slope >= 0``)."""

    bias: float
    w_tanh: np.ndarray | None  # float32 [bits] or None (the projection scorer reads none)
    w_proj: np.ndarray | None  # float32 [proj_dim] or None
    slope: float = 1.0
    offset: float = 0.0
    #: the nearest-mark term of the ranking (None: the decision alone ranks)
    near: NearMarks | None = None

    def decision(self, feats: Features) -> np.ndarray:
        out = np.full(len(feats), self.bias, np.float64)
        if self.w_tanh is not None:
            out += feats.tanh @ self.w_tanh
        if self.w_proj is not None:
            if feats.proj is None:
                raise ConfigError("this refined search scores the stored feature projection, "
                                  "which the index does not have")
            out += feats.proj @ self.w_proj
        return out

    def confidence(self, decision: np.ndarray) -> np.ndarray:
        return sigmoid(self.slope * np.asarray(decision, np.float64) + self.offset)


@dataclass(frozen=True)
class Refiner:
    """What one fit produced: the scorer for this index, and (for saving) the portable and
    projection-only ones."""

    full: LinearScorer
    portable: LinearScorer | None
    marks: tuple[int, int]  # (positive, negative)
    diagnostics: dict = field(default_factory=dict)
    projection: LinearScorer | None = None


# --- small numerics ------------------------------------------------------------------------------
def unit_rows(mat: np.ndarray) -> np.ndarray:
    mat = np.asarray(mat, np.float32)
    if mat.ndim == 1:
        mat = mat.reshape(1, -1)
    return mat / (np.linalg.norm(mat, axis=1, keepdims=True) + 1e-12)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, np.float64), -40.0, 40.0)
    return 1.0 / (1.0 + np.exp(-x))


def monotone(confidence: Sequence[float]) -> np.ndarray:
    """Confidence in rank order made non-increasing (cumulative minimum): a tile lower in
    the ranking is never shown as more likely than one above it."""
    conf = np.asarray(confidence, np.float64)
    return np.minimum.accumulate(conf) if conf.size else conf


def fit_logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, lam: np.ndarray,
                 mean: np.ndarray | None = None, iters: int = 30, tol: float = 1e-7
                 ) -> np.ndarray:
    """Weights minimising sum_i weight_i * logloss(y_i, x_i . w) + 1/2 sum_j lam_j (w_j -
    mean_j)^2, by Newton's method with step halving. ``lam`` > 0 keeps it strictly convex."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    weight = np.asarray(weight, np.float64)
    lam = np.asarray(lam, np.float64)
    mean = np.zeros(x.shape[1]) if mean is None else np.asarray(mean, np.float64)
    w = mean.copy()

    def loss(v: np.ndarray) -> float:
        s = x @ v
        return float(weight @ (np.logaddexp(0.0, s) - y * s) + 0.5 * lam @ (v - mean) ** 2)

    current = loss(w)
    for _ in range(iters):
        p = sigmoid(x @ w)
        grad = x.T @ (weight * (p - y)) + lam * (w - mean)
        hess = (x * (weight * p * (1 - p))[:, None]).T @ x + np.diag(lam)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-4:
            trial = loss(w - t * step)
            if trial <= current:
                break
            t /= 2
        w, current = w - t * step, trial
        if float(np.abs(t * step).max()) <= tol:
            break
    return w


def fit_platt(decision: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """(slope >= 0, offset) of a sigmoid on decisions, with Platt's smoothed targets."""
    y = np.asarray(y, np.float64)
    weight = np.asarray(weight, np.float64)
    n_pos, n_neg = float(weight @ y), float(weight @ (1 - y))
    target = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    x = np.column_stack([np.asarray(decision, np.float64), np.ones(len(y))])
    slope, offset = fit_logistic(x, target, weight, np.array([1e-3, 1e-6]))
    if slope < 0:  # a model that ranks backwards on held-out marks says nothing: flat rate
        rate = float(weight @ target / max(weight.sum(), 1e-12))
        return 0.0, float(math.log(rate / (1 - rate)))
    return float(slope), float(offset)


# --- the learner ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Design:
    """How a Features block maps to the regression's columns: [1, z, proj?, tanh?]."""

    use_proj: bool
    use_tanh: bool
    z_mean: float
    z_std: float
    has_prior: bool

    def matrix(self, feats: Features, prior: Prior, opts: FitOptions) -> np.ndarray:
        cols = [np.ones((len(feats), 1))]
        if self.has_prior:
            cols.append(((prior.score(feats) - self.z_mean) / self.z_std)[:, None])
        if self.use_proj:
            cols.append(feats.proj * opts.proj_scale)
        if self.use_tanh:
            cols.append(feats.tanh * opts.tanh_scale)
        return np.hstack(cols)

    def penalty(self, opts: FitOptions, width: int) -> tuple[np.ndarray, np.ndarray]:
        lam = np.full(width, opts.lam)
        mean = np.zeros(width)
        lam[0] = 1e-4
        if self.has_prior:
            lam[1], mean[1] = opts.prior_lam, opts.prior_alpha
        return lam, mean

    def scorer(self, w: np.ndarray, prior: Prior, opts: FitOptions, bits: int,
               proj_dim: int) -> LinearScorer:
        """The fitted weights as one linear scorer over unit-normalised stored features."""
        bias, at = float(w[0]), 1
        w_tanh = np.zeros(bits) if (self.use_tanh or prior.tanh is not None) else None
        w_proj = np.zeros(proj_dim) if (self.use_proj or (prior.proj is not None
                                                           and proj_dim)) else None
        if self.has_prior:
            alpha = float(w[1]) / self.z_std
            bias -= alpha * self.z_mean
            if prior.tanh is not None:
                w_tanh += alpha * prior.tanh
            if prior.proj is not None and w_proj is not None:
                w_proj += alpha * prior.proj
            at = 2
        if self.use_proj:
            w_proj += opts.proj_scale * w[at : at + proj_dim]
            at += proj_dim
        if self.use_tanh:
            w_tanh += opts.tanh_scale * w[at : at + bits]
        return LinearScorer(bias, None if w_tanh is None else w_tanh.astype(np.float32),
                            None if w_proj is None else w_proj.astype(np.float32))


def _samples(pos: Features, neg: Features, bg: Features, opts: FitOptions):
    feats = Features.concat([pos, neg, bg])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg) + len(bg))])
    bg_w = opts.background_weight / max(len(bg), 1)
    weight = np.concatenate([np.ones(len(pos) + len(neg)), np.full(len(bg), bg_w)])
    return feats, y, weight


def loo_decisions(x: np.ndarray, y: np.ndarray, weight: np.ndarray, lam: np.ndarray,
                  w: np.ndarray) -> np.ndarray:
    """Approximate leave-one-out decisions of a fitted L2 logistic model (one Newton step
    from the full fit without sample i: s_i + g_i h_i / (1 - d_i h_i), with g and d the loss's
    first and second derivatives in s_i and h_i = x_i' H^-1 x_i): held-out scores for
    calibration without refitting once per mark."""
    s = x @ w
    p = sigmoid(s)
    d = weight * p * (1 - p)
    g = weight * (p - y)
    hess = (x * d[:, None]).T @ x + np.diag(lam)
    h = np.einsum("ij,ji->i", x, np.linalg.solve(hess, x.T))
    return s + g * h / np.maximum(1 - d * h, 1e-6)


def _fit_one(design: _Design, feats: Features, y, weight, prior: Prior, opts: FitOptions,
             marked: int, bits: int, proj_dim: int) -> tuple[LinearScorer, dict]:
    x = design.matrix(feats, prior, opts)
    lam, mean = design.penalty(opts, x.shape[1])
    w = fit_logistic(x, y, weight, lam, mean)
    held = loo_decisions(x, y, weight, lam, w)
    slope, offset = fit_platt(held, y, weight)
    if slope == 0.0:  # held-out marks say nothing (one class, or too few): in-sample fit
        slope, offset = fit_platt(x @ w, y, weight)
    scorer = design.scorer(w, prior, opts, bits, proj_dim)
    diag = {"loo_auc_marks": _auc(held[:marked], y[:marked]), "_held": held}
    if design.has_prior:  # how much of the decision's spread the typed query still makes
        from_prior = float(np.std(x[:, 1] * w[1]))
        diag["prior_share"] = from_prior / (from_prior + float(np.std(x[:, 2:] @ w[2:])) + 1e-12)
    return LinearScorer(scorer.bias, scorer.w_tanh, scorer.w_proj, slope, offset), diag


def _auc(score: np.ndarray, y: np.ndarray) -> float | None:
    pos, neg = score[y > 0.5], score[y < 0.5]
    if not len(pos) or not len(neg):
        return None
    return float((pos[:, None] > neg[None, :]).mean()
                  + 0.5 * (pos[:, None] == neg[None, :]).mean())


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """The fits are many small solves (~320 x 320): a multi-threaded BLAS spends far more
    waiting for its threads than computing when the cores are busy (28 ms vs 1.8 ms per solve
    measured on the 2 shared cores), so they run on one thread where threadpoolctl is
    installed (optional: without it the BLAS default applies)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def fit_refiner(pos: Features, neg: Features, background: Features, prior: Prior,
                opts: FitOptions | None = None, portable: bool = True) -> Refiner:
    """Fit the full (and, with ``portable``, the portable) scorer on the marked tiles'
    features (``pos``/``neg``), ``background`` tiles as pseudo-negatives, and the typed query
    as the prior."""
    opts = opts or FitOptions()
    if not len(pos) and not len(neg):
        raise ConfigError("Refining needs at least one tile marked right or wrong.")
    if not len(pos) and prior.empty():
        raise ConfigError("Mark at least one tile as right, or give a text or an example: "
                          "tiles marked wrong alone say nothing about what to find.")
    feats, y, weight = _samples(pos, neg, background, opts)
    bits, proj_dim = feats.tanh.shape[1], 0 if feats.proj is None else feats.proj.shape[1]
    z_bg = prior.score(background) if len(background) else prior.score(feats)
    z_std = float(np.std(z_bg)) if len(z_bg) > 1 else 1.0
    design = _Design(use_proj=feats.proj is not None, use_tanh=True,
                     z_mean=float(np.mean(z_bg)) if len(z_bg) else 0.0,
                     z_std=max(z_std, 1e-6), has_prior=not prior.empty())
    marked = len(pos) + len(neg)
    with one_blas_thread():
        return _fit_both(design, feats, y, weight, prior, opts, marked, bits, proj_dim,
                         (len(pos), len(neg)), portable)


def _fit_both(design, feats, y, weight, prior, opts, marked, bits, proj_dim, marks,
              with_portable: bool) -> Refiner:
    full, diag = _fit_one(design, feats, y, weight, prior, opts, marked, bits, proj_dim)
    held = {"full": diag.pop("_held")}
    if opts.near_check and not near_helps(feats, marks, opts, diag.get("loo_auc_marks")):
        opts = dataclasses.replace(opts, near_marks=0.0)
    full = with_near(full, feats, marks, opts, held["full"], (y, weight))
    portable = projection = None
    if feats.proj is not None and with_portable:
        lite = _Design(True, False, design.z_mean, design.z_std, design.has_prior)
        portable, d_lite = _fit_one(lite, feats, y, weight, prior, opts, marked, bits,
                                    proj_dim)
        own = Prior(None, prior.proj)  # no tanh outputs at all: any bit length
        z = own.score(feats.take(np.arange(marked, len(y)))) if not own.empty() else None
        bare = _Design(True, False, 0.0 if z is None else float(np.mean(z)),
                       1.0 if z is None else max(float(np.std(z)), 1e-6), not own.empty())
        projection, d_bare = _fit_one(bare, feats, y, weight, own, opts, marked, bits,
                                      proj_dim)
        portable = with_near(portable, feats, marks, opts, d_lite["_held"], (y, weight))
        projection = with_near(projection, feats, marks, opts, d_bare["_held"], (y, weight))
    if full.near is not None:
        diag["near_weight"] = full.near.weight
    return Refiner(full, portable, marks, diag, projection)


def near_loo_auc(pos: np.ndarray, neg: np.ndarray, neg_share: float) -> float | None:
    """AUC of the nearest-mark score on the marks themselves, each mark left out of its own
    score (None: fewer than 2 right or no wrong marks)."""
    if len(pos) < 2 or not len(neg):
        return None
    s_pos, s_neg = near_held_out(pos, neg, neg_share)
    return _auc(np.concatenate([s_pos, s_neg]),
                np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]))


def near_held_out(pos: np.ndarray, neg: np.ndarray, neg_share: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The nearest-mark score of each right and each wrong mark with that mark left out
    (a lone right mark keeps itself; a lone wrong mark's score has no wrong-mark part)."""
    pp = pos @ pos.T
    if len(pos) > 1:
        np.fill_diagonal(pp, -np.inf)
    s_pos = pp.max(axis=1)
    s_neg = (neg @ pos.T).max(axis=1) if len(neg) else np.zeros(0)
    if len(neg) and neg_share:
        s_pos = s_pos - neg_share * (pos @ neg.T).max(axis=1)
        if len(neg) > 1:
            nn = neg @ neg.T
            np.fill_diagonal(nn, -np.inf)
            s_neg = s_neg - neg_share * nn.max(axis=1)
    return s_pos, s_neg


def near_helps(feats: Features, marks: tuple[int, int], opts: FitOptions,
               model_auc: float | None) -> bool:
    """Whether the nearest-mark term orders the held-out marks better than the model."""
    n_pos, n_neg = marks
    if feats.proj is None or model_auc is None:
        return False
    near_auc = near_loo_auc(feats.proj[:n_pos], feats.proj[n_pos : n_pos + n_neg],
                            opts.near_neg_share)
    return near_auc is not None and near_auc > model_auc


def with_near(scorer: LinearScorer, feats: Features, marks: tuple[int, int],
              opts: FitOptions, held: np.ndarray, samples: tuple[np.ndarray, np.ndarray]
              ) -> LinearScorer:
    """``scorer`` with the nearest-mark term (:class:`NearMarks`) when it applies: some
    marks right, a stored projection, ``opts.near_marks`` > 0. ``feats`` rows: the right
    marks, the wrong marks, then the pseudo-negatives (standardising both terms); ``held``:
    the model's held-out decisions of those rows and ``samples`` their (labels, weights), on
    which the ranking score is calibrated (each mark's nearest-mark part without itself)."""
    n_pos, n_neg = marks
    if not n_pos or feats.proj is None or opts.near_marks <= 0:
        return scorer
    proj = feats.proj
    bg = feats.take(np.arange(n_pos + n_neg, len(feats)))
    if len(bg) < 2:
        return scorer
    neg = proj[n_pos : n_pos + n_neg] if n_neg else None
    near = NearMarks(proj[:n_pos].copy(), None if neg is None else neg.copy(),
                     opts.near_marks / (n_pos + n_neg), opts.near_neg_share, 0.0, 1.0, 0.0, 1.0)
    lin, raw = scorer.decision(bg), near.near(bg.proj)
    near = dataclasses.replace(near, lin_mean=float(lin.mean()),
                               lin_std=max(float(lin.std()), 1e-6),
                               near_mean=float(raw.mean()), near_std=max(float(raw.std()), 1e-6))
    y, weight = samples
    s_pos, s_neg = near_held_out(near.pos, near.neg if neg is not None else proj[:0],
                                 near.neg_share)
    rank = near.combine(held, np.concatenate([s_pos, s_neg, raw]))
    slope, offset = fit_platt(rank, y, weight)
    if slope == 0.0:  # held-out marks say nothing: in-sample
        slope, offset = fit_platt(near.rank(scorer.decision(feats), proj), y, weight)
    return dataclasses.replace(scorer, near=dataclasses.replace(near, slope=slope,
                                                                offset=offset))
