"""Text->image on scene sets the heads never saw: how much is the recipe, how much the seed? (issue 19.2)

    nice -n 10 .venv/bin/python -m research.unseen_text [--seeds 4] [--bits 64]

Two measurements on cached features (EuroSAT RGB and the RSI-CB256 samples, 8 plain prompt
templates per class, mAP@ALL with every image ranked by the tanh cosine, and with the product's
100-tile Hamming shortlist):

1. **Seed spread**: the first release's recipe (image head on the features) and the shipped one
   (image head on the stored 256-d projection), each trained on UC Merced's ``split_duch``
   training images with seeds 0..n-1 (no augmented views; 15-30 s each).
2. **Projection-reading students of the first release's heads**: the first release's text head
   with an image head that reads a stored projection of ``dims`` axes, its first layer folded
   from the first release's image head through the projection's right inverse (``p -> W (G p +
   mean)``; exact when no axis is truncated). The image head has to read the projection for
   ``cach adapt`` to re-hash an index without the encoder.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Sequence

import numpy as np

from research.unseen_scenes import ROUND1, prompts_for, scene_features, t2i

SETS = ("eurosat_rgb", "rsicb256_sample")


def scene_prompts(enc) -> dict:
    """Per scene set: (image features, labels, prompt features)."""
    out = {}
    for name in SETS:
        feats, labels, classes = scene_features(name)
        out[name] = (feats, labels, prompts_for(classes, enc))
    return out


def text_scores(heads, scenes: dict) -> dict[str, tuple[float, float]]:
    """Per set: (T->I every image ranked, T->I with the 100-tile shortlist)."""
    out = {}
    for name, (feats, labels, prompts) in scenes.items():
        r = t2i(heads, feats, labels, prompts, {})
        out[name] = (round(r["product_all"], 4), round(r["product"], 4))
    return out


def seed_spread(feats, scenes: dict, seeds: int, bits: int) -> dict[str, dict]:
    from research.hashing.unseen import train_without
    from research.unseen_report import recipe_config

    rows = {}
    for recipe in ("today", "proj"):
        for seed in range(seeds):
            heads = train_without(feats, np.array([], int), seed, bits, recipe_config(recipe))
            rows[f"{recipe}/{seed}"] = text_scores(heads, scenes)
            print(recipe, seed, rows[f"{recipe}/{seed}"], flush=True)
    return rows


def student(first, mean: np.ndarray, matrix: np.ndarray):
    """The first release's heads with an image head reading the projection ``(mean, matrix)``."""
    import torch

    from model_runtime.model.torch_heads import HashHeads

    heads = HashHeads(first.image_dim, first.text_dim, first.bits, first.hidden,
                      proj_dim=matrix.shape[1])
    heads.text_head.load_state_dict(first.text_head.state_dict())
    with torch.no_grad():
        heads.image_proj.mean.copy_(torch.from_numpy(mean))
        heads.image_proj.matrix.copy_(torch.from_numpy(matrix))
        recon, layer = heads.image_proj.right_inverse(), first.image_head[0]
        heads.image_head[0].weight.copy_(layer.weight @ recon)
        heads.image_head[0].bias.copy_(layer.bias + layer.weight @ heads.image_proj.mean)
        for i in range(1, len(first.image_head)):
            heads.image_head[i].load_state_dict(first.image_head[i].state_dict())
    return heads.eval()


def students(feats, scenes: dict, dims: Sequence[int], bits: int) -> dict[str, dict]:
    from model_runtime.hashing.heads_io import load_heads, shipped_heads_path
    from model_runtime.hashing.projection import fit_projection

    first = load_heads(ROUND1 / shipped_heads_path(bits).name, expect_bits=bits).float().eval()
    shipped = load_heads(shipped_heads_path(bits), expect_bits=bits).float().eval()
    proj = copy.deepcopy(shipped.image_proj)
    heads = {"first release": first, "shipped": shipped,
             "student, the shipped projection": student(first, proj.mean.numpy(),
                                                        proj.matrix.numpy())}
    train = feats.split_duch == "train"
    views = np.concatenate([feats.image[train],
                            feats.image_aug[train].reshape(-1, feats.image.shape[1])])
    for dim in dims:
        heads[f"student, {dim} axes"] = student(first, *fit_projection(views, dim, whiten=0.5))
    return {name: {**text_scores(h, scenes), "ucm": ucm_table(h, feats)}
            for name, h in heads.items()}


def ucm_table(heads, feats) -> dict[str, float]:
    """mAP@20 (DUCH) per direction on UC Merced's ``split_duch``, float32 weights."""
    from model_runtime.hashing.protocols import eval_duch

    return {r["direction"]: round(r["map20_duch"], 4) for r in eval_duch(heads, feats)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.unseen_text", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--dims", type=int, nargs="+", default=[384, 512, 768])
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    from model_runtime.encoders import load_encoder
    from model_runtime.features import ucm_features

    feats = ucm_features(augment=True, progress=False)
    scenes = scene_prompts(load_encoder(device="cpu"))
    rows = {"seeds": seed_spread(feats, scenes, args.seeds, args.bits),
            "students": students(feats, scenes, args.dims, args.bits)}
    for name, r in rows["students"].items():
        print(name, r, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
