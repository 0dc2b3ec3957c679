"""The simulated analyst (``research/refine_eval.py``) on UC Merced's held-out-class sets.

For each of the 4 disjoint sets of 5 classes of the unseen-class protocol
(``research/hashing/unseen.py``), 64-bit heads are trained with the shipped recipe on the
training images of the other 16 classes only (``research/calibration.py`` trains and caches
them), the 1,050 images outside the training split are indexed with those heads through the
product (``Pipeline.index``), and the analyst searches for each held-out class: its images are
scene types the heads never saw.

    nice -n 10 .venv/bin/python -m research.refine_heldout --images DIR --work DIR \
        [--phrasing bare --phrasing satellite] [--out FILE]

``--images``: a folder of the 1,050 non-training images in class folders (symbolic links are
fine). ``--phrasing`` (repeatable) as in ``research/refine_eval.py``. Costs: UC Merced
features with augmented views (once, cached), 4 heads trainings (cached), 4 index builds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from model_runtime.pipeline import Pipeline
from model_runtime.protocol import IndexRequest
from research.refine_eval import (
    DEFAULT_PHRASING,
    PHRASINGS,
    add_phrasing_option,
    labels_of,
    one_class,
    phrasings,
    print_means,
    reliability_table,
)

BITS = 64


def heldout_heads() -> list[tuple[list[str], Path]]:
    """(held-out class names, heads file) per set, training what is not cached yet."""
    from model_runtime.data.datasets import load_ucm
    from model_runtime.features import ucm_features
    from model_runtime.model.heads import read_heads
    from model_runtime.paths import cache_dir
    from research.calibration import held_out_heads, held_out_sets
    from research.hashing import benchmark as B

    feats = ucm_features(None, augment=True, progress=False)
    classes = load_ucm(None).classes
    tag = B.features_tag(feats)
    out = []
    for unseen in held_out_sets(feats):
        held_out_heads(feats, unseen, BITS, tag)
        want = sorted(int(c) for c in unseen)
        path = next(p for p in sorted((cache_dir() / "calibration").glob(f"heads-{BITS}-*"))
                    if sorted((read_heads(p).meta.get("extra") or {}).get("held_out", []))
                    == want)
        out.append(([classes[c] for c in want], path))
    return out


def evaluate_set(names: list[str], heads: Path, images: str, index_dir: Path,
                 phrasing: str = DEFAULT_PHRASING) -> dict:
    """Both rankings for each held-out class, on ``images`` indexed with ``heads``."""
    rt = Pipeline(heads=heads)
    if not (index_dir / "index.sqlite").exists():
        rt.index(IndexRequest(str(index_dir), paths=(str(images),),
                              allow_outside_sources=True))
    labels = labels_of(rt, str(index_dir))
    table: dict[str, dict[str, list[float]]] = {}
    pairs: list = []
    for learn, name in ((False, "weighted sum"), (True, "learner")):
        table[name] = {c: one_class(rt, str(index_dir), labels, c, learn, pairs, phrasing)
                       for c in names}
    rt.close()
    return {"classes": names, "heads": heads.name, "per_class": table,
            "mean": {n: np.nanmean(list(r.values()), axis=0).round(3).tolist()
                     for n, r in table.items()},
            "reliability": reliability_table(pairs)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--work", required=True, help="folder for the 4 indexes")
    parser.add_argument("--out", default=None)
    add_phrasing_option(parser)
    args = parser.parse_args(argv)
    results = []
    sets = heldout_heads()
    for phrasing in phrasings(args):
        for i, (names, heads) in enumerate(sets):
            res = evaluate_set(names, heads, args.images, Path(args.work) / f"set{i}", phrasing)
            label = f"set {i} {names}"
            if phrasing != DEFAULT_PHRASING:
                res["phrasing"] = PHRASINGS[phrasing]
                label += f" [{PHRASINGS[phrasing]!r}]"
            results.append(res)
            first = res["mean"]["learner"][0]
            print(f"{label}: goal {first + 0.25 * (1 - first):.3f}", flush=True)
            print_means(res["mean"])
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
