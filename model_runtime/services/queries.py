"""Query parts -> one query: pure functions (NumPy in, NumPy out), plus reading a query image.

A combined query is the weighted sum of its L2-normalised parts: text, image, tile, the mean of
the positive example tiles, minus the mean of the negative ones (``protocol.DEFAULT_WEIGHTS``).
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model_runtime.errors import ConfigError, DataError
from model_runtime.protocol import DEFAULT_WEIGHTS


@dataclass(frozen=True)
class QueryParts:
    """The parts of one query as vectors of one space (tanh outputs, or projections)."""

    text: np.ndarray | None = None
    image: np.ndarray | None = None
    tile: np.ndarray | None = None
    positive: Sequence[np.ndarray] = field(default_factory=tuple)
    negative: Sequence[np.ndarray] = field(default_factory=tuple)

    def empty(self) -> bool:
        return (self.text is None and self.image is None and self.tile is None
                and not len(self.positive) and not len(self.negative))

    def shifted(self, origin: np.ndarray | None) -> QueryParts:
        """Every part minus ``origin`` (projections centred on an archive's own mean before
        they are normalised and combined: ``Index.proj_centre``); None: the parts as they are."""
        if origin is None:
            return self
        o = np.asarray(origin, np.float32).reshape(-1)

        def one(v):
            return None if v is None else np.asarray(v, np.float32).reshape(-1) - o

        return QueryParts(one(self.text), one(self.image), one(self.tile),
                          [one(v) for v in self.positive], [one(v) for v in self.negative])


def check_weights(weights: dict[str, float] | None) -> dict[str, float]:
    """Defaults overlaid with ``weights``; unknown names are a config error."""
    unknown = set(weights or {}) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ConfigError(f"unknown query weight(s) {sorted(unknown)}; use {list(DEFAULT_WEIGHTS)}")
    return {**DEFAULT_WEIGHTS, **(weights or {})}


def unit(vec: np.ndarray) -> np.ndarray:
    vec = np.asarray(vec, dtype=np.float32).reshape(-1)
    return vec / (np.linalg.norm(vec) + 1e-12)


def combine(vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted sum of query vectors -> float32. Negative weights push away."""
    vectors = [np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors]
    if not vectors:
        raise ConfigError("a combined query needs at least one vector")
    if len({v.size for v in vectors}) != 1:
        raise ConfigError(f"query vectors differ in length: {[v.size for v in vectors]}")
    weights = [1.0] * len(vectors) if weights is None else [float(w) for w in weights]
    if len(weights) != len(vectors):
        raise ConfigError(f"{len(vectors)} query vectors but {len(weights)} weights")
    return np.sum([w * v for v, w in zip(vectors, weights, strict=True)], axis=0, dtype=np.float32)


def query_vector(parts: QueryParts, weights: dict[str, float] | None = None) -> np.ndarray:
    """The one vector a query searches with (a single part is returned normalised as is)."""
    w = check_weights(weights)
    vecs: list[np.ndarray] = []
    scales: list[float] = []
    for name in ("text", "image", "tile"):
        value = getattr(parts, name)
        if value is not None:
            vecs.append(unit(value))
            scales.append(w[name])
    for name, sign in (("positive", 1.0), ("negative", -1.0)):
        group = getattr(parts, name)
        if len(group):
            vecs.append(unit(np.mean([unit(v) for v in group], axis=0)))
            scales.append(sign * w[name])
    if not vecs:
        raise ConfigError("A search needs text, an image, a tile or positive example tiles.")
    if len(vecs) == 1 and scales[0] > 0:
        return vecs[0]
    return combine(vecs, scales)


#: the most pixels a query picture (PNG, JPEG, ...) may have: it is decoded whole, so a larger
#: one is refused (docs/protocol.md, "Limits"); TIFF rasters are read decimated, at any size
MAX_QUERY_PIXELS = 100_000_000
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _check_query_file(path: Path) -> None:
    """A query image must be an existing regular file (a FIFO or device would block or never
    end): a coded error that says which, never 'does not exist' for something that exists."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"The query image {path} does not exist.", code="file_not_found") from None
    except (OSError, ValueError) as err:  # a NUL byte, a name too long, no permission
        raise DataError(f"The query image {path!r} cannot be opened ({err}).",
                        code="image_unreadable") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"The query image {path} is a folder, not an image file.",
                        code="image_unreadable")
    if not stat.S_ISREG(mode):
        raise DataError(f"The query image {path} is not a regular file (a pipe, a device or a "
                        "socket); give an image file.", code="image_unreadable")


def _too_large(path: Path, pixels: int | None) -> DataError:
    size = f" ({pixels / 1e6:,.0f} megapixels)" if pixels else ""
    return DataError(
        f"The query image {path} is too large{size}: query pictures may have at most "
        f"{MAX_QUERY_PIXELS / 1e6:,.0f} megapixels. Crop or shrink it, or save it as a (tiled) "
        "GeoTIFF, which is read decimated at any size.", code="image_unreadable",
        max_pixels=MAX_QUERY_PIXELS)


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) in _TIFF_MAGIC


def _read_picture(path: Path) -> np.ndarray | None:
    """The image as RGB through Pillow, None when Pillow does not read it as a picture."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # capped below
            with Image.open(path) as img:
                pixels = img.width * img.height
                if pixels > MAX_QUERY_PIXELS:
                    if _is_tiff(path):
                        return None
                    raise _too_large(path, pixels)
                if img.mode in ("RGB", "RGBA", "L", "P", "CMYK", "LA"):
                    return np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError:
        if not _is_tiff(path):
            raise _too_large(path, None) from None
    except (UnidentifiedImageError, OSError, ValueError):
        pass  # not something Pillow reads as a picture: try it as a raster
    return None


def read_query_image(path: str | os.PathLike) -> np.ndarray:
    """An example image file as HxWx3 uint8: plain images via Pillow (at most
    :data:`MAX_QUERY_PIXELS`); rasters (multi-band, 16-bit, GeoTIFF) whole, decimated, through the
    same band choice and stretch as indexing."""
    path = Path(path).expanduser()
    _check_query_file(path)
    picture = _read_picture(path)
    if picture is not None:
        return picture
    from model_runtime.raster.tiling import TilingOptions, raster_info, read_window

    try:
        opts = TilingOptions()  # read decimated to the model's size, however large
        info = raster_info(path, opts)
        return read_window(path, (0, 0, info.width, info.height), opts, info=info)
    except DataError as err:
        raise DataError(f"The query image {path} cannot be read ({err}).",
                        code="image_unreadable") from err
