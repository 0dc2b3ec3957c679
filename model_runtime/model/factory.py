"""``load_model``: backbone config + heads + device + backend -> a ready :class:`HashModel`.

Backends (``--backend`` / ``$CACH_BACKEND``): ``onnx`` (ONNX Runtime) and ``openvino`` run graphs
exported once from the packaged weights (cached, see ``model/graphs.py``); ``torch`` runs the
open_clip towers and is used for CUDA, training and as the fallback. The default on the CPU is
:data:`DEFAULT_CPU_BACKEND`, chosen by measurement (docs/engines.md); on CUDA it is torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from model_runtime.config import BackboneConfig, get_backbone_config
from model_runtime.errors import CachError, ConfigError
from model_runtime.model.base import HashModel
from model_runtime.model.heads import HeadsRef, resolve_heads
from model_runtime.protocol import DEFAULT_BACKBONE
from model_runtime.settings import current

LOG = logging.getLogger(__name__)

#: backend name -> "module:class" of its HashModel (imported only when chosen)
BACKENDS: dict[str, str] = {
    "torch": "model_runtime.model.torch_model:TorchHashModel",
    "onnx": "model_runtime.model.onnx_model:OnnxHashModel",
    "openvino": "model_runtime.model.openvino_model:OpenVinoHashModel",
}
#: the module each backend needs installed
BACKEND_REQUIRES: dict[str, str] = {"torch": "torch", "onnx": "onnxruntime",
                                    "openvino": "openvino"}
#: the CPU default, by measurement on a 2-core x86 box (docs/engines.md)
DEFAULT_CPU_BACKEND = "onnx"


def available_backends() -> list[str]:
    """Backends whose engine is installed in this Python."""
    return [name for name, mod in BACKEND_REQUIRES.items() if importlib.util.find_spec(mod)]


def _cuda_present() -> bool:
    """An NVIDIA GPU seems present (checked without importing torch)."""
    if sys.platform.startswith("linux"):
        gpus = Path("/proc/driver/nvidia/gpus")
        return gpus.is_dir() and any(gpus.iterdir())
    return sys.platform == "win32" and shutil.which("nvidia-smi") is not None


def wants_cuda(device: str | None) -> bool:
    """Whether ``device`` (or ``$CACH_DEVICE``, or auto) means a CUDA device."""
    wanted = (device or current().device).lower()
    if wanted == "auto":
        return _cuda_present() and importlib.util.find_spec("torch") is not None
    return wanted.startswith("cuda")


def pick_backend(backend: str | None, device: str | None) -> str:
    """The backend to use: ``backend``, else ``$CACH_BACKEND``, else torch on CUDA and
    :data:`DEFAULT_CPU_BACKEND` on the CPU. An engine that is not installed falls back to torch
    with one log line."""
    wanted = (backend or current().backend).lower()
    if not wanted:
        wanted = "torch" if wants_cuda(device) else DEFAULT_CPU_BACKEND
    if wanted not in BACKENDS:
        raise ConfigError(f"Unknown backend '{wanted}': use {', '.join(sorted(BACKENDS))}.",
                          code="backend_unavailable")
    if wanted != "torch" and wanted not in available_backends():
        LOG.warning("backend %s is not installed (Python package %s missing): using torch",
                    wanted, BACKEND_REQUIRES[wanted])
        return "torch"
    return wanted


def _model_class(backend: str) -> type[HashModel]:
    module, _, cls = BACKENDS[backend].partition(":")
    return getattr(importlib.import_module(module), cls)


def _build(name: str, config: BackboneConfig, ref: HeadsRef, device: str | None,
           precision: str | None) -> tuple[str, HashModel]:
    """The model of backend ``name``; a compiled backend that cannot run this backbone or
    device falls back to torch with one log line."""
    if name == "torch":
        return name, _model_class(name)(config, ref, device, precision=precision)
    try:
        return name, _model_class(name)(config, ref, device, precision=precision)
    except CachError as err:
        if err.code != "backend_unavailable":
            raise
        LOG.warning("backend %s cannot run here (%s): using torch", name, err)
    return "torch", _model_class("torch")(config, ref, device)


def load_model(
    backbone: str | BackboneConfig = DEFAULT_BACKBONE,
    bits: int | None = None,
    heads: str | os.PathLike | HeadsRef | None = None,
    device: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
) -> HashModel:
    """A model for ``backbone`` with ``heads`` (a file or a resolved ref) or the shipped heads of
    ``bits``, on ``device`` (``cpu``, ``cuda[:N]``, default ``$CACH_DEVICE`` or auto) through
    ``backend`` (``onnx``, ``openvino``, ``torch``; default above) at ``precision`` (``fp32``,
    ``int8``, ``bf16`` where the backend runs it; default ``$CACH_PRECISION`` or the backend's)."""
    config = backbone if isinstance(backbone, BackboneConfig) else get_backbone_config(backbone)
    ref = heads if isinstance(heads, HeadsRef) else resolve_heads(
        config.name, bits, None if heads is None else Path(heads))
    start = time.perf_counter()
    name, model = _build(pick_backend(backend, device), config, ref, device, precision)
    LOG.info("model %s / %s (%d bits) on %s via %s %s in %.1f s", config.name, ref.path.name,
             ref.bits, model.device, name, model.precision, time.perf_counter() - start)
    return model
