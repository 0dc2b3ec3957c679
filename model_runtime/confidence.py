"""The weak-match signal and per-hit confidence of a text search (docs/search.md, "Weak matches").

A text search always returns its k best tiles, even when the archive holds nothing like what was
asked for. This module says how likely each hit is to show what was asked for, and whether even
the best hits are only weak matches. NumPy only: no torch, no index, no model.

Per hit, a logistic model on features of the hit and the query alone:

- ``logit``: the hit's score ``s`` (1 - angle/pi, what search ranks by) as ``log(s / (1 - s))``;
- ``ref_margin``: the hit's cosine to the query minus the 90th percentile of its cosines to a fixed
  set of reference captions of general remote-sensing scenes (``references`` in the calibration
  file): a tile that shows what was asked for is nearer to the query than to most descriptions of
  other scenes. The calibration file ships those captions' outputs for the shipped heads; other
  heads (same bit length) encode them once through the text encoder, and without one the rule's
  ``fallback`` (``logit`` only) is used.

Format 2 adds label-free evidence read from the index's background sample (``background_vecs``):

- ``coherence`` / ``group_coherence``: how much nearer the best hits are to each other than random
  tiles of the archive are (per hit / per search); available to rules, not picked by the shipped
  calibration (they fall when the asked-for type is a large share of a small archive);
- ``query_saturation``: how saturated the query's tanh outputs are (how sure the text head is
  of the concept: lower for scene types the heads never learnt), which drives the gate's
  query side: on familiar imagery a hesitant query gets no note and the concept prior;
- ``familiarity``: how much the archive looks like imagery the text side knows (median of the
  tiles' highest cosine to the reference captions), which drives the rule's :class:`Gate`: on an
  unfamiliar archive the evidence cannot tell present from absent, so the note stays silent and
  the confidences move to a prior measured on imagery the heads never saw.

``confidence`` is that model's probability (gated). ``weak_match`` is true when the mean
confidence of the best ``top_n`` hits is below the rule's threshold and the gate lets the note
speak. Features that compare the query's scores with the rest of the index (e.g. the score
standardised by the query's background distribution) are deliberately not used: they depend on
how much of the archive the asked-for type covers. The parameters are fitted by
``research/calibration.py`` (format 1: heads trained without held-out UC Merced scene types) and
``research/calibration_scenes.py`` (format 2: UC Merced and scene sets the heads never saw) and
shipped in ``resources/heads/calibration.json``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model_runtime.errors import ConfigError, DataError
from model_runtime.paths import HEADS_DIR

LOG = logging.getLogger(__name__)

CALIBRATION_FILE = HEADS_DIR / "calibration.json"
FORMAT = "cach-calibration"
#: 2 adds the coherence features; files of version 1 (rules without them) still load
FORMAT_VERSION = 2
#: the per-hit features a rule may use (see the module docstring)
FEATURES = ("logit", "ref_margin", "coherence", "group_coherence", "familiarity",
            "query_saturation")
#: features that read the reference captions' vectors
TEXT_FEATURES = ("ref_margin", "familiarity")
#: features that compare the hits with each other and with the index's background sample
COHERENCE_FEATURES = ("coherence", "group_coherence")
#: the reference captions' cosine quantile that ``ref_margin`` subtracts
REF_QUANTILE = 0.9
#: the best hits that form the "top group" of the coherence features
COHERENCE_TOP = 10
#: background rows (evenly spaced through the sample) whose pairwise cosines set the scale
BACKGROUND_ROWS = 256
#: with fewer background rows the coherence features are 0 (no evidence either way)
MIN_BACKGROUND = 8
_EPS = 1e-12

TextEncoder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class MatchContext:
    """What one text search knows when its hits are ranked (arrays as ``index/query.py`` uses)."""

    query_vec: np.ndarray  # float32 [bits]: the text query's tanh outputs
    hit_vecs: np.ndarray  # float32 [k, bits]: stored tanh outputs of the hits, best first
    hit_scores: np.ndarray  # float64 [k]: their scores (1 - angle/pi), best first
    background_vecs: np.ndarray  # float32 [m, bits]: a fixed random sample of the index (the
    # coherence features' scale and the gate's familiarity)
    query_text: str | None = None
    text_encoder: TextEncoder | None = None  # texts -> tanh [n, bits] with the same model


@dataclass(frozen=True)
class MatchAssessment:
    """``weak_match``: even the best hits are unlikely to show what was asked for.
    ``confidence [k]``: per hit, the estimated probability that it shows what was asked for."""

    weak_match: bool
    confidence: np.ndarray


@dataclass(frozen=True)
class Gate:
    """Where the archive looks unlike the imagery the rule was calibrated on (``familiarity``
    below ``min_familiarity``) the evidence cannot tell present from absent: the note stays
    silent and each confidence moves to the prior, fully at ``min_familiarity - ramp`` and
    below. The prior is the share of relevant hits measured on imagery the heads never saw, as
    a line in the familiarity (``prior`` at ``min_familiarity``, ``slope`` per unit, clipped to
    [0, 1]): the less the imagery looks like anything the text side knows, the fewer hits
    show what was asked for. ``spread`` keeps the order of the evidence around the prior: a hit's
    log-odds are the prior's plus ``spread`` times its model log-odds' distance from the mean of
    the best ``COHERENCE_TOP`` (0: every hit at the prior).

    ``min_saturation`` (optional) does the same on the query side: a query whose
    ``query_saturation`` is below it asks for a scene type the heads hardly know, so on familiar
    imagery the note stays silent and confidences move to ``concept_prior`` (fully at
    ``min_saturation - saturation_ramp`` and below)."""

    min_familiarity: float
    prior: float
    ramp: float = 0.05
    slope: float = 0.0
    spread: float = 0.0
    min_saturation: float | None = None
    concept_prior: float = 0.0
    saturation_ramp: float = 0.1

    def concept_weight(self, sat: float | None) -> float:
        """1: the heads know the asked-for type; 0: only ``concept_prior``."""
        if self.min_saturation is None or sat is None:
            return 1.0
        lo = self.min_saturation - self.saturation_ramp
        return float(np.clip((sat - lo) / self.saturation_ramp, 0.0, 1.0))

    def prior_at(self, fam: float) -> float:
        return float(np.clip(self.prior + self.slope * (fam - self.min_familiarity), 0.0, 1.0))

    def weight(self, fam: float) -> float:
        """1: trust the fitted model; 0: only the prior; linear in between."""
        return float(np.clip((fam - self.min_familiarity + self.ramp) / self.ramp, 0.0, 1.0))

    @classmethod
    def from_json(cls, obj: dict) -> Gate:
        ramp = float(obj.get("ramp", 0.05))
        prior = float(obj["prior"])
        concept = float(obj.get("concept_prior", 0.0))
        sat_ramp = float(obj.get("saturation_ramp", 0.1))
        if ramp <= 0 or sat_ramp <= 0 or not (0.0 <= prior <= 1.0 and 0.0 <= concept <= 1.0):
            raise DataError(f"{CALIBRATION_FILE.name}: bad familiarity gate {obj}")
        min_sat = obj.get("min_saturation")
        return cls(float(obj["min_familiarity"]), prior, ramp, float(obj.get("slope", 0.0)),
                   float(obj.get("spread", 0.0)), None if min_sat is None else float(min_sat),
                   concept, sat_ramp)

    def to_json(self) -> dict:
        return {"min_familiarity": round(self.min_familiarity, 6), "prior": round(self.prior, 6),
                "ramp": round(self.ramp, 6), "slope": round(self.slope, 6),
                "spread": round(self.spread, 6)} | ({} if self.min_saturation is None else {
                    "min_saturation": round(self.min_saturation, 6),
                    "concept_prior": round(self.concept_prior, 6),
                    "saturation_ramp": round(self.saturation_ramp, 6)})


@dataclass(frozen=True)
class Rule:
    """``confidence = sigmoid(bias + weights . features)``; weak when the mean confidence of the
    best ``top_n`` hits is below ``threshold``, unless ``gate`` (format 2) finds the archive
    unfamiliar. ``fallback`` is the rule used without a text encoder (a rule without reference
    features or gate has none)."""

    bits: int
    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    top_n: int = 5
    references: tuple[str, ...] = ()
    heads_sha: str | None = None
    fallback: Rule | None = None
    gate: Gate | None = None
    #: the references through the heads ``heads_sha`` names, shipped with them ([n, bits])
    reference_vecs: np.ndarray | None = field(default=None, compare=False, repr=False)
    _ref_cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def needs_text(self) -> bool:
        """The rule reads the reference captions (``TEXT_FEATURES`` or a gate)."""
        return self.gate is not None or bool(set(TEXT_FEATURES) & set(self.features))

    @property
    def needs_encoder(self) -> bool:
        """It needs a text encoder: references but no shipped vectors for them."""
        return self.needs_text and self.reference_vecs is None

    @classmethod
    def from_json(
        cls, obj: dict, bits: int, references: Sequence[str] = (), heads_sha: str | None = None
    ) -> Rule:
        features = tuple(obj["features"])
        weights = tuple(float(w) for w in obj["weights"])
        if set(features) - set(FEATURES) or len(weights) != len(features):
            raise DataError(f"{CALIBRATION_FILE.name}: bad rule for {bits} bits ({features})")
        gate = None if obj.get("gate") is None else Gate.from_json(obj["gate"])
        needs_refs = gate is not None or bool(set(TEXT_FEATURES) & set(features))
        if needs_refs and not references:
            raise DataError(f"{CALIBRATION_FILE.name}: the {bits}-bit rule needs references")
        fallback = obj.get("fallback")
        return cls(
            bits=int(bits),
            features=features,
            weights=weights,
            bias=float(obj["bias"]),
            threshold=float(obj["threshold"]),
            top_n=int(obj.get("top_n", 5)),
            references=tuple(references) if needs_refs else (),
            heads_sha=heads_sha,
            fallback=None if fallback is None else cls.from_json(fallback, bits, (), heads_sha),
            gate=gate,
        )

    def to_json(self) -> dict:
        """The rule's entry in the calibration file (references are stored once, beside it)."""
        out = {
            "features": list(self.features),
            "weights": [round(w, 6) for w in self.weights],
            "bias": round(self.bias, 6),
            "top_n": self.top_n,
            "threshold": round(self.threshold, 6),
        }
        if self.fallback is not None:
            out["fallback"] = self.fallback.to_json()
        if self.gate is not None:
            out["gate"] = self.gate.to_json()
        return out


