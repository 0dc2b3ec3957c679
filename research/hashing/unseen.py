"""Unseen-class evaluation over several held-out class sets (issue 11), and its building blocks.

- :func:`heldout_sets`: four disjoint sets of 5 UCM classes. Set 0 is the set of the first report
  (``unseen_split(seed=0)``); sets 1-2 come from a fixed permutation of the other 16 classes. Sets
  0-2 are the *tuning* sets (the recipe was chosen on them only); set 3 stayed untouched until the
  recipe was fixed and is reported separately.
- :func:`train_without`: heads trained on the ``split_duch`` training images of the classes
  outside one held-out set (importable by the weak-match calibration).
- :func:`unseen_outputs` / :func:`score_unseen`: encode the held-out images and prompts once, then
  score pure codes, floats and the product's path (Hamming top pool of :data:`POOL`, re-ranked by
  the stored projection's cosine for image queries and by the tanh outputs' cosine for text).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from model_runtime.hashing import metrics as M
from model_runtime.hashing.model import HashHeads
from model_runtime.hashing.protocols import caption_index, train_on
from model_runtime.hashing.train import TrainConfig
from research.hashing.protocols import unseen_split

#: the product's Hamming top pool (pinned by issue 11)
POOL = 100
N_SETS = 4
TUNING_SETS = (0, 1, 2)
UNTOUCHED_SET = 3
_PERMUTATION_SEED = 11

#: UCM class folder names as a noun phrase with its article, for prompts
CLASS_PHRASES = {
    "agricultural": "farmland",
    "airplane": "an airplane",
    "baseballdiamond": "a baseball diamond",
    "beach": "a beach",
    "buildings": "buildings",
    "chaparral": "chaparral",
    "denseresidential": "a dense residential area",
    "forest": "a forest",
    "freeway": "a freeway",
    "golfcourse": "a golf course",
    "harbor": "a harbor",
    "intersection": "an intersection",
    "mediumresidential": "a medium residential area",
    "mobilehomepark": "a mobile home park",
    "overpass": "an overpass",
    "parkinglot": "a parking lot",
    "river": "a river",
    "runway": "a runway",
    "sparseresidential": "a sparse residential area",
    "storagetanks": "storage tanks",
    "tenniscourt": "a tennis court",
}
#: plain prompt templates; each (class, template) prompt is one query, mAP is their mean
TEMPLATES = (
    "a remote sensing image of {}",
    "an aerial photograph of {}",
    "a satellite image showing {}",
    "there is {} in this aerial image",
    "an overhead view of {}",
    "an aerial image of {}",
    "{} seen from above",
    "a top-down image of {}",
)


def heldout_sets(class_id: np.ndarray) -> list[np.ndarray]:
    """Four disjoint held-out class sets of 5 (sorted class ids); set 0 is the first report's."""
    _, first = unseen_split(class_id, 5, seed=0)
    classes = np.unique(class_id[class_id >= 0])
    rest = np.random.default_rng(_PERMUTATION_SEED).permutation(np.setdiff1d(classes, first))
    return [np.sort(first)] + [np.sort(rest[5 * i : 5 * i + 5]) for i in range(N_SETS - 1)]


def seen_train_mask(feats, heldout: np.ndarray) -> np.ndarray:
    """``split_duch`` training images of the classes outside ``heldout``."""
    return (feats.split_duch == "train") & ~np.isin(feats.class_id, heldout)


def train_without(
    feats,
    heldout: np.ndarray,
    seed: int,
    bits: int,
    config: TrainConfig | None = None,
    text_bank: np.ndarray | None = None,
    method: str = "cach",
) -> HashHeads:
    """Heads trained without held-out set ``heldout`` (its classes never seen, images or text)."""
    return train_on(method, feats, seen_train_mask(feats, heldout), bits, seed, config, text_bank)


