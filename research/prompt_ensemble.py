"""Prompt ensembling for text->image (issue 19.2): one query made of the 8 plain templates of a
class (the mean of their normalised tanh outputs, or of their frozen text features before the
head) against each template alone. Cached features of ``research.unseen_scenes``; the product's
ranking (Hamming pool + tanh cosine re-rank), 64 bits; docs/unseen.md has the table.

    nice -n 10 .venv/bin/python -m research.prompt_ensemble
"""

import json

import numpy as np

from model_runtime.hashing import metrics as M
from model_runtime.index.query import RERANK_POOL
from research.unseen_scenes import ROUND1, SETS, _map, _neg_cos, prompts_for, scene_features


def t2i_ens(heads, frozen, lab, prompts) -> dict:
    """mAP of the single templates (mean, first) and of the two ensembles."""
    img = heads.encode_image_np(frozen)
    n_cls, n_tpl, dt = prompts.shape
    q = heads.encode_text_np(prompts.reshape(-1, dt)).reshape(n_cls, n_tpl, -1)
    rel = np.arange(n_cls)[:, None] == lab[None, :]
    single = []
    for t in range(n_tpl):
        qt = q[:, t]
        ham = M.hamming_distance(qt, img)
        single.append(_map(M.rerank_distances(ham, _neg_cos(qt, img), RERANK_POOL), rel))
    qn = q / np.linalg.norm(q, axis=-1, keepdims=True)
    qe = qn.mean(1)
    ham = M.hamming_distance(qe, img)
    ens = _map(M.rerank_distances(ham, _neg_cos(qe, img), RERANK_POOL), rel)
    # feature-side ensemble: mean of frozen text features, then the head
    pe = prompts / np.linalg.norm(prompts, axis=-1, keepdims=True)
    qf = heads.encode_text_np(pe.mean(1))
    ham = M.hamming_distance(qf, img)
    ensf = _map(M.rerank_distances(ham, _neg_cos(qf, img), RERANK_POOL), rel)
    return {"single_mean": float(np.mean(single)), "single_first": float(single[0]),
            "ens_out": ens, "ens_feat": ensf}

def main() -> None:
    from model_runtime.encoders import load_encoder
    from model_runtime.hashing.heads_io import load_heads, shipped_heads_path
    enc = load_encoder(device="cpu")
    for name in SETS:
        frozen, lab, classes = scene_features(name, enc)
        prompts = prompts_for(classes, enc)
        for tag, path in (("round1", ROUND1 / shipped_heads_path(64).name), ("today", shipped_heads_path(64))):
            heads = load_heads(path, expect_bits=64)
            print(name, tag, json.dumps({k: round(v, 4) for k, v in t2i_ens(heads, frozen, lab, prompts).items()}), flush=True)
    # UCM held-out sets
    from model_runtime.data.datasets import load_ucm
    from model_runtime.features import ucm_features
    from research import calibration as R
    from research.hashing import unseen as U
    from research.hashing.benchmark import features_tag
    feats = ucm_features(progress=False)
    names = load_ucm().classes
    for i, s in enumerate(U.heldout_sets(feats.class_id)):
        heads = R.held_out_heads(feats, s, 64, features_tag(feats))
        idx = np.flatnonzero(np.isin(feats.class_id, s))
        frozen, lab = feats.image[idx], np.searchsorted(s, feats.class_id[idx])
        prompts = U.prompt_features(names, s, enc.encode_texts)
        print("ucm_set", i, json.dumps({k: round(v, 4) for k, v in t2i_ens(heads, frozen, lab, prompts).items()}), flush=True)


if __name__ == "__main__":
    main()
