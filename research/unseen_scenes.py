"""Re-rank spaces on scene sets the heads never saw (issue 19.2), on cached features.

    nice -n 10 .venv/bin/python -m research.unseen_scenes

For EuroSAT RGB, the RSI-CB256 samples (``../shared/data/scenes``) and UC Merced's 4 held-out-class
sets (heads trained without them, ``research.calibration.held_out_heads``), scores image->image
(every image a query, the rest the archive) and text->image (8 plain prompt templates per class)
mAP@ALL with the product's ranking: Hamming top pool of ``RERANK_POOL`` re-ranked by a float
score (``model_runtime.hashing.metrics.rerank_distances``). Recipes: the frozen features' cosine
(full ranking), the first release's heads, the second release's heads today (whitened
projection), and the re-rank spaces of :func:`model_runtime.index.query.rerank_space`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from model_runtime.hashing import metrics as M
from model_runtime.index.query import (
    CENTRE_PRIOR_TILES,
    RERANK_POOL,
    RERANK_UNWHITEN,
    unwhiten_scale,
)
from model_runtime.paths import PLUGIN_ROOT, cache_dir

DATA = PLUGIN_ROOT.parent / "shared" / "data" / "scenes"
SETS = ("eurosat_rgb", "rsicb256_sample")
ROUND1 = PLUGIN_ROOT / "resources" / "heads" / "archive" / "round1"


def scene_features(name: str, enc=None):
    """(image features [N, D], labels [N], class folder names) of one scene set, cached."""
    path = cache_dir() / "features" / f"scenes-{name}.npz"
    if path.exists():
        z = np.load(path)
        return z["image"], z["labels"], list(z["classes"])
    from model_runtime.encoders import read_image

    classes = sorted(p.name for p in (DATA / name).iterdir() if p.is_dir())
    files, labels = [], []
    for c, cls in enumerate(classes):
        for f in sorted((DATA / name / cls).iterdir()):
            files.append(f)
            labels.append(c)
    feats = np.concatenate([enc.encode_images([read_image(f) for f in files[i : i + 32]])
                            for i in range(0, len(files), 32)])
    np.savez(path, image=feats, labels=np.asarray(labels), classes=np.asarray(classes))
    return feats, np.asarray(labels), classes


def _map(dist, rel, self_out=False):
    if self_out:
        dist = dist.astype(np.float64, copy=True)
        np.fill_diagonal(dist, 1e9)
    return M.map_all(M.ranked_relevance(dist, rel))


def _neg_cos(a, b):
    return -M.cosine_scores(a, b)


def i2i(heads, frozen, lab, spaces) -> dict:
    rel = lab[:, None] == lab[None, :]
    np.fill_diagonal(rel, False)
    img = heads.encode_image_np(frozen)
    ham = M.hamming_distance(img, img).astype(np.float64)
    np.fill_diagonal(ham, 1e9)
    proj = heads.project_image_np(frozen)
    out = {"frozen": _map(_neg_cos(frozen, frozen), rel, True),
           "codes": _map(ham, rel, True)}
    for name, fn in spaces.items():
        v = fn(proj)
        out[name] = _map(M.rerank_distances(ham, _neg_cos(v, v), RERANK_POOL), rel, True)
        out[name + "_all"] = _map(_neg_cos(v, v), rel, True)
    return out


def t2i(heads, frozen, lab, prompts, extra) -> dict:
    """prompts [n_cls, n_tpl, Dt]; extra: name -> fn(q_tanh, img_tanh, proj) -> float distance."""
    img, proj = heads.encode_image_np(frozen), heads.project_image_np(frozen)
    n_cls, n_tpl, dt = prompts.shape
    q = heads.encode_text_np(prompts.reshape(-1, dt)).reshape(n_cls, n_tpl, -1)
    res: dict[str, list] = {}
    for t in range(n_tpl):
        qt = q[:, t]
        rel = np.arange(n_cls)[:, None] == lab[None, :]
        ham = M.hamming_distance(qt, img)
        res.setdefault("codes", []).append(_map(ham, rel))
        res.setdefault("product", []).append(
            _map(M.rerank_distances(ham, _neg_cos(qt, img), RERANK_POOL), rel))
        res.setdefault("product_all", []).append(_map(_neg_cos(qt, img), rel))
        for name, fn in extra.items():
            d = fn(qt, img, proj)
            res.setdefault(name, []).append(_map(M.rerank_distances(ham, d, RERANK_POOL), rel))
            res.setdefault(name + "_all", []).append(_map(d, rel))
    return {k: float(np.mean(v)) for k, v in res.items()}


def _with_mean(proj, matrix, mean, centre: float) -> np.ndarray:
    """Un-whitened projection with ``centre`` x the features' mean put back (in the principal
    axes, and the rest of its norm as one more coordinate): centre 1 = the uncentred frozen
    cosine up to truncation. Measured only: the product's query projection is L2-normalised
    (``query_vector``), so a shift would need the query's own norm."""
    norms = np.linalg.norm(matrix.astype(np.float64), axis=0)
    inside = (matrix / norms).T @ mean
    rest = np.sqrt(max(mean @ mean - inside @ inside, 0.0))
    u = proj / norms + centre * inside
    return np.hstack([u, np.full((len(u), 1), centre * rest)])


