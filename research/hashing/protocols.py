"""Research protocols behind docs/results.md: instance-level, unseen classes, PR curves.

The DUCH protocol and ``train_on`` are product code (``model_runtime.hashing.protocols``, used by
``cach train`` and ``cach eval``); they are re-exported here so research scripts import one module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from model_runtime.hashing import metrics as M
from model_runtime.hashing.model import HashHeads
from model_runtime.hashing.protocols import (  # noqa: F401  (re-exported)
    DIRECTIONS,
    RERANK_K,
    K,
    _pairs,
    caption_index,
    duch_codes,
    duch_items,
    eval_duch,
    score_duch,
    train_on,
)

LOG = logging.getLogger(__name__)

#: readable names for the UCM class folder names, used in unseen-class prompts
UCM_CLASS_TEXT = {
    "agricultural": "farmland",
    "airplane": "airplane",
    "baseballdiamond": "baseball diamond",
    "beach": "beach",
    "buildings": "buildings",
    "chaparral": "chaparral",
    "denseresidential": "dense residential area",
    "forest": "forest",
    "freeway": "freeway",
    "golfcourse": "golf course",
    "harbor": "harbor",
    "intersection": "intersection",
    "mediumresidential": "medium residential area",
    "mobilehomepark": "mobile home park",
    "overpass": "overpass",
    "parkinglot": "parking lot",
    "river": "river",
    "runway": "runway",
    "sparseresidential": "sparse residential area",
    "storagetanks": "storage tanks",
    "tenniscourt": "tennis court",
}
PLAIN_TEMPLATE = "a remote sensing image of a {}"
PROMPT_TEMPLATES = (
    "a remote sensing image of a {}",
    "an aerial photograph of a {}",
    "a satellite image showing a {}",
    "there is a {} in this aerial image",
    "an overhead view of a {}",
)


def pr_curves_duch(heads: HashHeads, feats, label: str) -> dict[str, tuple]:
    """Hamming-radius precision/recall curves for I->T and T->I."""
    enc = duch_codes(heads, feats)
    rel = M.relevance(enc["lab_query"], enc["lab_db"])
    out = {}
    for d, q, db in _pairs(enc):
        if d in ("i2t", "t2i"):
            out[f"{label} {d}"] = M.pr_curve_hamming(M.hamming_distance(q, db), rel, heads.bits)
    return out


def eval_instance(
    heads: HashHeads, feats, split: str = "test", rerank: int = RERANK_K
) -> dict[str, dict[str, float]]:
    """Instance-level R@1/5/10 on ``split_official == split``: codes (Hamming), floats (cosine) and
    ``rerank``: the product's path, Hamming top-``rerank`` re-ranked by the tanh outputs' cosine.

    I->T: each image against all captions of the split (relevant: its own captions);
    T->I: each caption against all images (relevant: its image).
    """
    idx = np.flatnonzero(feats.split_official == split)
    ncap = getattr(feats, "n_captions", None)
    ncap = np.full(len(feats.image), feats.text.shape[1]) if ncap is None else np.asarray(ncap)
    cap_owner = np.concatenate([np.full(ncap[i], j) for j, i in enumerate(idx)])
    cap_feats = np.concatenate([feats.text[i, : ncap[i]] for i in idx])
    img = heads.encode_image_np(feats.image[idx])
    txt = heads.encode_text_np(cap_feats)
    rel_i2t = np.arange(len(idx))[:, None] == cap_owner[None, :]
    out = {}
    h_i2t, h_t2i = M.hamming_distance(img, txt), M.hamming_distance(txt, img)
    f_i2t, f_t2i = -M.cosine_scores(img, txt), -M.cosine_scores(txt, img)
    for kind in ("codes", "float", "rerank"):
        if kind == "codes":
            d_i2t, d_t2i = h_i2t, h_t2i
        elif kind == "float":
            d_i2t, d_t2i = f_i2t, f_t2i
        else:
            d_i2t = M.rerank_distances(h_i2t, f_i2t, rerank)
            d_t2i = M.rerank_distances(h_t2i, f_t2i, rerank)
        r_i2t = M.recall_at_k(M.ranked_relevance(d_i2t, rel_i2t))
        r_t2i = M.recall_at_k(M.ranked_relevance(d_t2i, rel_i2t.T))
        row = {f"i2t_r{k}": v for k, v in r_i2t.items()}
        row.update({f"t2i_r{k}": v for k, v in r_t2i.items()})
        row["mR"] = float(np.mean(list(r_i2t.values()) + list(r_t2i.values())))
        out[kind] = row
    return out


def unseen_split(class_id: np.ndarray, n_unseen: int = 5, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``(seen_classes, unseen_classes)``: a fixed-seed choice of ``n_unseen`` held-out classes."""
    classes = np.unique(class_id[class_id >= 0])
    perm = np.random.default_rng(seed).permutation(classes)
    return np.sort(perm[n_unseen:]), np.sort(perm[:n_unseen])


