"""Cut rasters into encoder-ready RGB tiles with windowed rasterio reads.

Pure generators: ``iter_tiles(path, options)`` yields ``(array HxWx3 uint8, Tile)``;
``iter_tile_batches`` groups them. No Qt, no model. Cancellation is a ``threading.Event`` that
the generator checks between tiles. See ``docs/indexing.md`` for how bands, masks, stretch and
rasters without a CRS are handled.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from model_runtime.errors import CancelledError, ConfigError, DataError
from model_runtime.raster.gdal_open import open_raster
from model_runtime.raster.geo import footprints  # moved to geo; re-exported here

LOG = logging.getLogger(__name__)

# Plain JPEG/PNG/TIFF archives are a supported input, so this warning is noise, not news.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)

#: longest side of the decimated read used for the per-raster percentile stretch
STRETCH_SAMPLE_PX = 1024


@dataclass(frozen=True)
class TilingOptions:
    """How rasters are cut. ``tile_metres`` (ground size) wins over ``tile_size`` when the
    raster has a CRS; ``scales`` (1, 2) adds tiles twice as large, read decimated."""

    tile_size: int = 256
    tile_metres: float | None = None
    overlap: float = 0.0
    scales: tuple[int, ...] = (1,)
    bands: tuple[int, ...] | None = None
    min_valid: float = 0.5
    output_size: int | None = 224
    stretch: tuple[float, float] = (2.0, 98.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(int(b) for b in self.bands))
        object.__setattr__(self, "stretch", tuple(float(p) for p in self.stretch))
        if self.tile_size < 8:
            raise ConfigError(f"tile_size must be at least 8 pixels, got {self.tile_size}")
        if self.tile_metres is not None and self.tile_metres <= 0:
            raise ConfigError(f"tile_metres must be positive, got {self.tile_metres}")
        if not 0.0 <= self.overlap < 0.95:
            raise ConfigError(f"overlap is a fraction in [0, 0.95), got {self.overlap}")
        if not self.scales or min(self.scales) < 1:
            raise ConfigError(f"scales must be integers >= 1, got {self.scales}")
        if self.bands is not None and (len(self.bands) not in (1, 3) or min(self.bands) < 1):
            raise ConfigError(f"bands must be 1 or 3 band numbers (1-based), got {self.bands}")
        if not 0.0 <= self.min_valid <= 1.0:
            raise ConfigError(f"min_valid is a fraction in [0, 1], got {self.min_valid}")
        if self.output_size is not None and self.output_size < 8:
            raise ConfigError(f"output_size must be at least 8, got {self.output_size}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | str) -> TilingOptions:
        if isinstance(data, str):
            data = json.loads(data)
        data = dict(data)
        for key in ("scales", "bands", "stretch"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        try:
            return cls(**data)
        except TypeError as err:
            raise ConfigError(f"invalid tiling options {data}: {err}") from err


@dataclass(frozen=True)
class Tile:
    """Provenance of one tile. ``window`` is (col_off, row_off, width, height) in source pixels;
    ``footprint`` is a GeoJSON polygon in EPSG:4326 (None without CRS); ``footprint_src`` is in
    the source CRS, or in pixel coordinates (col, row) when the raster has no CRS."""

    source: str
    window: tuple[int, int, int, int]
    scale: int
    crs: str | None
    footprint: dict | None
    footprint_src: dict
    valid: float


@dataclass(frozen=True)
class RasterInfo:
    """What tiling needs to know about one raster, computed once per file."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs: str | None
    bands: tuple[int, int, int]
    palette: bool
    stretch: tuple[tuple[float, float], ...] | None  # per output band (lo, hi), None for uint8
    tile_px: int
    windows: tuple[tuple[int, int, int, int, int], ...] = field(repr=False)  # + scale


def crs_string(crs) -> str | None:
    """'EPSG:n' when the CRS has an EPSG code, else its WKT; None without a CRS."""
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _open(path: str | os.PathLike):
    return open_raster(path)


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:300]