def spaces_for(heads) -> dict:
    """Re-rank spaces of image queries, functions of the stored projection."""
    spaces = {"today": lambda p: p}
    if not getattr(heads, "proj_dim", 0):
        return spaces
    matrix = heads.image_proj.matrix.detach().numpy() if hasattr(heads, "image_proj") else None
    for t in (0.5, 0.75, 1.0):
        s = unwhiten_scale(matrix, t)
        spaces[f"unwhiten{t:g}"] = lambda p, s=s: p * s
    mean = heads.image_proj.mean.detach().numpy().astype(np.float64)
    for centre in (0.5, 1.0):
        spaces[f"centre{centre:g}"] = lambda p, c=centre: _with_mean(p, matrix, mean, c)
    s = unwhiten_scale(matrix, RERANK_UNWHITEN)
    for prior in (0, CENTRE_PRIOR_TILES, 100):  # the product: archive_centred, prior 20
        spaces[f"archive_centred{prior}"] = lambda p, s=s, n0=prior: _archive_centred(p, n0) * s
    return spaces


def _archive_centred(proj: np.ndarray, prior: int) -> np.ndarray:
    """Projections centred on their own mean, shrunk by n / (n + prior) (``Index.proj_centre``
    over every tile)."""
    n = len(proj)
    return proj - proj.mean(axis=0) * n / (n + prior)


def text_extras(heads) -> dict:
    """T->I: tanh cosine plus w x cosine of the projection to the centroid of the top hits."""
    out = {}
    matrix = heads.image_proj.matrix.detach().numpy() if getattr(heads, "proj_dim", 0) else None
    s = unwhiten_scale(matrix, 1.0) if matrix is not None else None

    def prf(w, top):
        def fn(q, img, proj):
            p = proj * s if s is not None else proj
            c = -_neg_cos(q, img)
            idx = np.argsort(-c, axis=1)[:, :top]
            pn = p / np.linalg.norm(p, axis=1, keepdims=True)
            cent = pn[idx].mean(axis=1)
            return -(c + w * -_neg_cos(cent, p))
        return fn

    for w in (0.5, 1.0):
        for top in (5, 10):
            out[f"prf_w{w:g}_top{top}"] = prf(w, top)
    if matrix is not None:
        out["centred_prf_top10"] = _centred_prf(unwhiten_scale(matrix, RERANK_UNWHITEN), 10)
    return out


def _centred_prf(scale: np.ndarray, top: int):
    """T->I, measured only: tanh cosine + cosine of each tile's archive-centred projection to the
    centroid of the best ``top`` (label-free pseudo-relevance feedback)."""
    def fn(q, img, proj):
        p = _archive_centred(proj, 0) * scale
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
        c = -_neg_cos(q, img)
        cent = p[np.argsort(-c, axis=1)[:, :top]].mean(axis=1)
        return -(c - _neg_cos(cent, p))
    return fn


