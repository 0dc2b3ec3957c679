"""The model service: loaded models of one backbone, device and backend, one per heads file.

The frozen encoder (torch) or the compiled image/text graphs are loaded on first need and kept;
indexes built with different heads (other bit lengths, adapted heads) each get their model.
"""

from __future__ import annotations

import logging
import threading
import time

from model_runtime.model import HashModel, HeadsRef, load_model

LOG = logging.getLogger(__name__)


class ModelPool:
    def __init__(self, backbone: str, device: str | None = None, backend: str | None = None,
                 precision: str | None = None):
        self.backbone = backbone
        self.device = device
        self.backend = backend
        self.precision = precision
        self._models: dict[str, HashModel] = {}
        self._lock = threading.Lock()
        self.load_seconds: float | None = None

    def get(self, heads: HeadsRef) -> HashModel:
        """The model for these heads, loaded once."""
        with self._lock:
            model = self._models.get(heads.sha)
            if model is None:
                start = time.perf_counter()
                model = load_model(self.backbone, heads=heads, device=self.device,
                                   backend=self.backend, precision=self.precision)
                self.load_seconds = time.perf_counter() - start
                self._models[heads.sha] = model
            return model

    def cached(self, heads: HeadsRef) -> HashModel | None:
        """The model if it is loaded already (never loads)."""
        return self._models.get(heads.sha)

    @property
    def device_name(self) -> str:
        """The device in use once a model is loaded, else what was asked for."""
        for model in list(self._models.values()):
            return model.device
        return self.device or "auto"

    def describe(self) -> list[str]:
        return [f"{m.backend}:{m.heads.path.name}" for m in list(self._models.values())]

    def close(self) -> None:
        with self._lock:
            for model in self._models.values():
                model.close()
            self._models.clear()


class LazyModel:
    """A model that loads on first use: what a build gets, so that a run that encodes nothing
    (all files unchanged, or a large run waiting for confirmation) loads nothing. Its identity
    (``heads``, ``bits``, ``info``) is known without loading."""

    def __init__(self, pool: ModelPool, heads: HeadsRef, progress=None) -> None:
        self._pool = pool
        self.heads = heads
        self._progress = progress  # a load is reported as its own step ("model")

    @property
    def bits(self) -> int:
        return self.heads.bits

    @property
    def info(self):
        loaded = self._pool.cached(self.heads)
        return loaded.info if loaded is not None else self.heads.info()

    def load(self) -> HashModel:
        """Load the model now (a build calls it before it marks the index as being built)."""
        if self._progress is None or self._pool.cached(self.heads) is not None:
            return self._pool.get(self.heads)
        message = "loading the model (its graphs are built the first time)"
        self._progress({"stage": "model", "done": 0, "total": 1, "message": message})
        model = self._pool.get(self.heads)
        self._progress({"stage": "model", "done": 1, "total": 1, "message": message})
        return model

    def __getattr__(self, name: str):
        return getattr(self._pool.get(self.heads), name)
