"""How well can any weak-match rule tell present from absent unseen scene types? (issue 19.1)

    nice -n 10 .venv/bin/python -m research.weak_bound --indexes DIR [--bits 64 128]

On the searches of ``research.calibration_scenes`` (same indexes, same cache): every text query
is run with its scene type PRESENT in the archive and ABSENT (its tiles removed). When none of a
present search's best N hits shows the type, removing the type's tiles leaves those N hits as
they were: a rule that reads the query and the best N hits (the product's reads the best 10,
plus the archive's background sample, which loses a few tiles) sees the same thing in both
searches of the pair and gives both the same verdict. With ``f`` the share of present searches
that found nothing in their best N, a rule firing on at least half of the absent searches must
fire on at least ``f - 0.5`` of the present ones (the absent twins of the other present
searches are only ``1 - f`` of the absent searches). The script measures ``f``, checks that the
pairs' inputs are the same (largest difference of any hit feature between twins), and counts
how often the shipped rule's out-of-fold verdicts agree within pairs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model_runtime import confidence as C
from research import calibration as R
from research import calibration_scenes as S

TOPS = (5, 10, 20)
#: the hit features that do not read the archive's background sample
HIT_ONLY = ("logit", "ref_margin", "query_saturation")


def twins(batch: R.Batch) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(present, absent)`` of each query's two searches (stored one after the
    other by ``search_all``/``run_queries``)."""
    info = batch.info
    present = np.flatnonzero(info[:, R.INFO.index("absent")] == 0)
    absent = present + 1
    same = np.all(info[present][:, :3] == info[absent][:, :3], axis=1)
    assert same.all() and (info[absent, R.INFO.index("absent")] == 1).all()
    return present, absent


def pair_table(batch: R.Batch, weak: np.ndarray, mask: np.ndarray) -> dict:
    """For the pairs of ``mask`` (a mask over present rows): ``f`` per N, the bound, the
    inputs' difference and the verdicts' agreement where nothing was found in the best 10."""
    present, absent = twins(batch)
    keep = mask[present]
    p, a = present[keep], absent[keep]
    out: dict = {"pairs": int(len(p))}
    for n in TOPS:
        missed = batch.rel[p, :n].sum(axis=1) == 0
        out[f"f{n}"] = float(missed.mean()) if len(p) else float("nan")
        out[f"bound{n}"] = max(0.0, out[f"f{n}"] - 0.5)
    missed = batch.rel[p, :10].sum(axis=1) == 0
    cols = [C.FEATURES.index(f) for f in HIT_ONLY]
    diff = np.abs(batch.X[p][:, :10][:, :, cols] - batch.X[a][:, :10][:, :, cols]).max(axis=(1, 2))
    out["max_diff_missed"] = float(diff[missed].max()) if missed.any() else float("nan")
    out["agree_missed"] = float((weak[p] == weak[a])[missed].mean()) if missed.any() else 1.0
    out["fires_present"], out["fires_absent"] = float(weak[p].mean()), float(weak[a].mean())
    return out


def report(bits: int, indexes: Path, data_root: str | None) -> dict[str, dict]:
    refs = R.reference_captions(data_root)
    batch = S.cached_batch(bits, indexes, refs, R.TextFeatures("effnetlite0-minilm"), data_root)
    rule = C.load_rule(bits)
    weak = S.cross_fit(batch, rule.features, bits, refs).weak
    pops = {"unseen types": batch.col("set") > 0}
    pops.update({S.SET_NAMES[n]: batch.col("set") == n for n in (1, 2, 3)})
    pops["seen types (UCM)"] = batch.col("set") == 0
    return {name: pair_table(batch, weak, m & ~batch.absent) for name, m in pops.items()}


def _num(x: float) -> str:
    return "–" if np.isnan(x) else f"{x:.2g}"  # no pair found nothing: nothing to compare


def markdown(results: dict[int, dict[str, dict]]) -> str:
    head = ("| bits | searches | pairs | nothing found, best 5 / 10 / 20 | least firing on present "
            "if >= 50 % of absent (best 10 read) | hit features, largest twin difference | "
            "shipped rule: same verdict on twins | fires present / absent |")
    lines = [head, "|" + " --- |" * 8]
    for bits, rows in results.items():
        for name, r in rows.items():
            lines.append(
                f"| {bits} | {name} | {r['pairs']} | {r['f5']:.0%} / {r['f10']:.0%} / "
                f"{r['f20']:.0%} | {r['bound10']:.0%} | {_num(r['max_diff_missed'])} | "
                f"{r['agree_missed']:.0%} | {r['fires_present']:.0%} / {r['fires_absent']:.0%} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = S.scene_parser("python -m research.weak_bound", __doc__).parse_args(argv)
    print(markdown({b: report(b, Path(args.indexes), args.data_root) for b in args.bits}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