def _choose_bands(src, options: TilingOptions) -> tuple[tuple[int, int, int], bool]:
    """Band numbers for R, G, B and whether band 1 carries a palette."""
    if options.bands is not None:
        bad = [b for b in options.bands if b > src.count]
        if bad:
            raise DataError(
                f"{src.name}: has {src.count} band(s); band order {options.bands} names {bad}"
            )
        bands = options.bands * 3 if len(options.bands) == 1 else options.bands
        return tuple(bands), False
    interp = list(src.colorinterp)
    if ColorInterp.palette in interp[:1] and src.count == 1:
        return (1, 1, 1), True
    if all(c in interp for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        return tuple(
            interp.index(c) + 1 for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        ), False
    data_bands = [i + 1 for i, c in enumerate(interp) if c != ColorInterp.alpha]
    if len(data_bands) >= 3:  # e.g. NAIP R,G,B,NIR with undefined interpretation
        return tuple(data_bands[:3]), False
    return (data_bands[0],) * 3 if data_bands else (1, 1, 1), False


def _pixel_metres(src) -> float | None:
    if src.crs is None:
        return None
    res = (abs(src.transform.a) + abs(src.transform.e)) / 2
    if src.crs.is_geographic:
        lat = (src.bounds.top + src.bounds.bottom) / 2
        return res * 111_320.0 * max(math.cos(math.radians(lat)), 0.01)
    try:
        _, factor = src.crs.linear_units_factor
    except Exception:
        factor = 1.0
    return res * factor


def _starts(length: int, size: int, stride: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:  # last tile flush with the edge, so every tile is full size
        starts.append(length - size)
    return starts


def plan_windows(
    width: int, height: int, tile_px: int, options: TilingOptions
) -> list[tuple[int, int, int, int, int]]:
    """All (col_off, row_off, width, height, scale) windows of a raster, row-major per scale.

    A raster smaller than a tile gives one window covering it (clipped to its size)."""
    out, seen = [], set()
    for scale in options.scales:
        size = tile_px * scale
        stride = max(1, round(size * (1 - options.overlap)))
        for row in _starts(height, size, stride):
            for col in _starts(width, size, stride):
                window = (col, row, min(size, width), min(size, height))
                if window not in seen:  # a larger scale on a small raster repeats a window
                    seen.add(window)
                    out.append((*window, scale))
    return out


def _stretch(src, bands: tuple[int, ...], options: TilingOptions):
    """Per-band robust (2-98 %) limits from a decimated read of the whole raster."""
    if src.dtypes[0] == "uint8":
        return None
    factor = max(1, math.ceil(max(src.width, src.height) / STRETCH_SAMPLE_PX))
    shape = (max(1, src.height // factor), max(1, src.width // factor))
    unique = sorted(set(bands))
    data = src.read(
        unique, out_shape=(len(unique), *shape), masked=True, resampling=Resampling.nearest
    )
    limits = {}
    for i, band in enumerate(unique):
        values = data[i].compressed().astype(np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            limits[band] = (0.0, 1.0)
            continue
        lo, hi = np.percentile(values, options.stretch)
        limits[band] = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
    return tuple(limits[b] for b in bands)


def raster_info(path: str | os.PathLike, options: TilingOptions) -> RasterInfo:
    """Open a raster once: band choice, stretch limits, tile size in pixels and windows."""
    with _open(path) as src:
        return _raster_info(src, options)


def _raster_info(src, options: TilingOptions) -> RasterInfo:
    bands, palette = _choose_bands(src, options)
    tile_px = _tile_px(src, options)
    if options.tile_metres is not None and src.crs is None:
        LOG.warning("%s has no CRS: tile_metres ignored, using %d px", src.name, tile_px)
    try:
        stretch = _stretch(src, bands, options)
    except Exception as err:
        raise DataError(f"{src.name}: cannot be read ({_reason(err)})") from err
    return RasterInfo(
        path=str(src.name),
        width=src.width,
        height=src.height,
        count=src.count,
        dtype=src.dtypes[0],
        crs=crs_string(src.crs),
        bands=bands,
        palette=palette,
        stretch=stretch,
        tile_px=tile_px,
        windows=tuple(plan_windows(src.width, src.height, tile_px, options)),
    )


def _to_uint8(data: np.ndarray, info: RasterInfo, bands: Sequence[int] | None = None
              ) -> np.ndarray:
    """Band planes as uint8: 8-bit data as is, other types stretched; ``bands`` names the band
    of each plane (default: ``info.bands``, one plane per output band)."""
    if info.stretch is None:
        return data.astype(np.uint8, copy=False)
    limits = dict(zip(info.bands, info.stretch, strict=True))
    out = np.empty(data.shape, dtype=np.uint8)
    for i, band in enumerate(bands or info.bands):
        lo, hi = limits[band]
        plane = (data[i].astype(np.float32) - lo) * (255.0 / (hi - lo))
        out[i] = np.clip(np.nan_to_num(plane, nan=0.0), 0, 255).astype(np.uint8)
    return out


#: decimation above which GDAL reads the window decimated (nearest) instead of at full
#: resolution followed by a PIL resize, when the file has no overview level to read from
GDAL_DECIMATE_ABOVE = 3.0
#: plain JPEGs up to this many pixels are decoded by Pillow (draft mode: libjpeg's DCT scaling
#: when tiles are downsampled 2x or more), once per file and reader thread
JPEG_DECODE_MAX_PX = 64_000_000
_JPEG = threading.local()


def _mask(src, data: np.ndarray, win: Window, shape: tuple[int, int]) -> np.ndarray:
    """Valid-pixel mask: nodata computed from the data already read; alpha and internal masks
    through GDAL's dataset mask."""
    flags = src.mask_flag_enums
    if all(MaskFlags.all_valid in f for f in flags):
        mask = np.ones(shape, dtype=bool)
    elif all(f == [MaskFlags.nodata] for f in flags) and src.nodata is not None:
        nodata = src.nodata
        if np.isnan(nodata):
            mask = ~np.isnan(data).all(axis=0)
        else:
            mask = (data != np.asarray(nodata, dtype=data.dtype)).any(axis=0)
    else:
        mask = src.dataset_mask(window=win, out_shape=shape, resampling=Resampling.nearest) > 0
    if np.issubdtype(data.dtype, np.floating):
        mask &= np.isfinite(data).all(axis=0)
    return mask


def _out_shape(info: RasterInfo, width: int, height: int, options: TilingOptions
               ) -> tuple[int, int]:
    if options.output_size is not None:
        return (options.output_size, options.output_size)
    scale = max(1, round(max(width, height) / info.tile_px))
    return (max(1, height // scale), max(1, width // scale))


def _read_shape(src, size: tuple[int, int], out: tuple[int, int]) -> tuple[int, int]:
    """The shape to ask GDAL for: the coarsest overview level that still has at least the
    output's resolution (one resample after it), else full resolution, else (large decimation
    without overviews) the output shape directly."""
    height, width = size
    factor = min(height / out[0], width / out[1])
    levels = [r for r in (src.overviews(1) if factor >= 2 else ()) if r <= factor]
    if levels:
        level = max(levels)
        return (max(1, round(height / level)), max(1, round(width / level)))
    if max(height / out[0], width / out[1]) > GDAL_DECIMATE_ABOVE:
        return out
    return size


def _plain_jpeg(src, info: RasterInfo) -> bool:
    """A JPEG Pillow can decode to the very pixels GDAL reads: RGB or grey, 8 bits, no mask,
    no stretch, a local file of a reasonable size."""
    return (src.driver == "JPEG" and src.count in (1, 3) and src.nodata is None
            and info.bands in ((1, 2, 3), (1, 1, 1)) and not info.palette
            and info.stretch is None and src.width * src.height <= JPEG_DECODE_MAX_PX
            and all(MaskFlags.all_valid in f for f in src.mask_flag_enums)
            and os.path.isfile(src.name))


def _decoded_jpeg(path: str, reduce: int) -> Image.Image | None:
    """``path`` decoded at 1/``reduce`` scale (libjpeg draft), cached for this thread; None
    for colour models where Pillow's conversion is not GDAL's (CMYK, YCCK)."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns, reduce)
    if getattr(_JPEG, "key", None) != key:
        _JPEG.key, _JPEG.image = None, None  # free the previous file before decoding the next
        with Image.open(path) as img:
            if img.mode not in ("RGB", "L"):
                return None
            if reduce > 1:
                img.draft(img.mode, (-(-img.width // reduce), -(-img.height // reduce)))
            img.load()  # decoded while the file is open; RGB is used as is (no copy)
            _JPEG.image, _JPEG.key = (img if img.mode == "RGB" else img.convert("RGB")), key
    return _JPEG.image


def _read_jpeg(src, window: tuple[int, int, int, int], out: tuple[int, int]
               ) -> np.ndarray | None:
    """The window of a plain JPEG at ``out`` from Pillow's decode (draft-scaled when the tile is
    downsampled 2x or more), resampled once."""
    col, row, width, height = window
    factor = min(height / out[0], width / out[1])
    img = _decoded_jpeg(src.name, max((r for r in (8, 4, 2) if r <= factor), default=1))
    if img is None:
        return None
    sx, sy = img.width / src.width, img.height / src.height
    if (sx, sy) != (1.0, 1.0):  # draft-scaled: resample exactly the window's area
        box = (col * sx, row * sy, (col + width) * sx, (row + height) * sy)
        return np.asarray(img.resize((out[1], out[0]), Image.BILINEAR, box=box))
    if (col, row, width, height) != (0, 0, img.width, img.height):
        img = img.crop((col, row, col + width, row + height))  # edges clamp as GDAL's read
    if (height, width) != out:
        img = img.resize((out[1], out[0]), Image.BILINEAR)
    return np.asarray(img)


def _planes_to_rgb(planes: list[np.ndarray], out: tuple[int, int]) -> np.ndarray:
    """Three 2-D uint8 planes -> HxWx3 at ``out``: interleaved and resampled once in Pillow."""
    img = Image.merge("RGB", [Image.fromarray(p) for p in planes])
    if img.size != (out[1], out[0]):
        img = img.resize((out[1], out[0]), Image.BILINEAR)
    return np.asarray(img)


def _read(
    src,
    info: RasterInfo,
    window: tuple[int, int, int, int],
    options: TilingOptions,
) -> tuple[np.ndarray, float]:
    """(HxWx3 uint8 array at the output size, valid fraction) for one window; masked pixels
    are black. Plain JPEGs decode in Pillow (draft scaling); other rasters read the overview
    level nearest the output resolution; one bilinear resample either way."""
    col, row, width, height = window
    out = _out_shape(info, width, height, options)
    rgb = _read_jpeg(src, window, out) if _plain_jpeg(src, info) else None
    if rgb is not None:
        return rgb, 1.0
    shape = _read_shape(src, (height, width), out)
    win = Window(col, row, width, height)
    unique = sorted(set(info.bands))
    data = src.read(
        unique, window=win, out_shape=(len(unique), *shape), resampling=Resampling.nearest
    )
    mask = _mask(src, data, win, shape)
    data = _to_uint8(data, info, unique)
    if not mask.all():
        data[:, ~mask] = 0
    if info.palette:
        lut = np.zeros((256, 3), dtype=np.uint8)
        for value, colour in src.colormap(1).items():
            lut[value] = colour[:3]
        rgb = lut[data[0]]
        rgb[~mask] = 0
        planes = [np.ascontiguousarray(rgb[..., i]) for i in range(3)]
    else:
        planes = [data[unique.index(b)] for b in info.bands]
    return _planes_to_rgb(planes, out), float(mask.mean())


def read_window(
    path: str | os.PathLike,
    window: Sequence[int],
    options: TilingOptions | None = None,
    info: RasterInfo | None = None,
) -> np.ndarray:
    """Pixels of one window as the encoder saw them (same bands, stretch and output size)."""
    options = options or TilingOptions()
    with _open(path) as src:
        info = info or _raster_info(src, options)
        try:
            rgb, _ = _read(src, info, tuple(int(v) for v in window), options)
        except Exception as err:
            raise DataError(f"{path}: cannot read window {list(window)} ({_reason(err)})") from err
    return rgb


@contextmanager
def opened(path: str | os.PathLike, options: TilingOptions) -> Iterator[tuple[Any, RasterInfo]]:
    """An open raster and its :class:`RasterInfo`: plan and read with one open."""
    with _open(path) as src:
        yield src, _raster_info(src, options)


def iter_tiles(
    path: str | os.PathLike,
    options: TilingOptions | None = None,
    cancel: threading.Event | None = None,
    info: RasterInfo | None = None,
    span: tuple[int, int] | None = None,
) -> Iterator[tuple[np.ndarray, Tile]]:
    """Yield ``(HxWx3 uint8, Tile)`` for every tile of one raster with enough valid pixels;
    ``span`` = (start, stop) limits it to those planned windows (one work unit).

    Raises ``DataError`` (naming the file) when it cannot be opened or a read fails, and
    ``CancelledError`` when ``cancel`` is set between tiles."""
    options = options or TilingOptions()
    with _open(path) as src:
        yield from tiles_of(src, info or _raster_info(src, options), options, cancel, span)


def tiles_of(src: Any, info: RasterInfo, options: TilingOptions,
             cancel: threading.Event | None = None, span: tuple[int, int] | None = None
             ) -> Iterator[tuple[np.ndarray, Tile]]:
    """:func:`iter_tiles` on a raster that is open already."""
    windows = info.windows if span is None else info.windows[span[0] : span[1]]
    for col, row, width, height, scale in windows:
        if cancel is not None and cancel.is_set():
            raise CancelledError("Tiling cancelled.")
        window = (col, row, width, height)
        try:
            rgb, valid = _read(src, info, window, options)
        except Exception as err:
            raise DataError(
                f"{info.path}: read failed at window {list(window)} ({_reason(err)})"
            ) from err
        if valid < options.min_valid or valid == 0.0:
            continue
        src_fp, fp = footprints(src.transform, src.crs, window, info.path)
        yield rgb, Tile(source=info.path, window=window, scale=scale, crs=info.crs,
                        footprint=fp, footprint_src=src_fp, valid=round(valid, 4))


def _tile_px(src, options: TilingOptions) -> int:
    if options.tile_metres is not None and (metres := _pixel_metres(src)):
        return max(8, round(options.tile_metres / metres))
    return options.tile_size


#: plain pictures whose size Pillow reads from the first bytes (no GDAL open)
PICTURE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _picture_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) of a plain JPEG/PNG from its header, None for anything else."""
    if not str(path).lower().endswith(PICTURE_EXTENSIONS):
        return None
    try:
        with Image.open(path) as img:
            if img.format in ("JPEG", "PNG"):
                return img.size
    except (OSError, ValueError):
        pass  # GDAL decides below, with its own error message
    return None


def count_windows(path: str | os.PathLike, options: TilingOptions | None = None) -> int:
    """Number of windows of a raster from its header alone (before empty tiles are skipped).
    Folders of scene pictures are counted from their headers without a GDAL open (the scan of
    a large folder stays cheap) when the tile size is in pixels."""
    options = options or TilingOptions()
    size = _picture_size(path) if options.tile_metres is None else None
    if size is not None:
        return len(plan_windows(size[0], size[1], options.tile_size, options))
    with _open(path) as src:
        return len(plan_windows(src.width, src.height, _tile_px(src, options), options))
