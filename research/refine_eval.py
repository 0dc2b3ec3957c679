"""A simulated analyst refining text searches with marks: today's weighted sum vs the learner.

For each scene type of a labelled index (class = the tile's folder name): type the scene in one
of the :data:`PHRASINGS` ("an aerial image of <scene>" unless ``--phrasing`` says otherwise),
search (the whole index ranked, no collapse), mark the best 20 right or wrong, search again
with the marks (``positive``/``negative``), mark the next best 20, search again.
Every search goes through ``Pipeline.search`` (the product path). The score of a search after
marking is its **residual mAP**: the marked tiles are left out of the ranking (the search does
that) and out of the relevant set.

    nice -n 10 .venv/bin/python -m research.refine_eval --index /tmp/idx_eurosat \
        [--phrasing bare --phrasing satellite] [--out FILE]

Build the indexes with ``cach index --index DIR ../shared/data/scenes/eurosat_rgb`` (likewise
``rsicb256_sample``; UC Merced: a folder of the 1,050 ``split_duch`` non-training images).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from model_runtime.pipeline import Pipeline
from model_runtime.protocol import SearchRequest

MARKS = 20
#: how the analyst types a scene type, by ``--phrasing`` name
PHRASINGS = {"aerial": "an aerial image of {scene}", "bare": "{scene}",
             "satellite": "a satellite photo showing {scene} from above"}
DEFAULT_PHRASING = "aerial"
SCENE_WORDS = {"SeaLake": "sea or lake", "waterarea": "water area",
               "construction_land": "construction land", "cultivatedland": "cultivated land"}


def scene(name: str) -> str:
    """Folder name -> words: 'HerbaceousVegetation' -> 'herbaceous vegetation'."""
    if name in SCENE_WORDS:
        return SCENE_WORDS[name]
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).replace("_", " ").lower()


def average_precision(relevant: list[bool], total: int) -> float:
    """AP of a ranking given each hit's relevance and the number of relevant items."""
    if total <= 0:
        return float("nan")
    hits = np.cumsum(relevant)
    ranks = np.arange(1, len(relevant) + 1)
    return float(np.sum((hits / ranks)[np.asarray(relevant, bool)]) / total)


def labels_of(rt: Pipeline, index_dir: str) -> dict[int, str]:
    index, _ = rt.indexes.open(index_dir)
    ids = [int(i) for i in index.codes.ids]
    rows = index.store.tiles(ids, geometry=False)
    return {i: Path(rows[i].source).parent.name for i in ids}


def one_class(rt: Pipeline, index_dir: str, labels: dict[int, str], cls: str,
              learn: bool, reliability: list | None = None,
              phrasing: str = DEFAULT_PHRASING) -> list[float]:
    """[first mAP, then per round: the residual mAP of the previous ranking without the marked
    tiles (not searching again), and of the search with the marks] for one scene type, typed
    in the :data:`PHRASINGS` template named ``phrasing``."""
    text = PHRASINGS[phrasing].format(scene=scene(cls))
    total = sum(v == cls for v in labels.values())
    n = len(labels)
    first = rt.search(SearchRequest(index_dir, text=text, k=n, collapse=False))
    ranking = [h.tile_id for h in first.results]
    out = [average_precision([labels[t] == cls for t in ranking], total)]
    pos: list[int] = []
    neg: list[int] = []
    for _ in range(2):
        for t in ranking[:MARKS]:
            (pos if labels[t] == cls else neg).append(t)
        marked = set(pos) | set(neg)
        kept = [t for t in ranking if t not in marked]  # not searching again: the baseline
        out.append(average_precision([labels[t] == cls for t in kept], total - len(pos)))
        res = rt.search(SearchRequest(index_dir, text=text, positive=tuple(pos),
                                      negative=tuple(neg), k=max(1, n - len(pos) - len(neg)),
                                      collapse=False, learn=learn))
        ranking = [h.tile_id for h in res.results]
        out.append(average_precision([labels[t] == cls for t in ranking], total - len(pos)))
        if learn and reliability is not None:  # the first page after marking: conf vs truth
            reliability += [(h.confidence, labels[h.tile_id] == cls) for h in res.results[:MARKS]]
    return out


def evaluate(index_dir: str, phrasing: str = DEFAULT_PHRASING) -> dict:
    """Both rankings (weighted sum, learner) for every scene type of the index, one phrasing."""
    rt = Pipeline()
    labels = labels_of(rt, index_dir)
    classes = sorted(set(labels.values()))
    table: dict[str, dict[str, list[float]]] = {}
    pairs: list = []
    for learn, name in ((False, "weighted sum"), (True, "learner")):
        table[name] = {c: one_class(rt, index_dir, labels, c, learn, pairs, phrasing)
                       for c in classes}
    means = {name: np.nanmean(np.array(list(rows.values())), axis=0).round(3).tolist()
             for name, rows in table.items()}
    return {"index": index_dir, "tiles": len(labels), "classes": len(classes),
            "mean": means, "per_class": table, "reliability": reliability_table(pairs)}


def reliability_table(pairs: list) -> list[dict]:
    """Hits binned by confidence: count, mean confidence, share relevant."""
    conf = np.array([c for c, _ in pairs], float)
    rel = np.array([r for _, r in pairs], float)
    rows = []
    for lo in np.arange(0.0, 1.0, 0.2):
        sel = (conf >= lo) & ((conf < lo + 0.2) | (lo >= 0.8))
        if sel.any():
            rows.append({"bin": f"{lo:.1f}-{lo + 0.2:.1f}", "hits": int(sel.sum()),
                         "confidence": round(float(conf[sel].mean()), 3),
                         "relevant": round(float(rel[sel].mean()), 3)})
    return rows


