"""Coordinate checks (model_runtime.raster.geo): nothing a user or a raster sends can hang or
crash a CRS transform; every bad value is a data error with a message, an unknown CRS a config
error."""

from __future__ import annotations

import math
import threading
import time

import pytest
from affine import Affine
from hostile import ORTHO, write_geotiff
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds

from model_runtime.errors import ConfigError, DataError
from model_runtime.raster import geo, tiling
from model_runtime.raster.geo import bbox_to_4326, check_point, footprints


def _within(seconds: float, fn, *args):
    """Run ``fn`` in a daemon thread: a hang fails the test instead of stalling the suite."""
    out: list = []

    def run():
        try:
            out.append(("ok", fn(*args)))
        except Exception as err:
            out.append(("err", err))

    start = time.perf_counter()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__}{args} still running after {seconds} s"
    return out[0], time.perf_counter() - start


# --- points --------------------------------------------------------------------------------------
def test_a_point_at_1e308_in_web_mercator_is_refused_in_milliseconds():
    """The case that held the worker's CPU in a PROJ transform (x = y = 1e308, EPSG:3857)."""
    (kind, err), seconds = _within(10, check_point, 1e308, 1e308, "EPSG:3857")
    assert kind == "err" and isinstance(err, DataError) and err.code == "bad_coordinates"
    assert "1e+308" in str(err) and "EPSG:3857" in str(err)
    assert seconds < 2.0  # includes working out the CRS's domain once
    (kind, err), seconds = _within(10, check_point, -1e20, 3.0, "EPSG:3857")
    assert kind == "err" and seconds < 0.1  # the domain is cached


@pytest.mark.parametrize("x, y", [(math.nan, 0.0), (0.0, math.inf), (-math.inf, 1.0),
                                  ("a", 1.0), (None, 2.0)])
def test_non_finite_or_non_numeric_points_are_data_errors(x, y):
    with pytest.raises(DataError) as err:
        check_point(x, y, "EPSG:3857")
    assert err.value.code == "bad_coordinates"


def test_points_inside_the_crs_domain_come_back_as_lon_lat():
    lon, lat = check_point(261845.7, 6250566.7, "EPSG:3857")
    assert lon == pytest.approx(2.3522, abs=1e-4) and lat == pytest.approx(48.8566, abs=1e-4)
    assert check_point(2.35, 48.85) == (2.35, 48.85)
    assert check_point(190.0, 10.0) == pytest.approx((-170.0, 10.0))  # wrapped
    # a UTM coordinate a little outside its zone is ordinary and transforms
    (x,), (y,) = warp_transform("EPSG:4326", "EPSG:32633", [21.0], [50.0])
    assert check_point(x, y, "EPSG:32633") == pytest.approx((21.0, 50.0), abs=1e-6)


def test_points_outside_the_crs_domain_are_data_errors():
    with pytest.raises(DataError, match="latitude"):
        check_point(0.0, 100.0, "EPSG:4326")
    with pytest.raises(DataError) as err:  # inside the bounds, beyond the visible hemisphere
        check_point(6e6, 6e6, ORTHO)
    assert err.value.code == "bad_coordinates" and "+proj=ortho" in str(err.value)
    assert check_point(0.0, 0.0, ORTHO) == pytest.approx((0.0, 89.0))


@pytest.mark.parametrize("crs", ["EPSG:999999", "not a crs", "", None])
def test_unknown_crs_is_a_config_error(crs):
    with pytest.raises(ConfigError) as err:
        check_point(1.0, 1.0, crs)
    assert err.value.code == "unknown_crs"


def test_domains_come_from_the_area_of_use_and_are_cached():
    web = geo.domain("EPSG:3857")
    assert web.area == (-180.0, -85.06, 180.0, 85.06) and not web.geographic
    assert web.bounds[2] > 20037508 and web.bounds[2] < 1e8
    assert geo.domain(CRS.from_epsg(3857)).bounds == web.bounds
    assert geo.domain("EPSG:3857") is web
    assert geo.domain("EPSG:4326").wgs84 and geo.domain("EPSG:4269").geographic


# --- boxes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bbox", [[0, 0, math.nan, 1], [0, -math.inf, 1, 1],
                                  [math.inf, 0, math.inf, 1]])
def test_nan_or_infinite_boxes_are_data_errors_never_internal(bbox):
    with pytest.raises(DataError) as err:
        bbox_to_4326(bbox, "EPSG:3857")
    assert err.value.code == "bad_coordinates"


def test_malformed_boxes_are_config_errors():
    for bbox in ([0, 0, 1], [1, 0, 0, 1], "0,0,1,1"):
        with pytest.raises(ConfigError):
            bbox_to_4326(bbox)