def prompt_texts(class_names: Sequence[str], classes: np.ndarray) -> list[str]:
    """``len(classes) * len(TEMPLATES)`` prompts, class-major."""
    phrases = [CLASS_PHRASES.get(class_names[c], class_names[c]) for c in classes]
    return [t.format(p) for p in phrases for t in TEMPLATES]


def prompt_features(
    class_names: Sequence[str], classes: np.ndarray, encode: Callable[[list[str]], np.ndarray]
) -> np.ndarray:
    """Prompt text features ``[n_classes, n_templates, Dt]``."""
    feats = np.asarray(encode(prompt_texts(class_names, classes)), dtype=np.float32)
    return feats.reshape(len(classes), len(TEMPLATES), -1)


def unseen_outputs(heads: HashHeads, feats, heldout: np.ndarray, prompts: np.ndarray) -> dict:
    """Everything scoring needs for one held-out set: frozen features, projections, tanh outputs."""
    idx = np.flatnonzero(np.isin(feats.class_id, heldout))
    cap = caption_index(feats)[idx]
    n_cls, n_tpl, dt = prompts.shape
    return {
        "labels": feats.class_id[idx],
        "classes": np.asarray(heldout),
        "frozen": feats.image[idx],
        "proj": heads.project_image_np(feats.image[idx]),
        "img": heads.encode_image_np(feats.image[idx]),
        "cap": heads.encode_text_np(feats.text[idx, cap]),
        "prompt": heads.encode_text_np(prompts.reshape(-1, dt)).reshape(n_cls, n_tpl, -1),
    }


def _map(dist: np.ndarray, rel: np.ndarray, exclude_self: bool = False) -> float:
    if exclude_self:
        dist = dist.astype(np.float64, copy=True)
        np.fill_diagonal(dist, 1e9)  # self ranks last and is not relevant
    return M.map_all(M.ranked_relevance(dist, rel))


def _i2i_scores(out: dict, pool: int) -> dict[str, float]:
    lab = out["labels"]
    rel = lab[:, None] == lab[None, :]
    np.fill_diagonal(rel, False)
    ham = M.hamming_distance(out["img"], out["img"]).astype(np.float64)
    np.fill_diagonal(ham, 1e9)  # the query itself is not in its pool
    f_proj, f_head = -M.cosine_scores(out["proj"], out["proj"]), -M.cosine_scores(out["img"], out["img"])
    return {
        "i2i_frozen": _map(-M.cosine_scores(out["frozen"], out["frozen"]), rel, True),
        "i2i_proj": _map(f_proj, rel, True),
        "i2i_float": _map(f_head, rel, True),
        "i2i_codes": _map(ham, rel, True),
        "i2i_product": _map(M.rerank_distances(ham, f_proj, pool), rel, True),
        "i2i_rerank_head": _map(M.rerank_distances(ham, f_head, pool), rel, True),
    }


def _t2i_scores(q: np.ndarray, q_lab: np.ndarray, out: dict, pool: int) -> dict[str, float]:
    rel = q_lab[:, None] == out["labels"][None, :]
    ham = M.hamming_distance(q, out["img"])
    flt = -M.cosine_scores(q, out["img"])
    return {
        "codes": _map(ham, rel),
        "float": _map(flt, rel),
        "product": _map(M.rerank_distances(ham, flt, pool), rel),
    }


def score_unseen(out: dict, pool: int = POOL) -> dict[str, float]:
    """mAP@ALL of one held-out set from :func:`unseen_outputs` (or adapted image outputs).

    ``t2i_prompt_*`` is the mean over templates (each template: one query per class).
    """
    res = _i2i_scores(out, pool)
    per_tpl = [
        _t2i_scores(out["prompt"][:, t], out["classes"], out, pool)
        for t in range(out["prompt"].shape[1])
    ]
    for kind in ("codes", "float", "product"):
        res[f"t2i_prompt_{kind}"] = float(np.mean([s[kind] for s in per_tpl]))
    for kind, v in _t2i_scores(out["cap"], out["labels"], out, pool).items():
        res[f"t2i_caption_{kind}"] = v
    return res
