"""Shared fixtures for runtime tests: the real GeoTIFFs, small rasters written by rasterio,
and a cheap deterministic stand-in for the model (the raster and index code under test is real).

Nothing heavy at module top: numpy, rasterio and the model package are imported by the fixtures
that need them (the stand-in lives in ``fakes.py``), so tests that use none of them (the
``fast`` group: ``make test-fast``) collect and run without the stack. ``from conftest import
FakeEncoder`` still works (module ``__getattr__`` below).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import numpy as np
    from fakes import FakeEncoder

_FAKES = ("FakeEncoder", "FAKE_CONFIG", "BITS")


def __getattr__(name: str) -> Any:
    """``FakeEncoder``, ``FAKE_CONFIG`` and ``BITS`` from ``fakes``, imported on first use."""
    if name in _FAKES:
        import fakes

        return getattr(fakes, name)
    raise AttributeError(name)


@pytest.fixture(scope="session")
def geotiff_dir() -> Path:
    from model_runtime.paths import data_root

    root = data_root() / "geotiff"
    if not root.is_dir():
        pytest.skip(f"real rasters not found at {root} (set CACH_DATA)")
    return root


@pytest.fixture(name="FakeEncoder")
def fake_encoder_class() -> type[FakeEncoder]:
    """The stand-in encoder class, for tests that need several or a failing one."""
    from fakes import FakeEncoder

    return FakeEncoder


@pytest.fixture
def encoder() -> FakeEncoder:
    from fakes import FakeEncoder

    return FakeEncoder()


@pytest.fixture
def model_info() -> dict:
    from fakes import FakeEncoder

    return FakeEncoder().info.to_json()


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
    import rasterio
    from rasterio.transform import from_origin

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


# --- the fast group -------------------------------------------------------------------------
# Modules that need no raster I/O, model, worker process or data set: `make test-fast` (or
# `pytest -m fast tests/runtime`) runs them alone in seconds, and without rasterio, ONNX Runtime
# or the model package installed (test_fast_group.py checks that). A `-m fast` run does not even
# import the other modules.
FAST = (
    "test_protocol.py",
    "test_structure.py",
    "test_metrics.py",
    "test_speed_estimate.py",
    "test_session.py",
    "test_requests.py",
    "test_sizes.py",
)
_HERE = Path(__file__).resolve().parent


def _fast_run(config) -> bool:  # noqa: ANN001
    return (config.option.markexpr or "").strip() == "fast"


def pytest_ignore_collect(collection_path, config):  # noqa: ANN001
    path = Path(collection_path)
    if _fast_run(config) and path.suffix == ".py" and path.name.startswith("test_"):
        if path.resolve().parent == _HERE and path.name not in FAST:
            return True
    return None


def pytest_collection_modifyitems(config, items):  # noqa: ANN001
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == _HERE and path.name in FAST:
            item.add_marker(pytest.mark.fast)
