"""What the compiled backends (ONNX Runtime, OpenVINO) share: the exported-graph cache, the
torch-free tokenizer, text batching and the export check.

A subclass names its engine and says how to build its graph files from the exported ONNX
(:meth:`_convert`), how to open one (:meth:`_open`) and how to run it (:meth:`_run`). Nothing on
the path that loads and runs cached graphs imports torch or transformers. A missing or stale
cache entry is built without torch for the backbones :mod:`model_runtime.model.onnx_build`
knows (the default), else exported once with torch (:mod:`model_runtime.model.export`);
``CACH_GRAPH_BUILDER`` picks one (:func:`graph_builder`). Each graph (image, text) has its own
cache folder keyed by content (:mod:`model_runtime.model.graphs`).

Lanes: on the CPU the image graph runs as :attr:`lanes` independent calls of
``threads // lanes`` intra-op threads each, rather than one call over every core. Two
single-thread calls at once encode ~1.2x the images of one two-thread call on 2 cores, and
share the cores with tile readers without stalling at every operator's barrier
(docs/engines.md, "Lanes"). The index builder keeps every lane busy (:meth:`submit_images`);
a plain :meth:`encode_images` of a batch splits it over the lanes.
"""

from __future__ import annotations

import logging
import os
import threading
from abc import abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.config import BackboneConfig
from model_runtime.errors import ConfigError
from model_runtime.model.base import HashModel, ImageOutputs
from model_runtime.model.graphs import (
    GRAPHS,
    MANIFEST,
    GraphSet,
    cached_graphs,
    engine_version,
    key_parts,
    touch,
)
from model_runtime.model.heads import HeadsRef
from model_runtime.model.tokenizer import TextTokenizer
from model_runtime.settings import PREFIX, current

LOG = logging.getLogger(__name__)

#: texts per text-graph call (sorted by length first, so padding stays short)
TEXT_BATCH = 256
#: largest image batch per graph call (bounds the activations' memory)
IMAGE_BATCH = 64
#: a plain encode_images call splits over the lanes only into chunks of at least this many
LANE_CHUNK = 8
#: an fp32 graph's outputs may differ from torch's on the export probe by at most this
FP32_TOLERANCE = 1e-3


def encoder_threads() -> int:
    """Intra-op threads of a compiled engine: ``$CACH_ENCODER_THREADS``, else every core this
    process may use (see docs/engines.md for the measured split with reader threads)."""
    env = _env_count("CACH_ENCODER_THREADS")
    if env:
        return env
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def encoder_lanes(threads: int, device: str = "cpu") -> int:
    """Concurrent image-graph calls: ``$CACH_ENCODER_LANES``, else 2 on a CPU with two or more
    threads (measured on 2 cores; more lanes only split the threads thinner), 1 on a GPU."""
    env = _env_count("CACH_ENCODER_LANES")
    if env:
        return min(env, threads)
    return 2 if device == "cpu" and threads >= 2 else 1


#: most threads or lanes ``$CACH_ENCODER_THREADS`` / ``$CACH_ENCODER_LANES`` may ask for: more
#: is a typing mistake (a billion threads exhaust memory), refused naming the variable
MAX_ENV_COUNT = 1024


def _env_count(name: str) -> int | None:
    """A whole number from 1 to :data:`MAX_ENV_COUNT` from the environment (None when unset);
    anything else is a configuration error that names the variable."""
    value = getattr(current(), name.removeprefix(PREFIX).lower())
    if not value:
        return None
    shown = value if len(value) <= 20 else value[:17] + "..."
    if not (value.isascii() and value.isdigit()) or not value.strip("0"):
        raise ConfigError(f"{name} must be a whole number of at least 1, not '{shown}'.",
                          code="bad_value", variable=name)
    if len(value.lstrip("0")) > 6 or int(value) > MAX_ENV_COUNT:
        raise ConfigError(f"{name}={shown} is more than the {MAX_ENV_COUNT} this runtime "
                          f"allows; unset it to use every core.", code="bad_value", variable=name)
    return int(value)


def graph_builder(config: BackboneConfig) -> str:
    """How missing graphs are built: ``numpy`` (torch-free, :mod:`model_runtime.model.onnx_build`)
    for the backbones it knows, else ``torch`` (:mod:`model_runtime.model.export`);
    ``$CACH_GRAPH_BUILDER`` (``auto``, ``numpy`` or ``torch``) forces one."""
    from model_runtime.model.onnx_build import supports

    wanted = current().graph_builder.lower()
    if wanted not in ("auto", "numpy", "torch"):
        raise ConfigError(f"CACH_GRAPH_BUILDER must be auto, numpy or torch, not '{wanted}'.",
                          code="bad_value")
    if wanted == "torch" or (wanted == "auto" and not supports(config)):
        return "torch"
    if not supports(config):
        raise ConfigError(f"The torch-free graph builder cannot build backbone "
                          f"'{config.name}'; unset CACH_GRAPH_BUILDER to export it with torch.",
                          code="backend_unavailable")
    return "numpy"


