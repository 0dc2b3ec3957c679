"""The ONNX Runtime backend: the exported graphs on ONNX Runtime's CPU execution provider.

``fp32`` runs the exported graphs as they are; ``int8`` runs an image graph quantised with
static (QDQ, per-channel) calibration on UCM training images (the text graph stays fp32), see
:mod:`model_runtime.model.quantize`. Threads: ``intra_op`` = :func:`encoder_threads`, one
inter-op thread, and no spinning while idle (as ``OMP_WAIT_POLICY=PASSIVE`` for torch): a
spinning pool steals the cores the tile readers need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.model.compiled import CompiledHashModel


class OnnxHashModel(CompiledHashModel):
    backend = "onnx"
    engine = "onnxruntime"
    precisions = ("fp32", "int8")

    def _convert(self, folder: Path) -> None:
        if self.precision == "int8":
            from model_runtime.model.quantize import quantize_image_graph

            quantize_image_graph(self.config, folder / "image.onnx")

    def _options(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        return opts

    def _open(self, folder: Path, name: str) -> Any:
        import onnxruntime as ort

        return ort.InferenceSession(str(folder / f"{name}.onnx"), self._options(),
                                    providers=["CPUExecutionProvider"])

    def _run(self, session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(None, feeds)
