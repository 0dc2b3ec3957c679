"""The OpenVINO backend: the exported ONNX graphs converted once to OpenVINO IR (fp32 weights).

``fp32`` and ``bf16`` share the IR files; ``bf16`` is OpenVINO's inference-precision hint, which
the CPU plugin honours only on CPUs with bf16 instructions (AVX512-BF16/AMX); elsewhere the
model runs fp32 and :attr:`precision` says so (one log line). ``int8`` converts the quantised image graph of
:mod:`model_runtime.model.quantize`. Compiled blobs are cached by OpenVINO in the graph folder
(``ov_cache/``), so later loads skip compilation.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.model.compiled import CompiledHashModel

LOG = logging.getLogger(__name__)

_CORE: Any = None
#: per thread: compiled model id -> (compiled model, its infer request for this thread)
_REQUESTS = threading.local()


def _openvino() -> Any:
    """``openvino``, imported without its usage telemetry. ``import openvino`` sends an event to
    Google Analytics (and ``convert_model`` more), from a forked process, unless a consent file
    in the home folder opts out; nothing here may reach the network unasked. With the
    telemetry package blocked before the first import, OpenVINO falls back to its own stub."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # None: "import" raises ImportError
    import openvino as ov

    return ov


def _core() -> Any:
    global _CORE
    if _CORE is None:
        _CORE = _openvino().Core()
    return _CORE


class OpenVinoHashModel(CompiledHashModel):
    backend = "openvino"
    engine = "openvino"
    precisions = ("fp32", "bf16", "int8")

    @property
    def graph_precision(self) -> str:
        return "fp32" if self.precision == "bf16" else self.precision

    def _convert(self, folder: Path) -> None:
        ov = _openvino()
        if self.precision == "int8" and (folder / "image.onnx").exists():
            from model_runtime.model.quantize import quantize_image_graph

            quantize_image_graph(self.config, folder / "image.onnx")
        for name in ("image", "text"):  # each graph has its own cache folder
            onnx = folder / f"{name}.onnx"
            if not onnx.exists():
                continue
            # the ONNX frontend directly: no converter (ovc) on the way
            ov.save_model(_core().read_model(str(onnx)), str(folder / f"{name}.xml"),
                          compress_to_fp16=False)
            onnx.unlink()

    def _config(self, folder: Path, name: str) -> dict[str, Any]:
        """The image graph runs one stream per lane (OpenVINO shares its threads out over the
        streams); the text graph one stream for the lowest latency."""
        hint = {"bf16": "bf16"}.get(self.precision, "f32")
        streams = self.lanes if name == "image" else 1
        config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": hint,
            "CACHE_DIR": str(folder / "ov_cache"),
        }
        if streams > 1:
            config["NUM_STREAMS"] = streams
        else:
            config["PERFORMANCE_HINT"] = "LATENCY"
        return config

    def _check_precision(self, precision: str | None) -> str:
        wanted = super()._check_precision(precision)
        if wanted == "bf16" and "BF16" not in _core().get_property(
                "CPU", "OPTIMIZATION_CAPABILITIES"):
            LOG.warning("this CPU has no bf16 instructions: OpenVINO runs fp32")
            return "fp32"
        return wanted

    def _open(self, folder: Path, name: str) -> Any:
        return _core().compile_model(str(folder / f"{name}.xml"), "CPU",
                                     self._config(folder, name))

    def _run(self, session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        # an infer request is not thread-safe: each thread (each lane) runs its own
        mine = _REQUESTS.__dict__.setdefault("by_session", {})
        entry = mine.get(id(session))
        if entry is None or entry[0] is not session:
            entry = mine[id(session)] = (session, session.create_infer_request())
        result = entry[1].infer(feeds, share_inputs=True)  # no copy into the request
        return [np.array(result[out]) for out in session.outputs]
