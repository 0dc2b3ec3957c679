"""Shared fixtures for runtime tests: the real GeoTIFFs, small rasters written by rasterio,
and a cheap deterministic stand-in for the model (the raster and index code under test is real)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from model_runtime.index.binary import pack
from model_runtime.paths import data_root

BITS = 64
MODEL_INFO = {"backbone": "fake-meancolour", "bits": BITS, "heads_sha": "0" * 8}


@pytest.fixture(scope="session")
def geotiff_dir() -> Path:
    root = data_root() / "geotiff"
    if not root.is_dir():
        pytest.skip(f"real rasters not found at {root} (set CACH_DATA)")
    return root


class FakeEncoder:
    """Random projection of 4x4 grid mean colours -> tanh; codes = packbits(tanh > 0).

    Deterministic, content-dependent, a few microseconds per tile. Counts calls and tiles so
    tests can tell what was (re-)encoded; ``fail_after`` batches raises to simulate a crash."""

    def __init__(self, bits: int = BITS, fail_after: int | None = None, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.proj = rng.standard_normal((48, bits)).astype(np.float32)
        self.bits = bits
        self.fail_after = fail_after
        self.batches = 0
        self.tiles = 0
        self.seen: list[np.ndarray] = []

    def features(self, arrays: list[np.ndarray]) -> np.ndarray:
        feats = []
        for a in arrays:
            h, w = a.shape[0] // 4 * 4, a.shape[1] // 4 * 4
            grid = a[:h, :w].reshape(4, h // 4, 4, w // 4, 3).mean(axis=(1, 3)).reshape(-1)
            feats.append(grid / 64.0 - 2.0)
        return np.stack(feats).astype(np.float32)

    def __call__(self, arrays: list[np.ndarray]):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise RuntimeError("simulated crash in the encoder")
        self.batches += 1
        self.tiles += len(arrays)
        self.seen.extend(arrays)
        tanh = np.tanh(self.features(arrays) @ self.proj)
        return pack(tanh), tanh


@pytest.fixture(name="FakeEncoder")
def fake_encoder_class() -> type[FakeEncoder]:
    """The stand-in encoder class, for tests that need several or a failing one."""
    return FakeEncoder


@pytest.fixture
def encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture
def model_info() -> dict:
    return dict(MODEL_INFO)


SAMPLE_FILES = (
    "rasterio/cogeo.tif",
    "rasterio/rotated.tif",
    "landsat/dsm.tif",
    "landsat/landsat_2020_epsg4326.tif",
)


@pytest.fixture
def sample_folder(tmp_path: Path, geotiff_dir: Path) -> Path:
    """A writable folder with copies of four small real rasters (different CRSs, one none)."""
    folder = tmp_path / "rasters"
    for rel in SAMPLE_FILES:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(geotiff_dir / rel, target)
    return folder


@pytest.fixture
def write_raster():
    """``write_raster(path, data[bands, rows, cols], crs=..., nodata=..., res=...)``."""
    return _write_raster


def _write_raster(
    path: Path,
    data: np.ndarray,
    crs: str | None = "EPSG:32633",
    nodata=None,
    res: float = 10.0,
    **profile,
) -> Path:
    """Write ``data`` [bands, rows, cols] as a GeoTIFF (origin 500000, 5000000)."""
    count, height, width = data.shape
    meta = dict(
        driver="GTiff", width=width, height=height, count=count, dtype=data.dtype, nodata=nodata
    )
    if crs is not None:
        meta.update(crs=crs, transform=from_origin(500000, 5000000, res, res))
    meta.update(profile)
    with rasterio.open(path, "w", **meta) as dst:
        dst.write(data)
    return path
