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

``confidence`` is that model's probability. ``weak_match`` is true when the mean confidence of the
best ``top_n`` hits is below the rule's threshold. Features that compare the hits with the rest of
the index (e.g. the score standardised by the query's background distribution) are deliberately
not used: they depend on how much of the archive the asked-for type covers. The parameters are
fitted by ``research/calibration.py`` on heads trained without the held-out scene types and
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
FORMAT_VERSION = 1
#: the per-hit features a rule may use (see the module docstring)
FEATURES = ("logit", "ref_margin")
#: the reference captions' cosine quantile that ``ref_margin`` subtracts
REF_QUANTILE = 0.9
_EPS = 1e-12

TextEncoder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class MatchContext:
    """What one text search knows when its hits are ranked (arrays as ``index/query.py`` uses)."""

    query_vec: np.ndarray  # float32 [bits]: the text query's tanh outputs
    hit_vecs: np.ndarray  # float32 [k, bits]: stored tanh outputs of the hits, best first
    hit_scores: np.ndarray  # float64 [k]: their scores (1 - angle/pi), best first
    background_vecs: np.ndarray  # float32 [m, bits]: a fixed random sample of the index (unused
    # by the shipped rule: see the module docstring)
    query_text: str | None = None
    text_encoder: TextEncoder | None = None  # texts -> tanh [n, bits] with the same model


@dataclass(frozen=True)
class MatchAssessment:
    """``weak_match``: even the best hits are unlikely to show what was asked for.
    ``confidence [k]``: per hit, the estimated probability that it shows what was asked for."""

    weak_match: bool
    confidence: np.ndarray


@dataclass(frozen=True)
class Rule:
    """``confidence = sigmoid(bias + weights . features)``; weak when the mean confidence of the
    best ``top_n`` hits is below ``threshold``. ``fallback`` is the rule used without a text
    encoder (a rule without reference features has none)."""

    bits: int
    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    top_n: int = 5
    references: tuple[str, ...] = ()
    heads_sha: str | None = None
    fallback: Rule | None = None
    #: the references through the heads ``heads_sha`` names, shipped with them ([n, bits])
    reference_vecs: np.ndarray | None = field(default=None, compare=False, repr=False)
    _ref_cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def needs_text(self) -> bool:
        """The rule compares hits with reference captions (``ref_margin``)."""
        return "ref_margin" in self.features

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
        if "ref_margin" in features and not references:
            raise DataError(f"{CALIBRATION_FILE.name}: the {bits}-bit rule needs references")
        fallback = obj.get("fallback")
        return cls(
            bits=int(bits),
            features=features,
            weights=weights,
            bias=float(obj["bias"]),
            threshold=float(obj["threshold"]),
            top_n=int(obj.get("top_n", 5)),
            references=tuple(references) if "ref_margin" in features else (),
            heads_sha=heads_sha,
            fallback=None if fallback is None else cls.from_json(fallback, bits, (), heads_sha),
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


def angular(cosine: np.ndarray) -> np.ndarray:
    """Cosine -> 1 - angle/pi, the score that ``index/query.py`` ranks by."""
    return 1.0 - np.arccos(np.clip(cosine, -1.0, 1.0)) / math.pi


def reference_vectors(rule: Rule, encoder: TextEncoder | None) -> np.ndarray:
    """The rule's reference captions as unit rows: the shipped vectors of its heads, else through
    ``encoder``, once per model (cached per object of a bound method and function: passing
    ``model.encode_texts`` again does not encode them again)."""
    if rule.reference_vecs is not None:
        return unit_rows(rule.reference_vecs)
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
    cols = []
    for name in names:
        if name == "logit":
            cols.append(np.log(scores / (1.0 - scores)))
        elif name == "ref_margin":
            if refs is None:
                raise ConfigError("the 'ref_margin' feature needs the reference vectors")
            cols.append(reference_margin(ctx.query_vec, ctx.hit_vecs, refs))
        else:
            raise ConfigError(f"unknown confidence feature {name!r}")
    return np.stack(cols, axis=1) if cols else np.zeros((len(scores), 0))


def reference_margin(query_vec: np.ndarray, hit_vecs: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Per hit: cosine to the query minus the ``REF_QUANTILE`` quantile of its reference cosines."""
    hits = unit_rows(hit_vecs)
    to_query = hits @ unit_rows(query_vec)[0]
    to_refs = np.quantile(hits @ refs.T, REF_QUANTILE, axis=1)
    return (to_query - to_refs).astype(np.float64)


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
    conf = sigmoid(rule.bias + feats @ np.asarray(rule.weights, dtype=np.float64))
    return MatchAssessment(weak_from(conf, rule), conf)
