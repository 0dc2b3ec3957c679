"""Feature extraction throughput: images/s of the frozen image encoder and sentences/s of the
text encoder on this machine, over real UCM images and captions (``--n`` of them).

Baseline in the same run: the bare forward pass on pre-decoded, pre-resized tensors, so the table
shows what decoding and resizing (overlapped in a reader thread) cost on top.

    .venv/bin/python bench/bench_features.py [--n 512] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from model_runtime.data.datasets import load_ucm
from model_runtime.encoders import load_encoder, read_image
from model_runtime.features import encode_dataset_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--device", default=None)
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()

    ds = load_ucm(args.data_root)
    sub = dataclasses.replace(ds, items=ds.items[: args.n])
    enc = load_encoder(device=args.device)
    enc.encode_images([np.zeros((256, 256, 3), np.uint8)] * 8)  # warm-up

    pixels = enc.preprocess([read_image(it.image) for it in sub.items[:64]])
    t0 = time.perf_counter()
    reps = max(1, args.n // 64)
    for _ in range(reps):
        enc.encode_pixels(pixels)
    bare = reps * 64 / (time.perf_counter() - t0)

    _, pipeline = encode_dataset_images(enc, sub, progress=False)

    captions = sorted({c for it in sub.items for c in it.captions})
    t0 = time.perf_counter()
    enc.encode_texts(captions)
    texts = len(captions) / (time.perf_counter() - t0)

    print(f"device: {enc.device}; {len(sub)} UCM images, {len(captions)} unique captions")
    print(f"{'stage':<40} {'per second':>12} {'ratio':>7}")
    print(f"{'image encoder, bare forward (baseline)':<40} {bare:>12.1f} {1.0:>7.2f}")
    print(f"{'images: decode + resize + encode':<40} {pipeline:>12.1f} {pipeline / bare:>7.2f}")
    print(f"{'captions: tokenize + encode':<40} {texts:>12.1f} {'':>7}")


if __name__ == "__main__":
    main()
