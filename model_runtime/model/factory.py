"""``load_model``: backbone config + heads + device + backend -> a ready :class:`HashModel`."""

from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path

from model_runtime.config import BackboneConfig, get_backbone_config
from model_runtime.errors import ConfigError
from model_runtime.model.base import HashModel
from model_runtime.model.heads import HeadsRef, resolve_heads
from model_runtime.protocol import DEFAULT_BACKBONE

LOG = logging.getLogger(__name__)

#: backend name -> "module:class" of its HashModel (imported only when chosen)
BACKENDS: dict[str, str] = {
    "torch": "model_runtime.model.torch_model:TorchHashModel",
}
#: the module each backend needs installed
BACKEND_REQUIRES: dict[str, str] = {"torch": "torch"}


def available_backends() -> list[str]:
    """Backends whose engine is installed in this Python."""
    return [name for name, mod in BACKEND_REQUIRES.items() if importlib.util.find_spec(mod)]


def pick_backend(backend: str | None, device: str | None) -> str:
    """The backend to use: ``backend``, else ``$CACH_BACKEND``, else torch (the default until a
    compiled engine is registered). An engine that is not installed falls back to torch with one
    log line."""
    wanted = (backend or os.environ.get("CACH_BACKEND") or "torch").lower()
    if wanted not in BACKENDS:
        raise ConfigError(f"Unknown backend '{wanted}': use {', '.join(sorted(BACKENDS))}.",
                          code="backend_unavailable")
    if wanted != "torch" and wanted not in available_backends():
        LOG.warning("backend %s is not installed (%s missing); using torch", wanted,
                    BACKEND_REQUIRES[wanted])
        return "torch"
    return wanted


def _model_class(backend: str) -> type[HashModel]:
    module, _, cls = BACKENDS[backend].partition(":")
    return getattr(importlib.import_module(module), cls)


def load_model(
    backbone: str | BackboneConfig = DEFAULT_BACKBONE,
    bits: int | None = None,
    heads: str | os.PathLike | HeadsRef | None = None,
    device: str | None = None,
    backend: str | None = None,
) -> HashModel:
    """A model for ``backbone`` with ``heads`` (a file or a resolved ref) or the shipped heads of
    ``bits``, on ``device`` (``cpu``, ``cuda[:N]``, default ``$CACH_DEVICE`` or auto) through
    ``backend`` (``torch``, ...)."""
    config = backbone if isinstance(backbone, BackboneConfig) else get_backbone_config(backbone)
    ref = heads if isinstance(heads, HeadsRef) else resolve_heads(
        config.name, bits, None if heads is None else Path(heads))
    name = pick_backend(backend, device)
    start = time.perf_counter()
    model = _model_class(name)(config, ref, device)
    LOG.info("model %s / %s (%d bits) on %s via %s in %.1f s", config.name, ref.path.name,
             ref.bits, model.device, name, time.perf_counter() - start)
    return model
