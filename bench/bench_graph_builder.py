"""The torch-free graph builder against the torch export, on the full sets of issue 15.

    .venv/bin/python bench/bench_graph_builder.py                 # outputs + cach eval
    .venv/bin/python bench/bench_graph_builder.py --skip-eval     # outputs only (~2 min)

Outputs: for each shipped bit length, both builders' graphs run on ONNX Runtime over the 210 UCM
test images (official split), every 224 px tile of the sample rasters and 256 UCM captions.
Reported: the largest absolute difference of ``tanh`` and ``proj``, sign flips where torch's
output is farther than 1e-4 from zero (must be 0), and flips where it is within 1e-4 of zero
(allowed, counted). Then ``cach eval --dataset ucm --backend onnx`` runs once per builder
(``CACH_GRAPH_BUILDER``, each in its own empty graph cache) and every cell is compared (goal:
within .002). Build times are in the first table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tables import table  # noqa: E402  (bench/ runs as scripts)

NEAR_ZERO = 1e-4
CAPTIONS = 256


def inputs() -> dict:
    from model_runtime.data.datasets import load_ucm
    from model_runtime.model.pixels import load_pixels
    from model_runtime.paths import SAMPLES_DIR
    from model_runtime.raster.tiling import TilingOptions, iter_tiles

    items = [it for it in load_ucm().items if it.split("official") == "test"]
    tiles = [rgb for path in sorted(SAMPLES_DIR.glob("*.tif"))
             for rgb, _ in iter_tiles(path, TilingOptions(output_size=224))]
    captions = sorted({c for it in load_ucm().items for c in it.captions})
    picks = np.linspace(0, len(captions) - 1, CAPTIONS).round().astype(int)
    return {"ucm": load_pixels([it.image for it in items], 224), "tiles": np.stack(tiles),
            "captions": [captions[i] for i in picks]}


def build_both(bits: int, folder: Path) -> tuple[dict, float, float]:
    import onnxruntime as ort

    from model_runtime.config import get_backbone_config
    from model_runtime.model.export import export_onnx
    from model_runtime.model.heads import shipped_heads
    from model_runtime.model.onnx_build import build_onnx
    from model_runtime.model.tokenizer import TextTokenizer

    cfg = get_backbone_config("effnetlite0-minilm")
    heads = shipped_heads(cfg.name, bits)
    (folder / "numpy").mkdir()
    (folder / "torch").mkdir()
    start = time.perf_counter()
    build_onnx(cfg, heads, folder / "numpy")
    numpy_s = time.perf_counter() - start
    start = time.perf_counter()
    export_onnx(cfg, heads, folder / "torch", TextTokenizer(cfg))
    torch_s = time.perf_counter() - start
    sessions = {(b, n): ort.InferenceSession(str(folder / b / f"{n}.onnx"),
                                             providers=["CPUExecutionProvider"])
                for b in ("numpy", "torch") for n in ("image", "text")}
    return sessions, numpy_s, torch_s


def compare(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, int, int]:
    flips = (ours > 0) != (theirs > 0)
    near = np.abs(theirs) <= NEAR_ZERO
    return float(np.abs(ours - theirs).max()), int((flips & ~near).sum()), int((flips & near).sum())


def output_rows(data: dict, bits: int) -> list[list]:
    from model_runtime.config import get_backbone_config
    from model_runtime.model.tokenizer import TextTokenizer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sessions, numpy_s, torch_s = build_both(bits, Path(tmp))
        for part in ("ucm", "tiles"):
            feeds = {"pixels": data[part]}
            ours = sessions["numpy", "image"].run(None, feeds)
            theirs = sessions["torch", "image"].run(None, feeds)
            (d, bad, near), (dp, _, _) = compare(ours[0], theirs[0]), compare(ours[1], theirs[1])
            rows.append([bits, part, len(data[part]), f"{d:.2e}", f"{dp:.2e}", bad, near,
                         f"{numpy_s:.1f} / {torch_s:.1f}"])
        ids, mask = TextTokenizer(get_backbone_config("effnetlite0-minilm"))(data["captions"])
        feeds = {"input_ids": ids, "attention_mask": mask}
        d, bad, near = compare(sessions["numpy", "text"].run(None, feeds)[0],
                               sessions["torch", "text"].run(None, feeds)[0])
        rows.append([bits, "captions", len(data["captions"]), f"{d:.2e}", "-", bad, near, ""])
    return rows


def run_eval(builder: str) -> tuple[list[dict], float]:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "CACH_GRAPH_BUILDER": builder, "CACH_CACHE": cache}
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "model_runtime", "eval", "--dataset", "ucm",
                              "--backend", "onnx", "--json"], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
    return json.loads(out.stdout.strip().splitlines()[-1])["results"], seconds


def eval_rows() -> tuple[list[list], float]:
    (ours, numpy_s), (theirs, torch_s) = run_eval("numpy"), run_eval("torch")
    rows, worst = [], 0.0
    for a, b in zip(ours, theirs, strict=True):
        assert (a["bits"], a["direction"]) == (b["bits"], b["direction"])
        cells = [(a[k], b[k]) for k in ("map20_duch", "map20_topk", "map_all")]
        worst = max([worst] + [abs(x - y) for x, y in cells])
        rows.append([a["bits"], a["direction"], *(f"{x:.4f} / {y:.4f}" for x, y in cells)])
    print(f"cach eval: {numpy_s:.0f} s (numpy builder), {torch_s:.0f} s (torch builder)")
    return rows, worst


def main() -> int:
    from model_runtime.env import configure_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--skip-eval", action="store_true")
    args = parser.parse_args()
    configure_process()
    data = inputs()
    rows = [r for bits in args.bits for r in output_rows(data, bits)]
    table("torch-free graphs vs the torch export (ONNX Runtime, fp32)",
          ["bits", "set", "n", "max|d| tanh", "max|d| proj", "flips", "flips |t|<=1e-4",
           "build s numpy / torch"], rows)
    bad = sum(r[5] for r in rows)
    worst = max(float(r[3]) for r in rows)
    ok = bad == 0 and worst < 1e-4
    if not args.skip_eval:
        erows, ediff = eval_rows()
        table("cach eval --dataset ucm --backend onnx: numpy / torch builder",
              ["bits", "dir", "mAP@20 DUCH", "mAP@20 top20", "mAP@ALL"], erows)
        print(f"largest mAP difference: {ediff:.4f} (goal <= .002)")
        ok = ok and ediff <= 0.002
    print(f"\nlargest output difference {worst:.2e}, flips away from zero {bad}: "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