def prompts_for(classes, enc) -> np.ndarray:
    from research.calibration_scenes import PHRASES
    from research.hashing.unseen import TEMPLATES

    texts = [t.format(PHRASES.get(c, c.replace("_", " "))) for c in classes for t in TEMPLATES]
    feats = np.asarray(enc.encode_texts(texts), np.float32)
    return feats.reshape(len(classes), len(TEMPLATES), -1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, nargs="+", default=[64])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from model_runtime.encoders import load_encoder
    from model_runtime.hashing.heads_io import load_heads, shipped_heads_path

    enc = load_encoder(device="cpu")
    rows = {}
    for name in SETS:
        frozen, lab, classes = scene_features(name, enc)
        keep = np.asarray([c != "objects" for c in classes])[lab]  # RSI-CB grab-bag: archive only
        prompts = prompts_for(classes, enc)
        for bits in args.bits:
            for tag, path in (("round1", ROUND1 / shipped_heads_path(bits).name),
                              ("today", shipped_heads_path(bits))):
                heads = load_heads(path, expect_bits=bits)
                r = i2i(heads, frozen[keep], lab[keep], spaces_for(heads))
                r.update({f"t2i_{k}": v for k, v in
                          t2i(heads, frozen, lab, prompts, text_extras(heads)).items()})
                rows[f"{name}/{bits}/{tag}"] = r
                print(name, bits, tag, json.dumps({k: round(v, 4) for k, v in r.items()}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def ucm_heldout(bits: int = 64) -> dict:
    """UC Merced's 4 held-out-class sets: heads of the shipped recipe trained without them
    (``research.calibration.held_out_heads``, cached), every image of the 5 classes."""
    from model_runtime.data.datasets import load_ucm
    from model_runtime.encoders import load_encoder
    from model_runtime.features import ucm_features
    from research import calibration as R
    from research.hashing import unseen as U
    from research.hashing.benchmark import features_tag

    feats = ucm_features(progress=False)
    names = load_ucm().classes
    enc = load_encoder(feats.backbone, "cpu")
    rows = {}
    for i, s in enumerate(U.heldout_sets(feats.class_id)):
        heads = R.held_out_heads(feats, s, bits, features_tag(feats))
        idx = np.flatnonzero(np.isin(feats.class_id, s))
        frozen, lab = feats.image[idx], np.searchsorted(s, feats.class_id[idx])
        prompts = U.prompt_features(names, s, enc.encode_texts)
        r = i2i(heads, frozen, lab, spaces_for(heads))
        r.update({f"t2i_{k}": v for k, v in t2i(heads, frozen, lab, prompts, {}).items()})
        rows[f"ucm_set{i}/{bits}/today"] = r
        print(i, json.dumps({k: round(v, 4) for k, v in r.items()}), flush=True)
    return rows


def _ap(ranked_rel: list[bool], total: int) -> float:
    hits, s = 0, 0.0
    for i, r in enumerate(ranked_rel, 1):
        if r:
            hits += 1
            s += hits / i
    return s / total if total else 0.0


def product_eval(index_dir: str, unwhiten: float = 1.0, texts: bool = True) -> dict:
    """I->I (every tile a query, RSI-CB's ``objects`` only archive) and T->I (8 plain templates
    per class) mAP@ALL through ``Pipeline.search`` on an index built by ``cach index``
    (k = every tile, no collapsing). ``unwhiten=False``: the re-rank of the stored projection
    as the second release did it; 0 < ``unwhiten`` < 1: tempered."""
    from unittest import mock

    import model_runtime.index.query as Q
    from model_runtime.pipeline import Pipeline
    from model_runtime.protocol import SearchRequest
    from research.calibration_scenes import PHRASES
    from research.hashing.unseen import CLASS_PHRASES, TEMPLATES

    phrases = {**CLASS_PHRASES, **PHRASES}
    pipe = Pipeline()
    everything = pipe.search(SearchRequest(index_dir, text="an aerial image", k=100_000,
                                           collapse=False))
    cls = {h.tile_id: Path(h.source).parent.name for h in everything.results}
    n = len(cls)
    count = {c: sum(v == c for v in cls.values()) for c in set(cls.values())}
    orig = Q.rerank_scale
    scale = (lambda path: orig(path, unwhiten)) if unwhiten else (lambda path: None)
    i2i_ap = []
    with mock.patch.object(Q, "rerank_scale", scale):
        for t, c in cls.items():
            if c == "objects":
                continue
            hits = pipe.search(SearchRequest(index_dir, tile=t, k=n, collapse=False)).results
            i2i_ap.append(_ap([cls[h.tile_id] == c for h in hits], count[c] - 1))
    t2i_ap = []
    for c in sorted(count) if texts else ():
        for tpl in TEMPLATES:
            text = tpl.format(phrases.get(c, c.replace("_", " ")))
            hits = pipe.search(SearchRequest(index_dir, text=text, k=n,
                                             collapse=False)).results
            t2i_ap.append(_ap([cls[h.tile_id] == c for h in hits], count[c]))
    return {"i2i": float(np.mean(i2i_ap)), "t2i": float(np.mean(t2i_ap)) if t2i_ap else None,
            "tiles": n}