def prompt_texts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
    """``len(class_names) * len(templates)`` prompts, class-major."""
    return [t.format(UCM_CLASS_TEXT.get(c, c)) for c in class_names for t in templates]


def eval_unseen(
    heads: HashHeads,
    feats,
    unseen: np.ndarray,
    prompt_feats: dict[str, np.ndarray] | None = None,
    rerank: int = 100,
) -> dict[str, float]:
    """Unseen-class retrieval among all images of the ``unseen`` classes (mAP@ALL).

    - ``i2i_*``: every unseen image queries the others (itself excluded) with codes, with the
      heads' float outputs and with the frozen image features; ``i2i_rerank``: codes shortlist
      ``rerank`` items re-ranked by frozen-feature cosine (what an index with stored floats does).
    - ``t2i_captions_*``: each image's DUCH caption queries the unseen images.
    - ``t2i_<name>_*``: prompt queries, ``prompt_feats[name]`` is ``[n_unseen, Dt]`` (class order).
    """
    mask = np.isin(feats.class_id, unseen)
    idx = np.flatnonzero(mask)
    lab = feats.class_id[idx]
    img_f = heads.encode_image_np(feats.image[idx])
    raw = feats.image[idx]
    rel = lab[:, None] == lab[None, :]
    np.fill_diagonal(rel, False)
    big = 1e9
    out: dict[str, float] = {}
    dists = {
        "codes": M.hamming_distance(img_f, img_f).astype(np.float64),
        "float": -M.cosine_scores(img_f, img_f),
        "frozen": -M.cosine_scores(raw, raw),
    }
    for name, dist in dists.items():
        np.fill_diagonal(dist, big)  # self ranks last and is not relevant
        out[f"i2i_{name}"] = M.map_all(M.ranked_relevance(dist, rel))
    # codes shortlist, then frozen-feature cosine within it; the rest keeps the codes' order
    code_order = M.rank(dists["codes"])
    code_pos = np.empty_like(code_order)
    np.put_along_axis(code_pos, code_order, np.arange(len(idx))[None, :], axis=1)
    rr = np.where(code_pos < rerank, dists["frozen"], 10.0 + code_pos)
    np.fill_diagonal(rr, big)
    out["i2i_rerank"] = M.map_all(M.ranked_relevance(rr, rel))
    # the product's path: codes shortlist re-ranked by the stored tanh outputs of the heads
    rh = M.rerank_distances(dists["codes"], dists["float"], rerank)
    np.fill_diagonal(rh, big)
    out["i2i_rerank_head"] = M.map_all(M.ranked_relevance(rh, rel))
    cap = caption_index(feats)[idx]
    txt_f = heads.encode_text_np(feats.text[idx, cap])
    rel_t = lab[:, None] == lab[None, :]
    out["t2i_captions_codes"] = M.map_all(
        M.ranked_relevance(M.hamming_distance(txt_f, img_f), rel_t)
    )
    out["t2i_captions_float"] = M.map_all(M.ranked_relevance(-M.cosine_scores(txt_f, img_f), rel_t))
    for name, pf in (prompt_feats or {}).items():
        q = heads.encode_text_np(pf)
        rel_p = np.asarray(unseen)[:, None] == lab[None, :]
        out[f"t2i_{name}_codes"] = M.map_all(
            M.ranked_relevance(M.hamming_distance(q, img_f), rel_p)
        )
        out[f"t2i_{name}_float"] = M.map_all(M.ranked_relevance(-M.cosine_scores(q, img_f), rel_p))
    return out


def class_prompt_features(
    class_names: Sequence[str],
    classes: np.ndarray,
    encode: Callable[[list[str]], np.ndarray],
) -> dict[str, np.ndarray]:
    """Prompt features per class: the plain template and a mean over a template ensemble."""
    names = [class_names[c] for c in classes]
    plain = encode(prompt_texts(names, (PLAIN_TEMPLATE,)))
    ens = encode(prompt_texts(names, PROMPT_TEMPLATES)).reshape(
        len(names), len(PROMPT_TEMPLATES), -1
    )
    ens = ens / np.linalg.norm(ens, axis=-1, keepdims=True)
    ens = ens.mean(axis=1)
    return {
        "prompt": plain.astype(np.float32),
        "ensemble": (ens / np.linalg.norm(ens, axis=-1, keepdims=True)),
    }