# ----------------------------------------------------------------------------- loading


def read_calibration(path: str | os.PathLike | None = None) -> dict:
    """The calibration file as a dict; :class:`DataError` when missing or malformed."""
    path = Path(path or CALIBRATION_FILE)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"Cannot read the weak-match calibration {path}: {err}") from err
    if doc.get("format") != FORMAT or int(doc.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(f"{path} is not a weak-match calibration this version can read")
    return doc


def load_rule(
    bits: int, heads_sha: str | None = None, path: str | os.PathLike | None = None
) -> Rule:
    """The fitted rule for the heads with SHA-256 ``heads_sha`` when the file names them (with
    their reference vectors: no text encoding needed), else the rule fitted for ``bits`` (other
    heads of that bit length, e.g. adapted ones: the references are encoded on first use).

    Raises :class:`ConfigError` (``no_heads``) when neither is calibrated."""
    doc = read_calibration(path)
    entry = (doc.get("by_sha") or {}).get(heads_sha or "")
    if entry is not None and int(entry["bits"]) == int(bits):
        return _rule_for_heads(doc, entry, int(bits), str(heads_sha))
    rule = (doc.get("by_bits") or {}).get(str(int(bits)))
    if rule is None:
        known = ", ".join(sorted(doc.get("by_bits") or {}, key=int)) or "none"
        raise ConfigError(
            f"No weak-match calibration for {bits}-bit heads (calibrated: {known} bits): "
            "use shipped heads of a calibrated bit length.",
            code="no_heads",
        )
    return Rule.from_json(rule, int(bits), doc.get("references") or (), None)


def _rule_for_heads(doc: dict, entry: dict, bits: int, heads_sha: str) -> Rule:
    """A by-SHA entry: its own rule and references when it keeps them (heads shipped before the
    current ones, kept for the indexes built with them), else the bit length's."""
    refs = entry.get("references") or doc.get("references") or ()
    out = Rule.from_json(entry.get("rule") or doc["by_bits"][str(bits)], bits, refs, heads_sha)
    if out.needs_text and entry.get("reference_vectors"):
        vecs = decode_vectors(entry["reference_vectors"], len(refs), bits)
        out = dataclasses.replace(out, reference_vecs=vecs)
    return out


def encode_vectors(vecs: np.ndarray) -> str:
    """``[n, bits]`` floats -> base64 of their float16 bytes (little-endian, row-major)."""
    return base64.b64encode(np.asarray(vecs, dtype="<f2").tobytes()).decode("ascii")


def decode_vectors(text: str, n: int, bits: int) -> np.ndarray:
    """Inverse of :func:`encode_vectors`; :class:`DataError` when the size does not fit."""
    try:
        raw = np.frombuffer(base64.b64decode(text, validate=True), dtype="<f2")
    except ValueError as err:
        raise DataError(f"{CALIBRATION_FILE.name}: unreadable reference vectors ({err})") from err
    if raw.size != n * bits:
        raise DataError(f"{CALIBRATION_FILE.name}: reference vectors are not {n} x {bits}")
    return raw.astype(np.float32).reshape(n, bits)


# ----------------------------------------------------------------------------- features


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)


