"""Inference engines side by side: speed of the bare image forward, text encoding, load time,
first export, and bit agreement with torch (UCM test images, sample-raster tiles, captions).

    .venv/bin/python bench/bench_engines.py                        # fp32 engines + int8
    .venv/bin/python bench/bench_engines.py --variants onnx,openvino:bf16 --bits 64 128

Baseline in the same run: the bare torch forward of the image tower (channels_last, batch 32,
all cores), the figure the issue measures against. Every rate is the median of ``--repeat``
runs. A variant whose graphs are not cached yet is exported first; that time is reported
apart ("first export") and is not part of "load".
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tables import table  # noqa: E402  (bench/ runs as scripts)

from model_runtime.env import configure_process  # noqa: E402

BATCH = 32
DEFAULT_VARIANTS = "torch,onnx,onnx:int8,openvino,openvino:bf16,openvino:int8"


def median_rate(run, n: int, repeat: int) -> float:
    """Median items/s of ``run()`` (which processes ``n`` items) over ``repeat`` runs."""
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def bare_torch_forward(pixels: np.ndarray, repeat: int) -> float:
    """img/s of the torch image tower alone: float NCHW channels_last, batch 32, all cores."""
    import torch

    from model_runtime.config import get_backbone_config
    from model_runtime.model.torch_model import shared_encoder

    visual = shared_encoder(get_backbone_config("effnetlite0-minilm"), "cpu").model.visual
    visual = visual.to(memory_format=torch.channels_last)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    batches = [x[i : i + BATCH].contiguous(memory_format=torch.channels_last)
               for i in range(0, len(x), BATCH)]
    with torch.inference_mode():
        visual(batches[0])

        def run() -> None:
            for b in batches:
                visual(b)

        return median_rate(run, len(x), repeat)


def bare_model_forward(model, pixels: np.ndarray, repeat: int) -> float:
    """img/s of a HashModel's image path (graph incl. heads) on ready uint8 batches of 32."""
    batches = [pixels[i : i + BATCH] for i in range(0, len(pixels), BATCH)]
    model.encode_images(batches[0])

    def run() -> None:
        for b in batches:
            model.encode_images(b)

    return median_rate(run, len(pixels), repeat)


def bare_model_lanes(model, pixels: np.ndarray, repeat: int) -> float:
    """img/s of a HashModel's image path with every encoder lane kept busy: batches of 32
    through ``submit_images``, ``lanes + 1`` in flight (as the index builder runs them)."""
    batches = [pixels[i : i + BATCH] for i in range(0, len(pixels), BATCH)]
    model.encode_images(batches[0])

    def run() -> None:
        pending = []
        for b in batches:
            pending.append(model.submit_images(b))
            if len(pending) > model.lanes:
                pending.pop(0).result()
        for f in pending:
            f.result()

    return median_rate(run, len(pixels), repeat)


def inputs(n_texts: int) -> dict:
    from model_runtime.data.datasets import load_ucm
    from model_runtime.model.pixels import load_pixels
    from model_runtime.paths import SAMPLES_DIR
    from model_runtime.raster.tiling import TilingOptions, iter_tiles

    items = [it for it in load_ucm().items if it.split("official") == "test"]
    tiles = [rgb for p in sorted(SAMPLES_DIR.glob("*.tif")) for rgb, _ in iter_tiles(p, TilingOptions())]
    texts = sorted({c for it in items for c in it.captions})
    return {"ucm": load_pixels([it.image for it in items], 224), "tiles": np.stack(tiles),
            "texts": texts[:n_texts]}


def outputs(model, data: dict) -> dict:
    return {"ucm": model.encode_images(data["ucm"]).tanh,
            "tiles": model.encode_images(data["tiles"]).tanh,
            "texts": model.encode_texts(data["texts"])}


def agree(a: np.ndarray, b: np.ndarray) -> str:
    return f"{np.mean((a > 0) == (b > 0)):.2%}"


def measure(variant: str, bits: int, data: dict, ref: dict, repeat: int) -> list:
    from model_runtime.model import load_model

    backend, _, precision = variant.partition(":")
    start = time.perf_counter()
    model = load_model(backend=backend, bits=bits, precision=precision or None)
    model.warm_up()
    export_s = getattr(model, "first_export_s", None)
    load_s = time.perf_counter() - start - (export_s or 0.0)
    img = bare_model_forward(model, data["ucm"][:96], repeat)
    txt = median_rate(lambda: model.encode_texts(data["texts"]), len(data["texts"]), repeat)
    got = outputs(model, data)
    name = f"{model.backend} {model.precision}"
    return [name, bits, f"{img:.1f}", f"{txt:.0f}", f"{load_s:.2f}",
            "cached" if export_s is None else f"{export_s:.1f}",
            agree(got["ucm"], ref["ucm"]), agree(got["tiles"], ref["tiles"]),
            agree(got["texts"], ref["texts"])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help="backend[:precision],...")
    ap.add_argument("--bits", type=int, nargs="+", default=[64])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--texts", type=int, default=256)
    args = ap.parse_args(argv)
    configure_process()
    from model_runtime.model import load_model

    data = inputs(args.texts)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{len(data['ucm'])} UCM test images, {len(data['tiles'])} tiles, "
          f"{len(data['texts'])} captions", flush=True)
    baseline = bare_torch_forward(data["ucm"][:96], args.repeat)
    rows = [["torch image tower, bare forward (baseline)", "-", f"{baseline:.1f}", "-", "-", "-",
             "-", "-", "-"]]
    for bits in args.bits:
        ref = outputs(load_model(backend="torch", bits=bits), data)
        for variant in args.variants.split(","):
            try:
                rows.append(measure(variant, bits, data, ref, args.repeat))
            except Exception as err:  # noqa: BLE001 - one failing engine must not hide the rest
                rows.append([variant, bits, f"failed: {err}"[:60], "", "", "", "", "", ""])
            print(f"  {variant} {bits} bits done", file=sys.stderr, flush=True)
    for row in rows[1:]:
        if row[2].replace(".", "").isdigit():
            row[2] += f" ({float(row[2]) / baseline:.1f}x)"
    table(f"engines, image batch {BATCH}, median of {args.repeat}; bits agreeing with torch",
          ["engine", "bits", "img/s (vs baseline)", "texts/s", "load s", "first export s",
           "UCM test", "sample tiles", "captions"], rows)
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (noisy when above the core count)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
