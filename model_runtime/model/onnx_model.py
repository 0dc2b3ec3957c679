"""The ONNX Runtime backend: the exported graphs on ONNX Runtime's CPU execution provider.

``fp32`` runs the exported graphs as they are; ``int8`` runs an image graph quantised with
static (QDQ, per-channel) calibration on UCM training images (the text graph stays fp32), see
:mod:`model_runtime.model.quantize`. Threads: ``intra_op`` = :meth:`graph_threads` (the image
graph's shared out over the lanes, whose calls one session runs at once), one inter-op thread,
and no spinning while idle (as ``OMP_WAIT_POLICY=PASSIVE`` for torch): a spinning pool steals
the cores the tile readers need. With ``onnxruntime-gpu`` installed,
``--device cuda`` runs the same graphs on ONNX Runtime's CUDA provider.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.model.compiled import CompiledHashModel
from model_runtime.settings import current


class OnnxHashModel(CompiledHashModel):
    backend = "onnx"
    engine = "onnxruntime"
    precisions = ("fp32", "int8")

    def _check_device(self, device: str | None) -> str:
        """The CPU, or a CUDA device when ONNX Runtime has its CUDA provider (the
        ``onnxruntime-gpu`` build); otherwise the factory falls back to torch for CUDA."""
        wanted = (device or current().device).lower()
        if wanted.startswith("cuda"):
            import onnxruntime as ort

            if "CUDAExecutionProvider" in ort.get_available_providers():
                return wanted
        return super()._check_device(device)

    def _providers(self) -> list:
        if self.device.startswith("cuda"):
            device_id = int(self.device.partition(":")[2] or 0)
            return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def _convert(self, folder: Path) -> None:
        if self.precision == "int8" and (folder / "image.onnx").exists():  # the text graph: fp32
            from model_runtime.model.quantize import quantize_image_graph

            quantize_image_graph(self.config, folder / "image.onnx")

    def _options(self, threads: int) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        return opts

    def _open(self, folder: Path, name: str) -> Any:
        import onnxruntime as ort

        return ort.InferenceSession(str(folder / f"{name}.onnx"),
                                    self._options(self.graph_threads(name)),
                                    providers=self._providers())

    def _run(self, session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(None, feeds)
