"""The one pipeline: index, search, caption, locate. The CLI, the worker and (through the worker)
the QGIS Processing algorithms all call a :class:`Runtime`; each only translates inputs/outputs.

A Runtime loads the frozen encoder once and hash heads per bit length on first need. An index
records the model it was built with (backbone, bits, SHA-256 of the heads file); searching it
picks the shipped heads of the index's bit length, and refuses any other model with a message
that says what to do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime import __version__
from model_runtime.errors import CancelledError, ConfigError, DataError, ModelMismatchError
from model_runtime.paths import sha256_file

LOG = logging.getLogger(__name__)
# OpenMP threads that spin while waiting make torch and faiss 20-40x slower on small work (one
# query: ~490 ms instead of ~15 ms for a sentence) whenever another process holds a core, as
# QGIS rendering does. Passive waiting costs nothing measurable on batches. It must be set
# before torch/faiss load OpenMP, so here: this module is imported before either of them.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# faiss logs which SIMD build it tried at INFO on every start: noise for users
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

DEFAULT_BACKBONE = "effnetlite0-minilm"
DEFAULT_BITS = 64
DEFAULT_METHOD = "cach"
#: default weights of a combined query (each part is L2-normalised before weighting)
DEFAULT_WEIGHTS = {"text": 1.0, "image": 1.0, "tile": 1.0, "positive": 1.0, "negative": 0.5}
#: images/s assumed by a dry run before this machine has indexed anything
DEFAULT_IMAGES_PER_S = {"cpu": 25.0, "cuda": 400.0}

Progress = Callable[[dict], None]


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError("Cancelled.")


def tiling_options(options: Any = None):
    """``TilingOptions`` from None, a dict of CLI/protocol fields, or TilingOptions itself."""
    from model_runtime.tiling import TilingOptions

    if options is None:
        return TilingOptions()
    if isinstance(options, TilingOptions):
        return options
    data = {k: v for k, v in dict(options).items() if v is not None}
    for key in ("scales", "bands"):
        if isinstance(data.get(key), str):
            data[key] = [int(v) for v in str(data[key]).replace(" ", "").split(",") if v]
    return TilingOptions.from_json(data)


# --- typed results -------------------------------------------------------------------------------
@dataclass
class SearchResult:
    """What a search returns; ``to_json()`` is the protocol's search result and the CLI's --json."""

    query: dict[str, Any]
    model: dict[str, Any]
    index: dict[str, Any]
    results: list[Any]  # index.Hit
    timing_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "model": self.model,
            "index": self.index,
            "timing_ms": {k: round(v, 2) for k, v in self.timing_ms.items()},
            "results": [h.to_json() for h in self.results],
        }


@dataclass
class CaptionResult:
    """Best-matching bank captions for a tile or image, and similar tiles when an index is given."""

    captions: list[Any]  # captions.CaptionMatch
    similar: list[Any] = field(default_factory=list)  # index.Hit
    model: dict[str, Any] = field(default_factory=dict)
    timing_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "captions": [c.to_dict() for c in self.captions],
            "similar": [h.to_json() for h in self.similar],
            "model": self.model,
            "timing_ms": {k: round(v, 2) for k, v in self.timing_ms.items()},
        }


@dataclass
class _Heads:
    """A heads file: its identity (read at once) and its weights (loaded on first encode)."""

    path: Path
    sha: str
    bits: int
    method: str
    module: Any = None  # HashHeads

    def info(self, backbone: str) -> dict[str, Any]:
        return {
            "backbone": backbone,
            "bits": self.bits,
            "heads_sha": self.sha,
            "method": self.method,
            "heads": self.path.name,
        }


class Runtime:
    """Encoder + hash heads, loaded once, and the operations on indexes.

    ``bits``/``heads`` fix the model for new indexes; left ``None``, new indexes get
    :data:`DEFAULT_BITS` and an existing index is searched with the shipped heads of its own
    bit length. ``device``: ``cpu``, ``cuda``, ``cuda:N``; default ``$CACH_DEVICE`` or auto.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        bits: int | None = None,
        heads: str | os.PathLike | None = None,
        device: str | None = None,
    ) -> None:
        self.backbone = backbone
        self.bits = int(bits) if bits is not None else None
        self.heads_path = Path(heads).expanduser().resolve() if heads else None
        self.requested_device = device or os.environ.get("CACH_DEVICE") or None
        self._encoder: Any = None
        self._heads: dict[Path, _Heads] = {}
        self._banks: dict[str, Any] = {}
        self._indexes: dict[Path, Any] = {}
        self._lock = threading.RLock()  # model loads; ops themselves run one at a time
        self._load_seconds: float | None = None

    # --- model ---------------------------------------------------------------------------------
    @property
    def device_name(self) -> str:
        """The device in use once loaded, else what was asked for (``auto`` by default)."""
        if self._encoder is not None:
            return str(self._encoder.device)
        return self.requested_device or "auto"

    @property
    def encoder(self) -> Any:
        """The frozen image/text encoder (loaded on first use)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    from model_runtime.encoders import load_encoder

                    start = time.perf_counter()
                    self._encoder = load_encoder(self.backbone, device=self.requested_device)
                    self._load_seconds = time.perf_counter() - start
                    LOG.info(
                        "encoder %s loaded on %s in %.1f s",
                        self.backbone,
                        self._encoder.device,
                        self._load_seconds,
                    )
        return self._encoder

    def _heads_file(self, bits: int | None) -> Path:
        if self.heads_path is not None:
            return self.heads_path
        from model_runtime.hashing.heads_io import shipped_heads_path

        path = shipped_heads_path(int(bits or self.bits or DEFAULT_BITS), self.backbone)
        if not path.is_file():
            raise ConfigError(
                f"No shipped {bits or self.bits or DEFAULT_BITS}-bit heads for {self.backbone} "
                f"({path}); choose another --bits or give --heads FILE."
            )
        return path

    def heads(self, bits: int | None = None) -> _Heads:
        """Identity of the hash heads for ``bits`` (the explicit ``heads`` file when given).

        Reads metadata and hashes the file only; checking an index against it needs no weights.
        """
        path = self._heads_file(bits)
        cached = self._heads.get(path)
        if cached is not None:
            if bits is not None and cached.bits != int(bits):
                raise ModelMismatchError(
                    f"{path} holds {cached.bits}-bit heads, but {bits} bits are needed."
                )
            return cached
        from model_runtime.hashing.heads_io import check_metadata, read_metadata

        meta = read_metadata(path)
        check_metadata(path, meta, expect_backbone=self.backbone, expect_bits=bits)
        entry = _Heads(path, sha256_file(path), int(meta["bits"]), str(meta.get("method", "?")))
        with self._lock:
            return self._heads.setdefault(path, entry)

    def head_module(self, bits: int | None = None) -> Any:
        """The loaded ``HashHeads`` for ``bits``, on the encoder's device."""
        entry = self.heads(bits)
        if entry.module is None:
            with self._lock:
                if entry.module is None:
                    from model_runtime.hashing.heads_io import load_heads

                    entry.module = load_heads(
                        entry.path,
                        expect_backbone=self.backbone,
                        expect_bits=entry.bits,
                        device=self.encoder.device,
                    )
                    LOG.info("heads %s loaded (%d bits)", entry.path.name, entry.bits)
        return entry.module

    def model_info(self, bits: int | None = None) -> dict[str, Any]:
        """``{"backbone", "bits", "heads_sha", "method", "heads"}`` of the model for ``bits``."""
        return self.heads(bits).info(self.backbone)

    def load(
        self, bits: int | None = None, backbone: str | None = None, heads: str | None = None
    ) -> dict[str, Any]:
        """Load encoder and heads now (the worker does this right after ``ready``)."""
        if backbone and backbone != self.backbone:
            raise ConfigError(
                f"This worker runs backbone '{self.backbone}'; start another for '{backbone}'."
            )
        if heads:
            self.heads_path = Path(heads).expanduser().resolve()
        start = time.perf_counter()
        info = self.model_info(bits)
        self.head_module(bits)
        # first calls pay one-off setup (tokenizer, kernels, allocator): pay it here, not in the
        # user's first query (~1-2 s on CPU otherwise)
        self.text_tanh(["warm up"], info["bits"])
        self.image_tanh([np.zeros((32, 32, 3), np.uint8)], info["bits"])
        import model_runtime.index  # noqa: F401  (rasterio, faiss, sqlite: ~0.2 s of imports)
        return {
            **info,
            "device": self.device_name,
            "seconds": round(time.perf_counter() - start, 2),
        }

    def status(self) -> dict[str, Any]:
        """What is loaded; never waits for a load in progress."""
        return {
            "version": __version__,
            "device": self.device_name,
            "backbone": self.backbone,
            "bits": self.bits or DEFAULT_BITS,
            "models_loaded": (["encoder:" + self.backbone] if self._encoder is not None else [])
            + [f"heads:{h.path.name}" for h in list(self._heads.values()) if h.module is not None],
            "indexes_open": [str(p) for p in list(self._indexes)],
            "load_seconds": None if self._load_seconds is None else round(self._load_seconds, 2),
        }

    def _ensure_loaded(self, bits: int, timing: dict[str, float]) -> None:
        """Load encoder and heads now if needed, timed apart as ``timing["load"]`` (a one-off
        cost of the first query in a process, not of the query)."""
        entry = self.heads(bits)
        if self._encoder is None or entry.module is None:
            t0 = time.perf_counter()
            self.head_module(bits)
            timing["load"] = (time.perf_counter() - t0) * 1000

    # --- encoding ------------------------------------------------------------------------------
    def image_tanh(self, images: Sequence[np.ndarray], bits: int | None = None) -> np.ndarray:
        """HxWx3 uint8 images -> tanh outputs float32 [N, bits] of the image head."""
        import torch

        feats = self.encoder.encode_images(list(images))
        heads = self.head_module(bits)
        with torch.inference_mode():
            out = heads.encode_image(torch.from_numpy(feats).to(self.encoder.device))
        return out.float().cpu().numpy()

    def text_tanh(self, texts: Sequence[str], bits: int | None = None) -> np.ndarray:
        """Sentences -> tanh outputs float32 [N, bits] of the text head."""
        import torch

        feats = self.encoder.encode_texts(list(texts))
        heads = self.head_module(bits)
        with torch.inference_mode():
            out = heads.encode_text(torch.from_numpy(feats).to(self.encoder.device))
        return out.float().cpu().numpy()

    def image_encoder(self, bits: int | None = None) -> Callable:
        """The ``encoder`` callable of ``build_index``: images -> (packed codes, tanh)."""
        from model_runtime.index.binary import pack

        def encode(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            tanh = self.image_tanh(images, bits)
            return pack(tanh), tanh

        return encode

    # --- indexes -------------------------------------------------------------------------------
    def open_index(self, index_dir: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
        """An open index and the model info to query it with; cached while unchanged on disk."""
        from model_runtime.index import check_model, open_index

        path = Path(index_dir).expanduser().resolve()
        index = self._indexes.get(path)
        if index is not None and not self._index_changed(index):
            return index, self._model_for(index, path)
        if index is not None:
            self._indexes.pop(path, None)
            index.close()
        index = open_index(path)
        try:
            info = self._model_for(index, path)
            check_model(index.model, info, path)
        except BaseException:
            index.close()
            raise
        self._indexes[path] = index
        return index, info

    @staticmethod
    def _index_changed(index: Any) -> bool:
        try:
            meta = index.store.meta()
        except Exception:  # the database went away: reopen (and report properly) next
            return True
        return meta.get("generation") != index.meta.get("generation") or not meta.get("complete")

    def _model_for(self, index: Any, path: Path) -> dict[str, Any]:
        stored = index.model or {}
        if stored.get("backbone") not in (None, self.backbone):
            raise ModelMismatchError(
                f"The index at {path} was built with backbone '{stored.get('backbone')}', but this "
                f"runtime uses '{self.backbone}'. Search it with that backbone, or rebuild it with "
                "'cach index --rebuild'."
            )
        bits = int(stored.get("bits") or self.bits or DEFAULT_BITS)
        if self.bits is not None and self.heads_path is None and self.bits != bits:
            raise ModelMismatchError(
                f"The index at {path} holds {bits}-bit codes, but {self.bits} bits were asked for: "
                f"drop --bits or rebuild the index with 'cach index --bits {self.bits} --rebuild'."
            )
        try:
            return self.model_info(bits)
        except ConfigError as err:
            raise ModelMismatchError(
                f"The index at {path} needs {bits}-bit heads for {self.backbone}: {err}"
            ) from err

    def _forget_index(self, index_dir: str | os.PathLike) -> None:
        path = Path(index_dir).expanduser().resolve()
        index = self._indexes.pop(path, None)
        if index is not None:
            index.close()

    def index(
        self,
        index_dir: str | os.PathLike,
        paths: Sequence[str | os.PathLike],
        options: Any = None,
        dry_run: bool = False,
        bits: int | None = None,
        rebuild: bool = False,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ):
        """Index rasters into ``index_dir`` (incremental, resumable); returns an ``IndexSummary``.

        With ``dry_run`` nothing is loaded or written: returns a tiling ``Estimate``.
        An existing index keeps its bit length unless ``rebuild``.
        """
        from model_runtime.index import build_index
        from model_runtime.tiling import estimate

        opts = tiling_options(options)
        bits = bits or self.bits or self._existing_bits(index_dir, rebuild) or DEFAULT_BITS
        if dry_run:
            missing = [
                (str(p), f"{p}: no such file or folder") for p in paths if not Path(p).exists()
            ]
            est = estimate(
                [p for p in paths if Path(p).exists()],
                opts,
                images_per_s=self._images_per_s(),
                bits=int(bits),
            )
            return dataclasses.replace(est, skipped=tuple(missing) + tuple(est.skipped))
        info = self.model_info(bits)
        self._forget_index(index_dir)
        _check_cancel(cancel)
        summary = build_index(
            index_dir,
            paths,
            opts,
            self.image_encoder(bits),
            info,
            progress=progress,
            cancel=cancel,
            rebuild=rebuild,
        )
        if summary.encoded and summary.timing.get("encode_s"):
            self._record_speed(summary.encoded / max(summary.seconds, 1e-6))
        return summary

    @staticmethod
    def _existing_bits(index_dir: str | os.PathLike, rebuild: bool) -> int | None:
        from model_runtime.index.store import DB_NAME, Store

        if rebuild or not (Path(index_dir) / DB_NAME).is_file():
            return None
        store = Store(index_dir)
        try:
            bits = (store.meta().get("model") or {}).get("bits")
        finally:
            store.close()
        return int(bits) if bits else None

    def _speed_file(self) -> Path:
        from model_runtime.paths import cache_dir

        return cache_dir() / "speed.json"

    def _images_per_s(self) -> float:
        device = "cuda" if self.device_name.startswith("cuda") else self.device_name
        try:
            known = json.loads(self._speed_file().read_text())
            return float(known[f"{self.backbone}/{device}"])
        except (OSError, ValueError, KeyError):
            return DEFAULT_IMAGES_PER_S.get(device, DEFAULT_IMAGES_PER_S["cpu"])

    def _record_speed(self, tiles_per_s: float) -> None:
        device = "cuda" if self.device_name.startswith("cuda") else self.device_name
        try:
            path = self._speed_file()
            known = json.loads(path.read_text()) if path.is_file() else {}
            known[f"{self.backbone}/{device}"] = round(tiles_per_s, 2)
            path.write_text(json.dumps(known))
        except (OSError, ValueError) as err:
            LOG.debug("could not record indexing speed: %s", err)

    # --- queries -------------------------------------------------------------------------------
    def read_query_image(self, path: str | os.PathLike) -> np.ndarray:
        """An example image file as HxWx3 uint8: plain images via Pillow; rasters (multi-band,
        16-bit, GeoTIFF) whole through the same band choice and stretch as indexing."""
        from PIL import Image, UnidentifiedImageError

        path = Path(path).expanduser()
        if not path.is_file():
            raise DataError(f"Query image not found: {path}")
        try:
            with Image.open(path) as img:
                if img.mode in ("RGB", "RGBA", "L", "P", "CMYK", "LA"):
                    return np.asarray(img.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError):
            pass  # not something Pillow reads as a picture: try it as a raster
        from model_runtime.tiling import TilingOptions, raster_info, read_window

        opts = TilingOptions()
        info = raster_info(path, opts)
        return read_window(path, (0, 0, info.width, info.height), opts, info=info)

    def _query_vector(
        self,
        index: Any,
        bits: int,
        text: str | None,
        tile: int | None,
        image: str | None,
        positive: Sequence[int],
        negative: Sequence[int],
        weights: dict[str, float] | None,
        timing: dict[str, float],
    ) -> np.ndarray:
        """Weighted sum of L2-normalised parts (text, image, tile, mean positive, mean negative)."""
        from model_runtime.index.binary import combine

        w = {**DEFAULT_WEIGHTS, **(weights or {})}
        unknown = set(w) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ConfigError(
                f"unknown query weight(s) {sorted(unknown)}; use {list(DEFAULT_WEIGHTS)}"
            )
        parts: list[np.ndarray] = []
        scales: list[float] = []

        def add(vec: np.ndarray, weight: float) -> None:
            vec = np.asarray(vec, dtype=np.float32).reshape(-1)
            parts.append(vec / (np.linalg.norm(vec) + 1e-12))
            scales.append(weight)

        start = time.perf_counter()
        if text:
            add(self.text_tanh([text], bits)[0], w["text"])
            timing["encode_text"] = (time.perf_counter() - start) * 1000
        if image:
            start = time.perf_counter()
            add(self.image_tanh([self.read_query_image(image)], bits)[0], w["image"])
            timing["encode_image"] = (time.perf_counter() - start) * 1000
        if tile is not None:
            add(index.tile_vector(int(tile)), w["tile"])
        for ids, key, sign in ((positive, "positive", 1.0), (negative, "negative", -1.0)):
            if ids:
                vecs = [index.tile_vector(int(i)) for i in ids]
                vecs = [v / (np.linalg.norm(v) + 1e-12) for v in vecs]
                add(np.mean(vecs, axis=0), sign * w[key])
        if not parts:
            raise ConfigError("A search needs text, an image, a tile or positive example tiles.")
        if len(parts) == 1 and scales[0] > 0:
            return parts[0]
        return combine(parts, scales)

    def search(
        self,
        index_dir: str | os.PathLike,
        text: str | None = None,
        tile: int | None = None,
        image: str | os.PathLike | None = None,
        positive: Sequence[int] = (),
        negative: Sequence[int] = (),
        weights: dict[str, float] | None = None,
        k: int = 20,
        bbox: Sequence[float] | None = None,
        bbox_crs: str = "EPSG:4326",
        collapse: bool = True,
        cancel: threading.Event | None = None,
    ) -> SearchResult:
        """Top-k tiles for text, an image file, a tile id and/or example tiles (combined).

        Query and example tiles are left out of the results. Scores are ``1 - hamming/bits``,
        or the angular similarity of the re-ranked float query, in [0, 1].
        """
        start = time.perf_counter()
        timing: dict[str, float] = {}
        index, info = self.open_index(index_dir)
        timing["open"] = (time.perf_counter() - start) * 1000
        bits = int(info["bits"])
        if text or image:
            self._ensure_loaded(bits, timing)
        query = self._query_vector(
            index,
            bits,
            text,
            tile,
            str(image) if image else None,
            list(positive),
            list(negative),
            weights,
            timing,
        )
        _check_cancel(cancel)
        t0 = time.perf_counter()
        exclude = [
            int(t) for t in ([tile] if tile is not None else []) + list(positive) + list(negative)
        ]
        hits = index.search(
            query, k=k, bbox=bbox, bbox_crs=bbox_crs, collapse=collapse, exclude_ids=exclude
        )
        timing["search"] = (time.perf_counter() - t0) * 1000
        timing["total"] = (time.perf_counter() - start) * 1000 - timing.get("load", 0.0)
        echo = {
            "text": text,
            "tile": tile,
            "image": str(image) if image else None,
            "positive": list(positive),
            "negative": list(negative),
            "weights": weights,
            "k": k,
            "bbox": list(bbox) if bbox else None,
            "bbox_crs": bbox_crs if bbox else None,
            "collapse": collapse,
        }
        return SearchResult(
            query={key: v for key, v in echo.items() if v not in (None, [], {})},
            model=info,
            index={"path": str(index.path), "bits": index.bits, "tiles": index.tiles,
                   "pending_files": index.pending_files},
            results=hits,
            timing_ms=timing,
        )

    def locate(
        self, index_dir: str | os.PathLike, x: float, y: float, crs: str = "EPSG:4326"
    ) -> Any:
        """The indexed tile under a map point (``Hit`` or None)."""
        index, _ = self.open_index(index_dir)
        return index.locate(float(x), float(y), crs)

    # --- captions ------------------------------------------------------------------------------
    def caption_codes_key(self, bits: int | None = None) -> str:
        from model_runtime.captions import BANK_PATH, codes_key

        return codes_key(self.backbone, self.heads(bits).sha, sha256_file(BANK_PATH))

    def caption_bank(self, bits: int | None = None, progress: Progress | None = None) -> Any:
        """The caption bank hash-indexed with this model's text head (built once per heads).

        Codes come from ``resources/captions`` (shipped heads) or the cache; otherwise the bank
        is encoded once per backbone (minutes on a CPU) and each head's codes derive from that.
        """
        import torch

        from model_runtime.captions import (
            BANK_PATH,
            CaptionBank,
            bank_codes,
            bank_features,
            load_bank,
        )

        heads = self.heads(bits)
        bank = self._banks.get(heads.sha)
        if bank is not None:
            return bank
        with self._lock:
            if heads.sha in self._banks:
                return self._banks[heads.sha]
            captions = load_bank()

            def report(done: int, total: int) -> None:
                if progress is not None:
                    progress(
                        {
                            "stage": "captions",
                            "done": done,
                            "total": total,
                            "message": "encoding the caption bank (once)",
                        }
                    )

            def compute() -> np.ndarray:
                feats = bank_features(
                    captions,
                    lambda texts: self.encoder.encode_texts(texts),
                    self.backbone,
                    sha256_file(BANK_PATH),
                    progress=report,
                )
                module = self.head_module(heads.bits)
                with torch.inference_mode():
                    out = module.encode_text(torch.from_numpy(feats).to(self.encoder.device))
                return out.float().cpu().numpy()

            codes = bank_codes(
                captions, self.caption_codes_key(heads.bits), heads.bits // 8, compute
            )
            bank = CaptionBank(captions, codes, heads.bits)
            self._banks[heads.sha] = bank
        return bank

    def caption(
        self,
        index_dir: str | os.PathLike | None = None,
        tile: int | None = None,
        image: str | os.PathLike | None = None,
        k: int = 5,
        similar: int = 5,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> CaptionResult:
        """Captions of the bank nearest (Hamming) to a tile's or an image's code; with an index,
        also the ``similar`` nearest other tiles."""
        from model_runtime.index.binary import pack

        start = time.perf_counter()
        timing: dict[str, float] = {}
        index = None
        if index_dir is not None:
            index, info = self.open_index(index_dir)
        elif tile is not None:
            raise ConfigError("Captioning a tile needs its index (--index DIR).")
        else:
            info = self.model_info(self.bits)
        bits = int(info["bits"])
        if tile is not None:
            vector = index.tile_vector(int(tile))
        elif image is not None:
            self._ensure_loaded(bits, timing)
            vector = self.image_tanh([self.read_query_image(image)], bits)[0]
        else:
            raise ConfigError("Caption needs a tile id or an image file.")
        timing["encode"] = (time.perf_counter() - start) * 1000
        _check_cancel(cancel)
        t0 = time.perf_counter()
        bank = self.caption_bank(bits, progress)
        timing["bank"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        matches = bank.search(pack(vector)[0], k)
        timing["captions"] = (time.perf_counter() - t0) * 1000
        hits = []
        if index is not None and similar > 0:
            exclude = [int(tile)] if tile is not None else []
            hits = index.search(vector, k=similar, exclude_ids=exclude)
        timing["total"] = (time.perf_counter() - start) * 1000 - timing.get("load", 0.0)
        return CaptionResult(matches, hits, info, timing)

    def close(self) -> None:
        """Close open indexes (models stay loaded)."""
        for path in list(self._indexes):
            self._forget_index(path)
