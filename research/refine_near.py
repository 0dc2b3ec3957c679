"""Choosing the learner's nearest-mark term (``feedback.NearMarks``): the simulated analyst of
``research/refine_eval.py`` with features in RAM, the product's own fit (``refine.fit_marks``)
and each variant's ranking on top of it (docs/search.md, "The nearest-mark term").

    nice -n 10 .venv/bin/python -m research.refine_near --index DIR [--index DIR --heads H] \
        --variant '{"kind": "shipped"}' --variant '{"kind": "fixed", "weight": 4}' ...

``--heads`` (once per ``--index``, or none; ``-``: the shipped ones): the heads an index was
built with, and ``--classes`` the scene types to search for (UC Merced's held-out-class sets:
``research/refine_heldout.py`` builds them and names their 5 classes). Variants (JSON):

- ``{"kind": "shipped"}``: the product's ranking (``refine.ranking_score``);
- ``{"kind": "off"}``: the logistic decision alone;
- ``{"kind": "fixed"|"falling", "weight": g, "neg_share": s, "block": "proj"|"tanh"}``: the
  term with weight g (``falling``: g x 20 / marks), on every query with a right mark;
- ``"learn_only": true``: only when fewer marks are right than wrong; ``"loo": true``: on the
  other queries only when it orders the held-out marks better than the model (``"loo_ties":
  true``: or as well);
- ``"neg_only": g``: when no mark is right, minus g x the standardised nearest wrong mark.

Prints first / one round / two rounds residual mAP per index and variant.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from model_runtime.feedback import Prior, near_loo_auc
from model_runtime.pipeline import Pipeline
from model_runtime.services import refine
from research.refine_eval import MARKS, average_precision, labels_of, scene


def _z(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / (v.std() + 1e-9)


def _variant_score(v: dict, fit, blocks, pos: list[int], neg: list[int]) -> np.ndarray:
    dec = blocks.linear(fit.full.bias, fit.full.w_tanh, fit.full.w_proj).astype(np.float64)
    feats = np.asarray(blocks.tanh if v.get("block") == "tanh" else blocks.proj, np.float32)
    if not pos:
        g = v.get("neg_only", 0)
        return _z(dec) - g * _z((feats @ feats[neg].T).max(1)) if g and neg else dec
    if v["kind"] == "shipped":
        return np.asarray(refine.ranking_score(fit.full, dec, blocks.proj), np.float64)
    if v["kind"] == "off":
        return dec
    weight = v.get("weight", 4.0) * (20.0 / (len(pos) + len(neg))
                                     if v["kind"] == "falling" else 1.0)
    share = v.get("neg_share", 0.5)
    if len(pos) >= len(neg) and v.get("learn_only"):
        return dec
    if len(pos) >= len(neg) and v.get("loo"):
        near_auc = near_loo_auc(feats[pos], feats[neg], share)
        model_auc = fit.diagnostics.get("loo_auc_marks")
        if near_auc is None or model_auc is None:
            return dec
        if (near_auc < model_auc) if v.get("loo_ties") else (near_auc <= model_auc):
            return dec
    near = (feats @ feats[pos].T).max(1)
    if neg and share:
        near = near - share * (feats @ feats[neg].T).max(1)
    return _z(dec) + weight * _z(near)


def simulate(index_dir: str, heads: str | None, variants: list[dict],
             classes: list[str] | None = None) -> list[np.ndarray]:
    """Mean [first, one round, two rounds] residual mAP over scene types, per variant."""
    rt = Pipeline(heads=heads) if heads else Pipeline()
    labels = labels_of(rt, index_dir)
    index, used = rt.indexes.open(index_dir)
    blocks = index.feature_blocks()
    cls_of = np.array([labels[int(i)] for i in blocks.ids])
    model = rt.models.get(used)
    rows: list[list[list[float]]] = [[] for _ in variants]
    for cls in classes or sorted(set(labels.values())):
        q = model.encode_texts([f"an aerial image of {scene(cls)}"])[0]
        q = q / np.linalg.norm(q)
        rel = cls_of == cls
        first = np.argsort(-(blocks.tanh @ q), kind="stable")
        for out, v in zip(rows, variants, strict=True):
            order, marked = first, []
            res = [average_precision(rel[order].tolist(), int(rel.sum()))]
            for _ in range(2):
                marked += [int(r) for r in order[:MARKS]]
                pos = [r for r in marked if rel[r]]
                neg = [r for r in marked if not rel[r]]
                fit = refine.fit_marks(index, Prior(tanh=q), [int(blocks.ids[r]) for r in pos],
                                       [int(blocks.ids[r]) for r in neg])
                score = _variant_score(v, fit, blocks, pos, neg)
                score[marked] = -np.inf
                order = np.argsort(-score, kind="stable")[: len(score) - len(marked)]
                res.append(average_precision(rel[order].tolist(), int(rel.sum()) - len(pos)))
            out.append(res)
    rt.close()
    return [np.nanmean(r, axis=0) for r in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", action="append", required=True)
    parser.add_argument("--heads", action="append", default=[])
    parser.add_argument("--classes", action="append", default=[],
                        help="once per --index: comma-separated scene types ('-': all)")
    parser.add_argument("--variant", action="append", default=[])
    args = parser.parse_args(argv)
    if args.heads and len(args.heads) != len(args.index):
        parser.error("give --heads once per --index, or not at all")
    if args.classes and len(args.classes) != len(args.index):
        parser.error("give --classes once per --index, or not at all")
    variants = [json.loads(v) for v in args.variant] or [{"kind": "shipped"}]
    for i, index_dir in enumerate(args.index):
        heads = args.heads[i] if args.heads and args.heads[i] != "-" else None
        classes = args.classes[i].split(",") if args.classes and args.classes[i] != "-" else None
        means = simulate(index_dir, heads, variants, classes)
        for v, (f, r1, r2) in zip(variants, means, strict=True):
            goal = f + 0.25 * (1 - f)
            print(f"{index_dir} {json.dumps(v)}: first {f:.3f} goal {goal:.3f} one round "
                  f"{r1:.3f}{' met' if r1 >= goal else ''} two rounds {r2:.3f}", flush=True)


if __name__ == "__main__":
    main()