def _onnx_reference(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray | None:
    """The first output of the ONNX graph at ``path`` on ONNX Runtime (None without it)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


class _Lane(threading.local):
    """Marks the lane threads, whose calls never split again."""

    active = False


class CompiledHashModel(HashModel):
    """A :class:`HashModel` that runs exported graphs: pixels/tokens in, tanh outputs out."""

    #: the engine's PyPI distribution (its version joins the cache key)
    engine = "?"
    #: precisions this backend runs; the first is the default
    precisions: tuple[str, ...] = ("fp32",)
    #: images per encode call the index builder should use
    preferred_batch = 32

    def __init__(self, config: BackboneConfig, heads: HeadsRef, device: str | None = None,
                 precision: str | None = None) -> None:
        super().__init__(config, heads, self._check_device(device))
        self.precision = self._check_precision(precision)
        self.tokenizer = TextTokenizer(config)
        self.threads = encoder_threads()
        self.lanes = encoder_lanes(self.threads, self.device)
        self.graphs = self._graphs()
        self._sessions: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._lane = _Lane()

    def graph_threads(self, name: str) -> int:
        """Intra-op threads of graph ``name``: the image graph's are shared out over the lanes;
        the text graph (one query at a time) takes them all."""
        return max(1, self.threads // self.lanes) if name == "image" else self.threads

    # --- set-up -------------------------------------------------------------------------------
    def _check_device(self, device: str | None) -> str:
        wanted = (device or current().device).lower()
        if wanted in ("auto", "cpu"):
            return "cpu"
        raise ConfigError(f"The {self.backend} backend runs on the CPU here, not '{device}'.",
                          code="backend_unavailable")

    def _check_precision(self, precision: str | None) -> str:
        wanted = (precision or current().precision or self.precisions[0]).lower()
        if wanted not in self.precisions:
            raise ConfigError(f"The {self.backend} backend runs {', '.join(self.precisions)}, "
                              f"not '{wanted}'.", code="bad_value")
        return wanted

    @property
    def graph_precision(self) -> str:
        """The precision of the graph files (a runtime hint such as bf16 shares fp32 files)."""
        return self.precision

    def _graphs(self) -> dict[str, GraphSet]:
        """The verified cache folder of each graph (``image``, ``text``), built when missing."""
        return {name: self._graph(name) for name in GRAPHS}

    def _graph(self, name: str) -> GraphSet:
        recipe = ""
        if self.graph_precision == "int8":
            from model_runtime.model.quantize import RECIPE as recipe
        parts = key_parts(self.config, self.heads, engine_version(self.engine),
                          self.graph_precision, recipe, graph=name)
        return cached_graphs(parts, lambda folder: self._build(name, folder))

    @property
    def first_export_s(self) -> float | None:
        """Seconds the graph builds took if this process made any (None: all found cached)."""
        built = [g.built_s for g in self.graphs.values() if g.built_s is not None]
        return sum(built) if built else None

    # --- building the cache entry -------------------------------------------------------------
    def _probe_feeds(self, name: str) -> dict[str, np.ndarray]:
        from model_runtime.model.export import PROBE_TEXTS, probe_pixels

        if name == "image":
            return {"pixels": probe_pixels(self.input_size)}
        ids, mask = self.tokenizer(list(PROBE_TEXTS))
        return {"input_ids": ids, "attention_mask": mask}

    def _build(self, name: str, folder: Path) -> dict[str, Any]:
        """Build graph ``name`` as ONNX into ``folder``, convert it to this engine's files and
        check them on the probe against the builder's reference; returns what the manifest
        records (the builder and the check)."""
        builder = graph_builder(self.config)
        LOG.info("building the %s %s graph for %s (%s, %d bits, %s, %s builder): a one-off "
                 "step", self.backend, name, self.config.name, self.heads.path.name, self.bits,
                 self.precision, builder)
        feeds = self._probe_feeds(name)
        if builder == "torch":
            from model_runtime.model.export import export_onnx

            reference = export_onnx(self.config, self.heads, folder, self.tokenizer,
                                    names=(name,))[name]
        else:
            from model_runtime.model.onnx_build import build_onnx

            build_onnx(self.config, self.heads, folder, names=(name,))
            # the engine's files are checked against ONNX Runtime on the built graph, where
            # the engine converts it (ONNX Runtime on its own graph would check nothing)
            converts = self.engine != "onnxruntime" and self.graph_precision == "fp32"
            reference = _onnx_reference(folder / f"{name}.onnx", feeds) if converts else None
        self._convert(folder)
        extra: dict[str, Any] = {"builder": builder}
        if reference is not None:
            out = self._run(self._open(folder, name), feeds)[0]
            diff = float(np.abs(out - reference).max())
            extra["probe"] = {f"{name}_max_abs_diff": diff}
            if self.graph_precision == "fp32" and diff > FP32_TOLERANCE:
                raise ConfigError(f"The {self.backend} {name} graph does not reproduce its "
                                  f"reference (max difference {diff:.2g}); use --backend torch.",
                                  code="backend_unavailable")
        return extra

    def _convert(self, folder: Path) -> None:
        """Turn ``image.onnx``/``text.onnx`` in ``folder`` into this engine's files (ONNX
        Runtime runs them as they are)."""

    @abstractmethod
    def _open(self, folder: Path, name: str) -> Any:
        """Load graph ``name`` (``image`` or ``text``) from ``folder``."""

    @abstractmethod
    def _run(self, session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run a loaded graph; outputs in the exported order (tanh first)."""

    def session(self, name: str) -> Any:
        """The loaded graph ``name``, opened on first use (a search never opens the image graph)."""
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:  # one graph opening never waits for the other
            if name not in self._sessions:
                self._sessions[name] = self._open_cached(name)
            return self._sessions[name]

    def _open_cached(self, name: str) -> Any:
        """Open graph ``name`` from its folder; when another process evicted the folder since
        this model was made (the cache is capped), find or build it again first."""
        folder = self.graphs[name].folder
        if not (folder / MANIFEST).is_file():
            LOG.warning("the %s graph's cache folder is gone (evicted?): building it again", name)
            self.graphs = {**self.graphs, name: self._graph(name)}
            folder = self.graphs[name].folder
        touch(folder)
        return self._open(folder, name)

    def warm_up(self) -> None:
        """Open and run both graphs once; the image graph in a second thread meanwhile (the
        engines release the GIL, so the two loads overlap)."""
        errors: list[BaseException] = []

        def image() -> None:
            try:
                self.encode_images(np.zeros((1, self.input_size, self.input_size, 3), np.uint8))
            except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(err)

        thread = threading.Thread(target=image, name="cach-warm-image", daemon=True)
        thread.start()
        self.encode_texts(["warm up"])
        thread.join()
        if errors:
            raise errors[0]

    # --- encoding -----------------------------------------------------------------------------
    def _lanes(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="cach-lane",
                                                initializer=self._enter_lane)
            return self._pool

    def _enter_lane(self) -> None:
        self._lane.active = True

    def submit_images(self, images: Sequence[np.ndarray] | np.ndarray) -> Future:
        """Encode on the next free lane (``lanes`` calls run at once; more wait their turn)."""
        batch = self.prepare(images)
        if self.lanes == 1 or len(batch) == 0:
            return super().submit_images(batch)
        return self._lanes().submit(self._encode_serial, batch)

    def _encode_batch(self, batch: np.ndarray) -> ImageOutputs:
        """One call's batch, split over the lanes when it is large enough to share."""
        parts = min(self.lanes, len(batch) // LANE_CHUNK)
        if parts < 2 or self._lane.active:
            return self._encode_serial(batch)
        futures = [self._lanes().submit(self._encode_serial, chunk)
                   for chunk in np.array_split(batch, parts)]
        return _concat([f.result() for f in futures])

    def _encode_serial(self, batch: np.ndarray) -> ImageOutputs:
        session = self.session("image")
        tanh, proj = [], []
        for i in range(0, len(batch), IMAGE_BATCH):
            outs = self._run(session, {"pixels": batch[i : i + IMAGE_BATCH]})
            tanh.append(outs[0])
            if len(outs) > 1:
                proj.append(outs[1])
        return ImageOutputs(
            np.concatenate(tanh).astype(np.float32, copy=False),
            np.concatenate(proj).astype(np.float16) if proj else None,
        )

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.bits), np.float32)
        session = self.session("text")
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.bits), np.float32)
        for i in range(0, len(texts), TEXT_BATCH):
            idx = order[i : i + TEXT_BATCH]
            ids, mask = self.tokenizer([texts[j] for j in idx])
            out[idx] = self._run(session, {"input_ids": ids, "attention_mask": mask})[0]
        return out

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._lock:
            self._sessions.clear()


def _concat(parts: list[ImageOutputs]) -> ImageOutputs:
    proj = [p.proj for p in parts if p.proj is not None]
    return ImageOutputs(np.concatenate([p.tanh for p in parts]),
                        np.concatenate(proj) if len(proj) == len(parts) else None)
