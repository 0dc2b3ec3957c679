"""The third release's 64- and 128-bit heads: the first release's heads with the second's
projection stored beside them (issue 19.2; docs/unseen.md, "The third release's heads").

    .venv/bin/python -m research.release3 [--bits 64 128]

For each bit length: the second release's heads file moves to ``resources/heads/archive/round2/``
(indexes built with it still open and search with it), and the new file holds the first
release's image and text heads unchanged (``image_input = features``: the image head reads the
L2-normalised features, as it was trained) plus the second release's 256-d projection, which
every index stores per tile for image re-ranking and ``cach adapt`` folds the image head onto.
Text search is then the first release's exactly; image search re-ranks by the archive-centred
projection as before. The calibration file gets the archived heads' rule (kept for their
indexes) and the new heads' reference vectors (their text head is the first release's), and the
caption bank's shipped codes are the first release's (``text_head_from``: same text head,
same codes). Run
``research.calibration_scenes`` afterwards to fit the new heads' weak-match rule.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from model_runtime.paths import HEADS_DIR, sha256_file

ROUND1 = HEADS_DIR / "archive" / "round1"
ROUND2 = HEADS_DIR / "archive" / "round2"


def third_heads(bits: int, projection_from: Path):
    """The first release's ``bits``-bit heads reading the features, with the projection of
    ``projection_from`` (torch ``HashHeads``)."""
    import dataclasses

    import torch

    from model_runtime.hashing.heads_io import load_heads
    from model_runtime.hashing.train import TrainConfig
    from model_runtime.model.torch_heads import HashHeads

    first = load_heads(ROUND1 / projection_from.name, expect_bits=bits)
    second = load_heads(projection_from, expect_bits=bits)
    heads = HashHeads(first.image_dim, first.text_dim, bits, first.hidden,
                      proj_dim=second.proj_dim, image_input="features")
    state = {**first.state_dict(),
             **{k: v for k, v in second.state_dict().items() if k.startswith("image_proj.")}}
    with torch.no_grad():
        heads.load_state_dict(state)
    extra = {**first.meta["extra"], "train_config": dataclasses.asdict(TrainConfig()),
             "text_head_from": sha256_file(ROUND1 / projection_from.name),
             "projection_from": sha256_file(projection_from)}
    return heads.eval(), extra


def release(bits: int) -> Path:
    """Archive the second release's file, write the third's; returns the new file."""
    from model_runtime.hashing.heads_io import save_heads, shipped_heads_path

    current = shipped_heads_path(bits)
    archived = ROUND2 / current.name
    if not archived.exists():
        ROUND2.mkdir(parents=True, exist_ok=True)
        shutil.copy2(current, archived)
    heads, extra = third_heads(bits, archived)
    save_heads(heads, current, "cach", "effnetlite0-minilm", extra=extra)
    return current


def calibration_entries(bits_list: Sequence[int]) -> None:
    """The archived heads keep the rule they were fitted with; the new ones get their text
    head's reference vectors (the bit length's rule is refitted by calibration_scenes)."""
    import json

    from model_runtime import confidence as C
    from model_runtime.hashing.heads_io import load_heads, shipped_heads_path
    from research import calibration as R

    doc = C.read_calibration()
    text_feats = R.TextFeatures("effnetlite0-minilm")(doc["references"])
    for bits in bits_list:
        archived, new = ROUND2 / shipped_heads_path(bits).name, shipped_heads_path(bits)
        old = doc["by_sha"].pop(sha256_file(archived), None) or {}
        doc["by_sha"][sha256_file(archived)] = {
            **old, "bits": bits, "file": f"archive/round2/{archived.name}",
            "rule": old.get("rule") or json.loads(json.dumps(doc["by_bits"][str(bits)])),
            "references": old.get("references") or list(doc["references"])}
        vecs = load_heads(new, expect_bits=bits).encode_text_np(text_feats)
        doc["by_sha"][sha256_file(new)] = {"bits": bits, "file": new.name,
                                            "reference_vectors": C.encode_vectors(vecs)}
    present = {sha256_file(p) for p in HEADS_DIR.rglob("*.safetensors")}
    doc["by_sha"] = {sha: e for sha, e in doc["by_sha"].items() if sha in present}
    R.write_json(C.CALIBRATION_FILE, doc)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.release3", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bits", type=int, nargs="+", default=[64, 128])
    args = p.parse_args(argv)
    for bits in args.bits:
        print(release(bits))
    calibration_entries(args.bits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