def reference_vectors(rule: Rule, encoder: TextEncoder | None) -> np.ndarray:
    """The rule's reference captions as unit rows: the shipped vectors of its heads, else through
    ``encoder``, once per model (cached per object of a bound method and function: passing
    ``model.encode_texts`` again does not encode them again)."""
    if rule.reference_vecs is not None:
        if "shipped" not in rule._ref_cache:  # one array object: what was derived from it is kept
            rule._ref_cache["shipped"] = unit_rows(rule.reference_vecs)
        return rule._ref_cache["shipped"]
    if encoder is None:
        raise ConfigError("this weak-match rule needs the text encoder (reference captions)")
    owner = getattr(encoder, "__self__", encoder)
    key = (id(owner), id(getattr(encoder, "__func__", encoder)))
    cached = rule._ref_cache.get(key)
    if cached is not None and cached[0] is owner:
        return cached[1]
    vecs = unit_rows(np.asarray(encoder(list(rule.references)), dtype=np.float32))
    if len(vecs) != len(rule.references):
        raise DataError("the text encoder returned the wrong number of reference vectors")
    rule._ref_cache[key] = (owner, vecs)
    return vecs


def hit_features(
    ctx: MatchContext, names: Sequence[str], refs: np.ndarray | None = None
) -> np.ndarray:
    """``[k, len(names)]`` features of the hits (see the module docstring); ``refs`` are the
    reference captions' unit tanh outputs, needed for ``ref_margin``."""
    scores = np.clip(np.asarray(ctx.hit_scores, dtype=np.float64).reshape(-1), 1e-6, 1 - 1e-6)
    cols, coh = [], None
    for name in names:
        if name == "logit":
            cols.append(np.log(scores / (1.0 - scores)))
        elif name == "ref_margin":
            if refs is None:
                raise ConfigError("the 'ref_margin' feature needs the reference vectors")
            cols.append(reference_margin(ctx.query_vec, ctx.hit_vecs, refs))
        elif name == "query_saturation":
            cols.append(np.full(len(scores), query_saturation(ctx.query_vec)))
        elif name == "familiarity":
            if refs is None:
                raise ConfigError("the 'familiarity' feature needs the reference vectors")
            cols.append(np.full(len(scores), familiarity(ctx.background_vecs, refs)))
        elif name in COHERENCE_FEATURES:
            if coh is None:
                coh = coherence(ctx.hit_vecs, ctx.background_vecs)
            cols.append(coh[COHERENCE_FEATURES.index(name)])
        else:
            raise ConfigError(f"unknown confidence feature {name!r}")
    return np.stack(cols, axis=1) if cols else np.zeros((len(scores), 0))


