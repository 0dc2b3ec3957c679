"""Tiling on the real rasters in ../shared/data/geotiff and on small synthetic rasters."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from model_runtime.errors import CancelledError, ConfigError, DataError
from model_runtime.raster.tiling import (
    TilingOptions,
    iter_tiles,
    plan_windows,
    raster_info,
    read_window,
)

ALL = TilingOptions(min_valid=0.0)  # keep empty tiles too, to compare coverage with bounds
GEOREFERENCED = [
    "rasterio/RGB.byte.tif",
    "rasterio/cogeo.tif",
    "naip/m_4709963_se_14_1_20090818.tif",
    "landsat/landsat_2020_epsg4326.tif",
    "landsat/dsm.tif",
    "drone/pix4d_alpha_nodata.tif",
]


def _bbox(geoms):
    xs = [p[0] for g in geoms for p in g["coordinates"][0]]
    ys = [p[1] for g in geoms for p in g["coordinates"][0]]
    return min(xs), min(ys), max(xs), max(ys)


@pytest.mark.parametrize("rel", GEOREFERENCED)
def test_footprints_cover_exactly_the_raster_bounds(geotiff_dir, rel):
    tiles = [t for _, t in iter_tiles(geotiff_dir / rel, ALL)]
    with rasterio.open(geotiff_dir / rel) as src:
        bounds, crs = src.bounds, src.crs
    assert tiles and all(t.crs == f"EPSG:{crs.to_epsg()}" for t in tiles)
    assert _bbox([t.footprint_src for t in tiles]) == pytest.approx(tuple(bounds), abs=1e-6)
    expected = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    tol = 0.01 * max(expected[2] - expected[0], expected[3] - expected[1])  # edges are curved
    assert _bbox([t.footprint for t in tiles]) == pytest.approx(expected, abs=tol)


def test_windows_are_full_size_flush_with_edges_and_overlap():
    opts = TilingOptions(tile_size=256, overlap=0.5, scales=(1, 2))
    wins = plan_windows(791, 718, 256, opts)
    scale1 = [w for w in wins if w[4] == 1]
    assert {w[2] for w in scale1} == {256} and {w[3] for w in scale1} == {256}
    assert max(w[0] + w[2] for w in scale1) == 791 and max(w[1] + w[3] for w in scale1) == 718
    cols = sorted({w[0] for w in scale1})
    assert cols[:3] == [0, 128, 256]
    assert any(w[4] == 2 and w[2] == 512 for w in wins)
    # a raster smaller than a tile: one window, no repeat at the larger scale
    assert plan_windows(10, 15, 256, opts) == [(0, 0, 10, 15, 1)]


def test_naip_auto_bands_are_rgb_and_explicit_order_is_honoured(geotiff_dir):
    path = geotiff_dir / "naip/m_4709963_se_14_1_20090818.tif"
    assert raster_info(path, TilingOptions()).bands == (1, 2, 3)
    opts = TilingOptions(tile_size=64, bands=(4, 1, 2), output_size=None)
    rgb, tile = next(iter_tiles(path, opts))
    with rasterio.open(path) as src:
        win = Window(*tile.window)
        nir, red = src.read(4, window=win), src.read(1, window=win)
    assert rgb.shape == (64, 64, 3)
    np.testing.assert_array_equal(rgb[..., 0], nir)
    np.testing.assert_array_equal(rgb[..., 1], red)
    with pytest.raises(DataError, match="band"):
        raster_info(path, TilingOptions(bands=(5, 1, 2)))


def test_single_band_nodata_is_repeated_masked_and_mostly_empty_tiles_skipped(geotiff_dir):
    path = geotiff_dir / "rasterio/shade.tif"  # 88 % nodata (255)
    assert raster_info(path, TilingOptions()).bands == (1, 1, 1)
    assert list(iter_tiles(path, TilingOptions())) == []
    tiles = list(iter_tiles(path, TilingOptions(min_valid=0.05, output_size=None)))
    assert tiles
    rgb, tile = tiles[0]
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    with rasterio.open(path) as src:
        mask = src.read_masks(1, window=Window(*tile.window)) > 0
    assert tile.valid == pytest.approx(mask.mean(), abs=1e-3)
    assert (rgb[~mask] == 0).all()  # nodata pixels are black, not 255


def test_alpha_band_masks_like_nodata_and_is_not_a_colour(geotiff_dir):
    rgb_tiles = list(iter_tiles(geotiff_dir / "rasterio/RGB.byte.tif", TilingOptions()))
    rgba_tiles = list(iter_tiles(geotiff_dir / "rasterio/RGBA.byte.tif", TilingOptions()))
    assert raster_info(geotiff_dir / "rasterio/RGBA.byte.tif", TilingOptions()).bands == (1, 2, 3)
    total = len(raster_info(geotiff_dir / "rasterio/RGB.byte.tif", TilingOptions()).windows)
    assert 0 < len(rgba_tiles) < total  # corner tiles outside the rotated footprint are skipped
    assert [t.window for _, t in rgba_tiles] == [t.window for _, t in rgb_tiles]
    for (a, ta), (b, tb) in zip(rgb_tiles, rgba_tiles, strict=True):
        assert abs(ta.valid - tb.valid) < 0.02
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2


def test_float_dsm_is_stretched_by_robust_percentiles_ignoring_nodata(geotiff_dir):
    path = geotiff_dir / "landsat/dsm.tif"
    info = raster_info(path, TilingOptions())
    with rasterio.open(path) as src:
        values = src.read(1, masked=True).compressed()
    lo, hi = np.percentile(values, [2, 98])
    assert info.stretch[0] == pytest.approx((lo, hi), rel=0.05)
    assert info.stretch[0][0] > -9999
    arrays = [a for a, _ in iter_tiles(path, TilingOptions())]
    stacked = np.stack(arrays)
    assert stacked.dtype == np.uint8 and stacked.min() == 0 and stacked.max() == 255


def test_sixteen_bit_rgb_is_stretched_per_band(tmp_path, write_raster):
    rng = np.random.default_rng(0)
    data = np.stack(
        [rng.integers(1000 * (b + 1), 1000 * (b + 1) + 4000, (300, 300)) for b in range(3)]
    ).astype(np.uint16)
    path = write_raster(tmp_path / "u16.tif", data, photometric="RGB")
    rgb, _ = next(iter_tiles(path, TilingOptions(tile_size=300, output_size=None)))
    for band in range(3):
        channel = rgb[..., band]
        assert channel.min() == 0 and channel.max() == 255
        assert 100 < channel.mean() < 155  # same spread per band despite different offsets


def test_epsg4326_footprint_is_the_source_footprint(geotiff_dir):
    _, tile = next(iter_tiles(geotiff_dir / "landsat/landsat_2020_epsg4326.tif"))
    assert tile.crs == "EPSG:4326" and tile.footprint == tile.footprint_src


def test_rotated_file_without_crs_gives_one_pixel_footprint_tile(geotiff_dir):
    tiles = list(iter_tiles(geotiff_dir / "rasterio/rotated.tif", TilingOptions()))
    assert len(tiles) == 1
    rgb, tile = tiles[0]
    assert rgb.shape == (224, 224, 3) and rgb.dtype == np.uint8
    assert tile.crs is None and tile.footprint is None and tile.window == (0, 0, 10, 15)
    assert tile.footprint_src["coordinates"][0] == [[0, 0], [0, 15], [10, 15], [10, 0], [0, 0]]


def test_plain_png_without_georeference_is_tiled_silently(tmp_path):
    img = np.zeros((300, 400, 3), dtype=np.uint8)
    img[:, :200] = (255, 0, 0)
    Image.fromarray(img).save(tmp_path / "photo.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        tiles = list(iter_tiles(tmp_path / "photo.png", TilingOptions(tile_size=200)))
    assert [t.window for _, t in tiles] == [
        (0, 0, 200, 200),
        (200, 0, 200, 200),
        (0, 100, 200, 200),
        (200, 100, 200, 200),
    ]
    assert all(t.crs is None and t.footprint is None for _, t in tiles)
    assert tuple(tiles[0][0][100, 100]) == (255, 0, 0)
    assert tuple(tiles[1][0][100, 100]) == (0, 0, 0)


def test_tile_metres_sets_the_pixel_size_from_the_resolution(geotiff_dir, tmp_path, write_raster):
    path = write_raster(tmp_path / "ten_m.tif", np.ones((3, 100, 100), np.uint8), res=10.0)
    assert raster_info(path, TilingOptions(tile_metres=320)).tile_px == 32
    # no CRS: falls back to tile_size
    assert (
        raster_info(
            geotiff_dir / "rasterio/rotated.tif", TilingOptions(tile_metres=320, tile_size=64)
        ).tile_px
        == 64
    )


def test_cancel_event_stops_the_generator(geotiff_dir):
    cancel = threading.Event()
    gen = iter_tiles(geotiff_dir / "rasterio/cogeo.tif", TilingOptions(), cancel)
    next(gen)
    cancel.set()
    with pytest.raises(CancelledError):
        next(gen)


def test_unreadable_files_raise_data_error_naming_the_file(geotiff_dir, tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_text("not a raster")
    with pytest.raises(DataError, match="junk.tif"):
        list(iter_tiles(junk))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes((geotiff_dir / "rasterio/cogeo.tif").read_bytes()[:60_000])
    with pytest.raises(DataError, match="truncated.tif"):
        list(iter_tiles(truncated))


def test_options_validate_and_round_trip():
    opts = TilingOptions(tile_size=128, scales=[1, 2], bands=[4, 1, 2])
    assert TilingOptions.from_json(opts.to_json()) == opts
    for bad in ({"overlap": 1.0}, {"scales": (0,)}, {"bands": (1, 2)}, {"tile_size": 2}):
        with pytest.raises(ConfigError):
            TilingOptions(**bad)


def test_read_window_reproduces_the_tile(geotiff_dir):
    path = geotiff_dir / "landsat/dsm.tif"
    rgb, tile = next(iter_tiles(path))
    np.testing.assert_array_equal(read_window(path, tile.window), rgb)