def test_boxes_transform_like_rasterio_and_are_clipped_to_the_world():
    box = (400_000, 4_000_000, 600_000, 5_000_000)
    assert bbox_to_4326(box, "EPSG:32633") == pytest.approx(
        transform_bounds("EPSG:32633", "EPSG:4326", *box, densify_pts=21))
    assert bbox_to_4326([-250, -100, 250, 100]) == (-180.0, -90.0, 180.0, 90.0)
    # a zoomed-out map larger than the world still searches the whole world
    (kind, world), seconds = _within(10, bbox_to_4326, [-1e9, -1e9, 1e9, 1e9], "EPSG:3857")
    assert kind == "ok" and world[0] == -180.0 and world[2] == 180.0 and world[3] > 85
    with pytest.raises(DataError) as err:  # wholly outside
        bbox_to_4326([4e8, 4e8, 5e8, 5e8], "EPSG:3857")
    assert err.value.code == "bad_coordinates"
    with pytest.raises(DataError):  # part of it has no longitude/latitude
        bbox_to_4326([-7e6, -7e6, 7e6, 7e6], ORTHO)


def test_bbox_1e308_returns_quickly():
    (kind, err), seconds = _within(10, bbox_to_4326, [1e308, 1e308, 1e308, 1e308], "EPSG:3857")
    assert kind == "err" and err.code == "bad_coordinates" and seconds < 1.0


# --- footprints ----------------------------------------------------------------------------------
def test_footprints_match_a_direct_transform_and_keep_ring_order():
    transform = from_origin(500_000, 5_000_000, 10, 10)
    src_fp, fp = footprints(transform, CRS.from_epsg(32633), (0, 0, 64, 32))
    ring = src_fp["coordinates"][0]
    assert ring[0] == ring[-1] == [500_000.0, 5_000_000.0] and ring[1] == [500_000.0, 4_999_680.0]
    lons, lats = warp_transform("EPSG:32633", "EPSG:4326", [p[0] for p in ring[:4]],
                                [p[1] for p in ring[:4]])
    flat = [v for point in fp["coordinates"][0][:4] for v in point]
    assert flat == pytest.approx([v for pair in zip(lons, lats, strict=True) for v in pair])
    wgs = footprints(from_origin(10, 50, 0.01, 0.01), CRS.from_epsg(4326), (0, 0, 8, 8))
    assert wgs[0] is wgs[1]
    pixels, none = footprints(Affine.identity(), None, (5, 6, 10, 20))
    assert none is None and pixels["coordinates"][0][2] == [15.0, 26.0]
    assert tiling.footprints is footprints  # moved, still importable from tiling


def test_a_global_grid_overshooting_a_pole_is_clamped():
    src_fp, fp = footprints(from_origin(-180, 90.25, 0.5, 0.5), CRS.from_epsg(4326), (0, 0, 4, 4))
    assert src_fp["coordinates"][0][0] == [-180.0, 90.25]
    assert max(p[1] for p in fp["coordinates"][0]) == 90.0


def test_corners_outside_the_projection_domain_are_data_errors_naming_the_file():
    """``+proj=ortho +lat_0=89``, origin (-1e7, 1e7) at 1000 m/px: CPLE_AppDefinedError before."""
    ortho = CRS.from_string(ORTHO)
    with pytest.raises(DataError) as err:
        footprints(from_origin(-1e7, 1e7, 1000, 1000), ortho, (0, 0, 256, 256), "/d/o.tif")
    assert err.value.code == "bad_coordinates" and str(err.value).startswith("/d/o.tif: ")
    assert "georeferencing" in str(err.value)
    for origin in ((-1e9, 1e9), (1e308, 0.0)):  # far outside: refused before any transform
        (kind, bad), seconds = _within(10, footprints, from_origin(*origin, 1000, 1000),
                                       CRS.from_epsg(3857), (0, 0, 4, 4), "/d/far.tif")
        assert kind == "err" and bad.code == "bad_coordinates" and seconds < 1.0
    nan = Affine(math.nan, 0, 0, 0, -1, 0)
    with pytest.raises(DataError, match="corner"):
        footprints(nan, CRS.from_epsg(32633), (0, 0, 4, 4), "/d/nan.tif")


def test_tiling_a_raster_outside_its_projection_names_the_file(tmp_path):
    path = write_geotiff(tmp_path / "ortho.tif", crs=ORTHO,
                         transform=from_origin(-1e7, 1e7, 1000, 1000))
    with pytest.raises(DataError) as err:
        list(tiling.iter_tiles(path))
    assert err.value.code == "bad_coordinates" and str(path) in str(err.value)