#: the settings compared when choosing the learner's defaults (``--choose``)
CHOICES = [{"prior_alpha": a, "proj_scale": p, "lam": lam}
           for a in (0.0, 0.25, 0.75, 1.5) for p in (4.0, 8.0, 16.0) for lam in (0.1, 0.3, 1.0)]


def choose(index_dirs: list[str]) -> None:
    """Print [first, first without marked, round 1, round 1 without marked, round 2] per
    setting of :data:`CHOICES` and index (the simulated analyst, features in RAM)."""
    import dataclasses

    from model_runtime.feedback import FitOptions

    rt = Pipeline()
    grid = [dataclasses.replace(FitOptions(), **c) for c in CHOICES]
    for index_dir in index_dirs:
        for c, r in zip(CHOICES, simulate(rt, index_dir, grid), strict=True):
            print(index_dir, c, np.round(r, 3).tolist(), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", action="append", required=True)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    add_phrasing_option(parser)
    parser.add_argument("--choose", action="store_true",
                        help="compare the learner's settings (CHOICES) instead")
    args = parser.parse_args(argv)
    if args.choose:
        choose(args.index)
        return
    results = []
    for phrasing in phrasings(args):
        for index_dir in args.index:
            res = evaluate(index_dir, phrasing)
            label = phrasing_label(index_dir, phrasing)
            if phrasing != DEFAULT_PHRASING:
                res["phrasing"] = PHRASINGS[phrasing]
            results.append(res)
            first = res["mean"]["learner"][0]
            goal = first + 0.25 * (1 - first)
            print(f"{label}: {res['classes']} classes, {res['tiles']} tiles; goal {goal:.3f}")
            print_means(res["mean"])
            print_reliability(res["reliability"])
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


def add_phrasing_option(parser: argparse.ArgumentParser) -> None:
    """``--phrasing NAME`` (repeatable): which :data:`PHRASINGS` the analyst types."""
    parser.add_argument("--phrasing", action="append", choices=sorted(PHRASINGS),
                        help=f"how the scene is typed (repeatable; default {DEFAULT_PHRASING}): "
                        + "; ".join(f"{k}: {v!r}" for k, v in PHRASINGS.items()))


def phrasings(args: argparse.Namespace) -> list[str]:
    """The phrasings asked for, in order, each once; the default one when none is."""
    return list(dict.fromkeys(args.phrasing or [DEFAULT_PHRASING]))


def phrasing_label(name: str, phrasing: str) -> str:
    """``name``, followed by the phrasing's template unless it is the default one."""
    return name if phrasing == DEFAULT_PHRASING else f"{name} [{PHRASINGS[phrasing]!r}]"


def print_means(means: dict[str, list[float]]) -> None:
    """One line per ranking: first search, rounds 1 and 2, and not searching again."""
    for name, (f, k1, r1, k2, r2) in means.items():
        print(f"  {name:<13} first {f:.3f}  round 1 {r1:.3f} (first without marked "
              f"{k1:.3f})  round 2 {r2:.3f} (round 1 without marked {k2:.3f})", flush=True)


def print_reliability(rows: list[dict]) -> None:
    """The confidence bins of :func:`reliability_table`, one line each."""
    for row in rows:
        print(f"  confidence {row['bin']}: {row['hits']} hits, mean {row['confidence']:.2f}"
              f", relevant {row['relevant']:.2f}")



# --- choosing the learner's settings (fast: features in RAM, no collapse, no store reads) -----
def simulate(rt: Pipeline, index_dir: str, options: list, rounds: int = 2) -> list[np.ndarray]:
    """Mean [first, round 1, round 2] over scene types for each ``FitOptions`` in ``options``,
    scoring every tile directly (the product's ranking with ``collapse=False``)."""
    from model_runtime.feedback import Prior
    from model_runtime.services import refine

    labels = labels_of(rt, index_dir)
    index, _ = rt.indexes.open(index_dir)
    blocks = index.feature_blocks()
    cls_of = np.array([labels[int(i)] for i in blocks.ids])
    model = rt.models.get(rt.indexes.open(index_dir)[1])
    results = []
    for opts in options:
        rows = []
        for cls in sorted(set(labels.values())):
            q = model.encode_texts([PHRASINGS[DEFAULT_PHRASING].format(scene=scene(cls))])[0]
            prior = Prior(tanh=q / np.linalg.norm(q))
            order = np.argsort(-(blocks.tanh @ prior.tanh), kind="stable")
            rel = cls_of == cls
            out = [average_precision(rel[order].tolist(), int(rel.sum()))]
            marked: list[int] = []
            for _ in range(rounds):
                marked += [int(r) for r in order[:MARKS]]
                kept = order[~np.isin(order, marked)]
                out.append(average_precision(rel[kept].tolist(), int(rel[marked].sum() * -1
                                                                     + rel.sum())))
                pos = [int(blocks.ids[r]) for r in marked if rel[r]]
                neg = [int(blocks.ids[r]) for r in marked if not rel[r]]
                fit = refine.fit_marks(index, prior, pos, neg, opts)
                dec = blocks.linear(fit.full.bias, fit.full.w_tanh, fit.full.w_proj).astype(
                    np.float64)
                dec[marked] = -np.inf
                order = np.argsort(-dec, kind="stable")[: len(dec) - len(marked)]
                out.append(average_precision(rel[order].tolist(), int(rel.sum()) - len(pos)))
            rows.append(out)
        results.append(np.nanmean(np.array(rows), axis=0))
    return results


if __name__ == "__main__":
    main()
