"""Process set-up for the runtime's entry points (CLI, worker job process, Ray actors).

Importing ``model_runtime`` changes nothing in the importing process: QGIS imports
``model_runtime.protocol`` into its own Python, which must keep its own settings. The processes
that run models call :func:`configure_process` once, before torch, faiss or ONNX Runtime load.
"""

from __future__ import annotations

import logging
import os

#: environment defaults of a model process; an explicit value in the environment wins
PROCESS_ENV = {
    # OpenMP threads that spin while waiting make torch and faiss 20-40x slower on small work
    # (one query: ~490 ms instead of ~15 ms) whenever another process holds a core, as QGIS
    # rendering does. Passive waiting costs nothing measurable on batches.
    "OMP_WAIT_POLICY": "PASSIVE",
    # never reach a model hub: every weight is a local file
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def configure_process() -> None:
    """Set :data:`PROCESS_ENV` defaults and quiet libraries that log noise at INFO."""
    for key, value in PROCESS_ENV.items():
        os.environ.setdefault(key, value)
    # faiss logs which SIMD build it tried on every start
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
