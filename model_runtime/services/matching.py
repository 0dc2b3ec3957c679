"""The weak-match signal on a search's hits: the calibrated rule of ``confidence.py`` applied
to one text query over one index (its own background of stored tile outputs)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

import numpy as np

from model_runtime.confidence import MatchContext, assess, load_rule
from model_runtime.errors import CachError
from model_runtime.feedback import monotone
from model_runtime.protocol import Hit

LOG = logging.getLogger(__name__)

_RULES: dict[tuple[int, str], Any] = {}
_BACKGROUNDS: dict[tuple[str, int], np.ndarray] = {}
_LOCK = threading.Lock()


def _rule(bits: int, heads_sha: str) -> Any:
    """The fitted rule for these heads; None (and one warning) when none is available: search
    still answers, without a weak-match signal."""
    with _LOCK:
        if (bits, heads_sha) not in _RULES:
            try:
                _RULES[(bits, heads_sha)] = load_rule(bits, heads_sha)
            except CachError as err:
                LOG.warning("no weak-match calibration for these heads: %s", err)
                _RULES[(bits, heads_sha)] = None
        return _RULES[(bits, heads_sha)]


def _background(index: Any) -> np.ndarray:
    """A fixed sample of the index's stored outputs, read once per index generation."""
    key = (str(index.path), index.generation)
    with _LOCK:
        if key not in _BACKGROUNDS:
            _BACKGROUNDS.clear()  # one index at a time is what a session searches
            _BACKGROUNDS[key] = index.background()
        return _BACKGROUNDS[key]


def assess_hits(index: Any, model: Any, text: str, query: np.ndarray,
                hits: list[Hit]) -> tuple[bool | None, list[Hit]]:
    """``(weak_match, hits with confidence)`` for a text query's hits (best first); ``(None,
    hits)`` when the heads have no calibration."""
    rule = _rule(model.bits if model else index.bits, model.heads.sha if model else "")
    if rule is None:
        return None, hits
    vectors = index.store.vectors([h.tile_id for h in hits])
    hit_vecs = np.stack([vectors[h.tile_id][1] if vectors[h.tile_id][1] is not None
                         else index.tile_vector(h.tile_id) for h in hits])
    ctx = MatchContext(
        query_vec=np.asarray(query, np.float32), hit_vecs=hit_vecs.astype(np.float32),
        hit_scores=np.asarray([h.score for h in hits], np.float64),
        background_vecs=_background(index), query_text=text,
        text_encoder=None if model is None else model.encode_texts)
    result = assess(ctx, rule)
    # the rule scores each hit on its own; down the ranking a hit is never shown as more likely
    # than the one above it (the list, the layers and --json all read this)
    rated = [dataclasses.replace(h, confidence=round(float(c), 3))
             for h, c in zip(hits, monotone(result.confidence), strict=True)]
    return bool(result.weak_match), rated
