"""int8 image graphs: static post-training quantisation calibrated on UCM training images.

ONNX Runtime's ``quantize_static`` rewrites ``image.onnx`` in QDQ form (int8 per-channel weights,
uint8 activations with ranges observed on 128 images of UCM's official training split, never its
test split, listed in ``resources/calibration/int8-ucm-train.txt``). ONNX Runtime runs the QDQ
graph with int8 kernels; OpenVINO converts the same graph to its int8 form. Needs the UCM images
(``$CACH_DATA``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from model_runtime.config import BackboneConfig
from model_runtime.errors import ConfigError
from model_runtime.fsutil import atomic_path
from model_runtime.model.pixels import load_pixels
from model_runtime.paths import RESOURCES, data_root

LOG = logging.getLogger(__name__)

CALIBRATION_BATCH = 16
#: joins the graph-cache key of int8 graphs: change it whenever the recipe below changes
RECIPE = "ucm-train-128/percentile-99.99/heads+conv0-fp32/v2"


def calibration_files() -> list[Path]:
    """The calibration images: the shipped list (``resources/calibration/``, written by
    ``python -m model_runtime.data.calibration``: UCM training images) under the data root."""
    listed = (RESOURCES / "calibration" / "int8-ucm-train.txt").read_text(encoding="utf-8")
    root = data_root()
    return [root / line for line in listed.splitlines() if line.strip()]


def calibration_pixels(config: BackboneConfig) -> np.ndarray:
    """The calibration images at the model's input size; ConfigError when they are absent."""
    files = calibration_files()
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise ConfigError(f"int8 needs the UCM training images for calibration ({missing[0]} "
                          "is missing); set CACH_DATA or use fp32.",
                          code="backend_unavailable")
    pre = config.preprocess
    return load_pixels(files, pre.size, pre.interpolation)


class _Reader:
    """ONNX Runtime's calibration data reader over fixed uint8 batches."""

    def __init__(self, pixels: np.ndarray) -> None:
        self._batches = iter([pixels[i : i + CALIBRATION_BATCH]
                              for i in range(0, len(pixels), CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"pixels": batch}


def _kept_in_fp32(path: Path) -> list[str]:
    """Nodes left in fp32: the hash heads (small, and their outputs are the code signs) and the
    first convolution (it sees the raw pixel range)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    heads = [n.name for n in graph.node
             if "heads" in n.name or any("heads" in i for i in n.input)]
    first = next((n.name for n in graph.node if n.op_type == "Conv"), None)
    return heads + ([first] if first else [])


def quantize_image_graph(config: BackboneConfig, path: Path) -> None:
    """Replace the fp32 graph at ``path`` by its calibrated int8 (QDQ) form (activation ranges
    at the 99.99th percentile: on UCM test images 97.7 % of the 64 bits then agree with fp32,
    against 94.5 % with min/max ranges and the heads quantised too)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    pixels = calibration_pixels(config)
    LOG.info("calibrating int8 on %d UCM training images (a few minutes, once)", len(pixels))
    with atomic_path(path) as tmp:
        quantize_static(
            str(path), str(tmp), _Reader(pixels), quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile, nodes_to_exclude=_kept_in_fp32(path),
            extra_options={"CalibPercentile": 99.99},
        )
    for leftover in path.parent.glob("*augmented*.onnx"):
        os.unlink(leftover)
