"""A refined search kept as a small file and run again on another index ("find more of these").

The file is JSON with plain arrays (base64 of little-endian float32, with their shapes): the
fitted scorers of ``feedback.py``, the query parts and marked tiles it was made from, the model
it was made with (backbone, bits, heads SHA-256, and the SHA-256 of the heads whose feature
projection it scores) and provenance. No pickle: the file is untrusted input and everything in it
is checked on load (format, version, sizes, finite values).

Which scorer runs on an index: the ``full`` one when the index has the same heads; the
``portable`` one (projection + text prior) when the index's heads share the projection and the
bit length (an index adapted with ``cach adapt``, whose image head changed but whose stored
projection did not); the ``projection`` one when they share only the projection (the shipped
heads of another bit length); another backbone, or heads with another projection, are refused
(``saved_search_mismatch``).
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.errors import DataError, ModelMismatchError
from model_runtime.feedback import LinearScorer, NearMarks
from model_runtime.fsutil import atomic_write_text

FORMAT = "cach-refined-search"
VERSION = 2
#: versions this release reads (1: no nearest-mark term, written before it existed)
READS = (1, 2)
#: at most this many marked tiles' projections kept per scorer
MAX_NEAR_ROWS = 512
#: a saved search is a few kB; anything far larger is not one
MAX_BYTES = 4 << 20


@dataclass(frozen=True)
class SavedSearch:
    """A refined search as kept on disk."""

    model: dict[str, Any]  # backbone, bits, heads_sha, proj_sha, proj_dim
    query: dict[str, Any]  # text / image / tile, positive / negative ids, marked tiles, index
    full: LinearScorer
    portable: LinearScorer | None
    provenance: dict[str, Any]
    projection: LinearScorer | None = None

    def scorer_for(self, backbone: str, bits: int, heads_sha: str, proj_sha: str,
                   proj_dim: int) -> tuple[str, LinearScorer]:
        """``("full" | "portable" | "projection", scorer)`` for an index made with this model,
        or ``ModelMismatchError`` (code ``saved_search_mismatch``) saying why not."""
        made = self.model
        if backbone != made["backbone"]:
            raise ModelMismatchError(
                f"This saved search was made with backbone '{made['backbone']}'; the index uses "
                f"'{backbone}'. Refine the search again on this index (mark tiles, save).",
                code="saved_search_mismatch")
        if heads_sha == made["heads_sha"] and bits == made["bits"]:
            return "full", self.full
        same_proj = proj_sha == made.get("proj_sha") and proj_dim == made.get("proj_dim")
        if same_proj and self.portable is not None and bits == made["bits"]:
            return "portable", self.portable
        if same_proj and self.projection is not None:
            return "projection", self.projection
        raise ModelMismatchError(
            f"This saved search was made with heads {made['heads_sha'][:12]} (feature "
            f"projection {str(made.get('proj_sha'))[:12]}); the index uses heads "
            f"{heads_sha[:12]} with projection {proj_sha[:12]}, which it cannot score. Refine "
            "the search again on this index (mark tiles, save).",
            code="saved_search_mismatch")


# --- arrays ---------------------------------------------------------------------------------------
def _pack(vec: np.ndarray | None) -> dict | None:
    if vec is None:
        return None
    arr = np.ascontiguousarray(vec, dtype="<f4").reshape(-1)
    return {"dtype": "<f4", "shape": [int(arr.size)],
            "data": base64.b64encode(arr.tobytes()).decode("ascii")}


def _bad(path: str | os.PathLike, why: str) -> DataError:
    return DataError(f"{path} is not a usable saved search: {why}.", code="saved_search_invalid")


def _unpack(obj: Any, size: int | None, path, name: str) -> np.ndarray | None:
    if obj is None:
        return None
    if not isinstance(obj, dict) or obj.get("dtype") != "<f4" or not isinstance(
            obj.get("data"), str) or not isinstance(obj.get("shape"), list):
        raise _bad(path, f"'{name}' is not a float32 array record")
    shape = obj["shape"]
    if len(shape) != 1 or not isinstance(shape[0], int) or isinstance(shape[0], bool):
        raise _bad(path, f"'{name}' must be one-dimensional")
    try:
        raw = base64.b64decode(obj["data"].encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise _bad(path, f"'{name}' is not valid base64") from None
    if len(raw) != 4 * shape[0] or (size is not None and shape[0] != size):
        raise _bad(path, f"'{name}' has {len(raw) // 4} values where {size or shape[0]} are due")
    arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise _bad(path, f"'{name}' holds values that are not finite numbers")
    return arr


def _number(obj: dict, key: str, path, low: float = -math.inf) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value) or value < low:
        raise _bad(path, f"'{key}' must be a finite number" + ("" if low == -math.inf
                                                             else f" >= {low}"))
    return float(value)


def _scorer_json(s: LinearScorer | None) -> dict | None:
    if s is None:
        return None
    return {"bias": s.bias, "slope": s.slope, "offset": s.offset,
            "w_tanh": _pack(s.w_tanh), "w_proj": _pack(s.w_proj), "near": _near_json(s.near)}


def _near_json(near: NearMarks | None) -> dict | None:
    if near is None:
        return None
    return {"pos": _pack(near.pos), "pos_rows": int(len(near.pos)),
            "neg": _pack(near.neg), "neg_rows": 0 if near.neg is None else int(len(near.neg)),
            "weight": near.weight, "neg_share": near.neg_share, "lin_mean": near.lin_mean,
            "lin_std": near.lin_std, "near_mean": near.near_mean, "near_std": near.near_std,
            "slope": near.slope, "offset": near.offset}


def _rows_of(obj: dict, key: str, dim: int, path, name: str) -> np.ndarray | None:
    rows = obj.get(f"{key}_rows")
    if isinstance(rows, bool) or not isinstance(rows, int) or not 0 <= rows <= MAX_NEAR_ROWS:
        raise _bad(path, f"'{name}.{key}_rows' must be an integer from 0 to {MAX_NEAR_ROWS}")
    if rows == 0:
        if obj.get(key) is not None:
            raise _bad(path, f"'{name}.{key}' holds values for no rows")
        return None
    arr = _unpack(obj.get(key), rows * dim, path, f"{name}.{key}")
    if arr is None:
        raise _bad(path, f"'{name}.{key}' is missing")
    return arr.reshape(rows, dim)


def _near(obj: Any, model: dict, path, name: str) -> NearMarks | None:
    if obj is None:
        return None
    dim = model["proj_dim"]
    if not isinstance(obj, dict) or not dim:
        raise _bad(path, f"'{name}.near' is not a nearest-mark record for a stored projection")
    pos = _rows_of(obj, "pos", dim, path, f"{name}.near")
    if pos is None:
        raise _bad(path, f"'{name}.near' has no right marks")
    neg = _rows_of(obj, "neg", dim, path, f"{name}.near")
    nums = {k: _number(obj, k, path, low) for k, low in (
        ("weight", 0.0), ("neg_share", 0.0), ("lin_mean", -math.inf), ("lin_std", 1e-9),
        ("near_mean", -math.inf), ("near_std", 1e-9), ("slope", 0.0), ("offset", -math.inf))}
    return NearMarks(pos, neg, **nums)


def _scorer(obj: Any, model: dict, path, name: str) -> LinearScorer:
    if not isinstance(obj, dict):
        raise _bad(path, f"scorer '{name}' is missing")
    if name == "projection" and obj.get("w_tanh") is not None:
        raise _bad(path, "the projection scorer must not read tanh outputs")
    w_tanh = _unpack(obj.get("w_tanh"), model["bits"], path, f"{name}.w_tanh")
    w_proj = _unpack(obj.get("w_proj"), model["proj_dim"] or None, path, f"{name}.w_proj")
    if w_tanh is None and w_proj is None:
        raise _bad(path, f"scorer '{name}' has no weights")
    return LinearScorer(_number(obj, "bias", path), w_tanh, w_proj,
                        _number(obj, "slope", path, 0.0), _number(obj, "offset", path),
                        _near(obj.get("near"), model, path, name))


# --- files ----------------------------------------------------------------------------------------
def save(path: str | os.PathLike, saved: SavedSearch) -> Path:
    """Write ``saved`` atomically as JSON; returns the path."""
    doc = {"format": FORMAT, "version": VERSION, "model": saved.model, "query": saved.query,
           "scorers": {"full": _scorer_json(saved.full),
                       "portable": _scorer_json(saved.portable),
                       "projection": _scorer_json(saved.projection)},
           "provenance": {**saved.provenance,
                          "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    path = Path(path).expanduser()
    atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return path


def _model(obj: Any, path) -> dict:
    if not isinstance(obj, dict):
        raise _bad(path, "'model' is missing")
    for key in ("backbone", "heads_sha"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise _bad(path, f"model '{key}' is missing")
    bits, proj_dim = obj.get("bits"), obj.get("proj_dim", 0)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 8 <= bits <= 1024:
        raise _bad(path, "model 'bits' must be an integer from 8 to 1024")
    if isinstance(proj_dim, bool) or not isinstance(proj_dim, int) or not 0 <= proj_dim <= 8192:
        raise _bad(path, "model 'proj_dim' must be an integer from 0 to 8192")
    return {**obj, "bits": bits, "proj_dim": proj_dim}


def load(path: str | os.PathLike) -> SavedSearch:
    """Read and check a saved search (``DataError`` code ``saved_search_invalid`` when it is
    not one, ``file_not_found`` when it is not there)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"The saved search {path} does not exist.", code="file_not_found")
    if path.stat().st_size > MAX_BYTES:
        raise _bad(path, f"it is larger than {MAX_BYTES >> 20} MB")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"),
                         parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (ValueError, UnicodeDecodeError) as err:
        raise _bad(path, f"it is not JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad(path, f"'format' is not '{FORMAT}'")
    if doc.get("version") not in READS or isinstance(doc.get("version"), bool):
        raise _bad(path, f"version {doc.get('version')!r} is not one this release reads "
                         f"({', '.join(map(str, READS))}; made by another release of CACH)")
    if doc["version"] == 1 and any(isinstance(v, dict) and v.get("near") is not None
                                   for v in (doc["scorers"] if isinstance(doc.get("scorers"), dict) else {}).values()):
        raise _bad(path, "a version 1 file cannot hold a nearest-mark term")
    model = _model(doc.get("model"), path)
    scorers = doc.get("scorers")
    if not isinstance(scorers, dict):
        raise _bad(path, "'scorers' is missing")
    full = _scorer(scorers.get("full"), model, path, "full")
    portable, projection = (
        None if scorers.get(name) is None else _scorer(scorers[name], model, path, name)
        for name in ("portable", "projection"))
    query = doc.get("query") if isinstance(doc.get("query"), dict) else {}
    prov = doc.get("provenance") if isinstance(doc.get("provenance"), dict) else {}
    return SavedSearch(model, query, full, portable, prov, projection)