def reference_margin(query_vec: np.ndarray, hit_vecs: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Per hit: cosine to the query minus the ``REF_QUANTILE`` quantile of its reference cosines."""
    hits = unit_rows(hit_vecs)
    to_query = hits @ unit_rows(query_vec)[0]
    to_refs = np.quantile(hits @ refs.T, REF_QUANTILE, axis=1)
    return (to_query - to_refs).astype(np.float64)


#: per background array (and references): what was derived from it, for the searches that
#: follow on the same index (``services/matching.py`` keeps one array per index generation)
_DERIVED: dict[tuple, tuple] = {}
_DERIVED_MAX = 8


def _memo(kind: str, arr: np.ndarray, other: np.ndarray | None, compute: Callable[[], object]):
    """``compute()`` once per (kind, array object, other array object)."""
    key = (kind, id(arr), id(other))
    hit = _DERIVED.get(key)
    if hit is not None and hit[0] is arr and hit[1] is other:
        return hit[2]
    value = compute()
    if len(_DERIVED) >= _DERIVED_MAX:
        _DERIVED.pop(next(iter(_DERIVED)))
    _DERIVED[key] = (arr, other, value)
    return value


def query_saturation(query_vec: np.ndarray) -> float:
    """How saturated the text query's tanh outputs are, whatever their scale (search passes
    them scaled to unit length): ``mean(|x|)^2 / mean(x^2)``, 1 when every output has the same
    magnitude (all at +-1), lower when some hesitate near 0. Heads that learnt a scene type
    answer its text with saturated outputs, a type they never saw with hesitant ones."""
    x = np.abs(np.asarray(query_vec, dtype=np.float64).reshape(-1))
    energy = float(np.mean(x * x))
    return 0.0 if energy <= 0 else float(np.mean(x)) ** 2 / energy


def familiarity(background_vecs: np.ndarray, refs: np.ndarray) -> float:
    """How much the archive looks like imagery the text side knows: the median, over the
    background rows, of a tile's highest cosine to the reference captions (UC Merced test
    images about 0.9, RSI-CB256 0.78, EuroSAT 0.65 with the 64-bit heads); 0 without a
    background."""
    return _memo("familiarity", background_vecs, refs,
                 lambda: _familiarity(background_vecs, refs))


def _familiarity(background_vecs: np.ndarray, refs: np.ndarray) -> float:
    bg = np.asarray(background_vecs, dtype=np.float32).reshape(-1, np.shape(refs)[-1])
    if len(bg) < MIN_BACKGROUND:
        return 0.0
    rows = unit_rows(bg[np.linspace(0, len(bg) - 1, min(len(bg), BACKGROUND_ROWS)).astype(int)])
    return float(np.median((rows @ refs.T).max(axis=1)))


def background_scale(background_vecs: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """``(rows, mean, std)``: up to ``BACKGROUND_ROWS`` evenly spaced unit rows of the background
    sample and the mean and spread of their pairwise cosines (what two random tiles of this
    archive share); None with fewer than ``MIN_BACKGROUND`` rows."""
    return _memo("scale", background_vecs, None, lambda: _background_scale(background_vecs))


def _background_scale(background_vecs: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    bg = np.asarray(background_vecs, dtype=np.float32).reshape(-1, np.shape(background_vecs)[-1])
    if len(bg) < MIN_BACKGROUND:
        return None
    rows = unit_rows(bg[np.linspace(0, len(bg) - 1, min(len(bg), BACKGROUND_ROWS)).astype(int)])
    pairs = (rows @ rows.T)[np.triu_indices(len(rows), 1)].astype(np.float64)
    return rows, float(pairs.mean()), float(max(pairs.std(), 1e-3))


def coherence(hit_vecs: np.ndarray, background_vecs: np.ndarray) -> np.ndarray:
    """``[2, k]``: per hit, how much nearer it is to the other hits of the top group (the best
    ``COHERENCE_TOP``) than to random tiles of the archive (``coherence``), and how much nearer
    the top group's members are to each other than two random tiles are (``group_coherence``,
    the same for every hit); both in units of the spread of random pairs' cosines. Zeros when
    the background sample is too small to tell."""
    hits = unit_rows(hit_vecs)
    k = len(hits)
    scale = background_scale(background_vecs)
    if scale is None or k < 2:
        return np.zeros((2, k))
    rows, mean, std = scale
    n = min(k, COHERENCE_TOP)
    sims = (hits @ hits[:n].T).astype(np.float64)  # [k, n]
    own = np.zeros((k, n))
    own[np.arange(n), np.arange(n)] = 1.0
    to_group = (sims * (1 - own)).sum(axis=1) / (n - own.sum(axis=1))
    to_background = (hits @ rows.T).astype(np.float64).mean(axis=1)
    group = sims[:n][np.triu_indices(n, 1)].mean()
    return np.stack([(to_group - to_background) / std, np.full(k, (group - mean) / std)])


# ----------------------------------------------------------------------------- the rule


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


def weak_from(confidence: np.ndarray, rule: Rule) -> bool:
    """The rule's weak-match decision from the hits' confidences (best first; none: weak)."""
    top = np.asarray(confidence, dtype=np.float64)[: max(1, rule.top_n)]
    return bool(len(top) == 0 or top.mean() < rule.threshold)


def assess(ctx: MatchContext, rule: Rule) -> MatchAssessment:
    """Per-hit confidence and the weak-match flag of one text search (no hits: weak)."""
    if len(np.asarray(ctx.hit_scores).reshape(-1)) == 0:
        return MatchAssessment(True, np.zeros(0))
    if rule.needs_encoder and ctx.text_encoder is None and rule.fallback is not None:
        rule = rule.fallback
    refs = reference_vectors(rule, ctx.text_encoder) if rule.needs_text else None
    feats = hit_features(ctx, rule.features, refs)
    z = rule.bias + feats @ np.asarray(rule.weights, dtype=np.float64)
    if rule.gate is None:
        conf = sigmoid(z)
        return MatchAssessment(weak_from(conf, rule), conf)
    conf, speaks = gated(z, familiarity(ctx.background_vecs, refs), rule.gate,
                         query_saturation(ctx.query_vec))
    return MatchAssessment(speaks and weak_from(conf, rule), conf)


def gated(z: np.ndarray, fam: float, gate: Gate, sat: float | None = None
          ) -> tuple[np.ndarray, bool]:
    """``(confidence, the note may speak)`` under ``gate`` from the model's log-odds ``z`` of
    the hits (best first) on an archive of familiarity ``fam``, for a query of saturation
    ``sat``: confidences move towards the gate's priors as the archive looks less familiar or
    the query less known, and only a familiar archive and a known query may get the note."""
    z = np.asarray(z, dtype=np.float64)
    w, w_sat = gate.weight(fam), gate.concept_weight(sat)
    if len(z) == 0:
        return z, w >= 1.0 and w_sat >= 1.0
    centred = z - z[:COHERENCE_TOP].mean()

    def around(prior: float) -> np.ndarray:
        p = min(max(prior, 1e-4), 1 - 1e-4)
        return sigmoid(math.log(p / (1 - p)) + gate.spread * centred)

    inner = sigmoid(z)
    if w_sat < 1.0:
        inner = around(gate.concept_prior) + w_sat * (inner - around(gate.concept_prior))
    outer = around(gate.prior_at(fam))
    return outer + w * (inner - outer), w >= 1.0 and w_sat >= 1.0
