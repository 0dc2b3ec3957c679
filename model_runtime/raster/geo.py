"""Coordinates checked before they are transformed, so that no point, box or raster corner can
hang or crash a CRS transform.

PROJ can spend minutes in a transform of an absurd value (x = 1e308 in EPSG:3857 never returns)
and raises ``CPLE_AppDefinedError`` for a point outside a projection's domain (the far side of
an orthographic projection). So every coordinate is checked first: finite, and inside the CRS's
*domain*: its area of use (from the EPSG database, or the whole world for a custom CRS), projected
into the CRS and widened by :data:`MARGIN`. Only then is it transformed, and the result must be
finite longitudes and latitudes. A failure is a ``DataError`` with code ``bad_coordinates``; a CRS
that cannot be parsed is a ``ConfigError`` with code ``unknown_crs``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds

from model_runtime.errors import ConfigError, DataError

LOG = logging.getLogger(__name__)

WORLD = (-180.0, -90.0, 180.0, 90.0)
#: how far beyond its area of use a projected coordinate may lie, as a fraction of the area's
#: larger side (UTM coordinates a little outside their zone are common and transform fine)
MARGIN = 0.5
#: a geographic raster's edge may overshoot a pole by this much (a global grid read as
#: pixel-is-point); its footprint is clamped to the pole
POLE_SLACK = 1.0
#: samples per side of the area-of-use grid projected to find a CRS's bounds
_GRID = 21
#: latitude limit of the samples (a Mercator's y grows without bound towards the poles)
_MAX_LAT = 89.9
#: said of a raster whose corners cannot be placed on the map
_HINT = "; the raster's georeferencing or CRS is probably wrong"
_BBOX = re.compile(r"BBOX\[\s*([^,\]]+),\s*([^,\]]+),\s*([^,\]]+),\s*([^,\]]+)\]")


@dataclass(frozen=True)
class Domain:
    """Where coordinates of one CRS may be transformed. ``bounds`` (minx, miny, maxx, maxy) are
    in the CRS's own units; ``area`` is its area of use in lon/lat (west may exceed east across
    the antimeridian)."""

    crs: CRS
    name: str
    geographic: bool
    wgs84: bool
    area: tuple[float, float, float, float]
    bounds: tuple[float, float, float, float]

    def contains(self, x: float, y: float) -> bool:
        minx, miny, maxx, maxy = self.bounds
        return minx <= x <= maxx and miny <= y <= maxy


def parse_crs(crs) -> CRS:
    """A rasterio CRS from anything rasterio accepts ('EPSG:3857', WKT, PROJ string, a CRS)."""
    if isinstance(crs, CRS):
        return crs
    if crs is None or (isinstance(crs, str) and not crs.strip()):
        raise ConfigError("no CRS given", code="unknown_crs")
    try:
        return CRS.from_user_input(crs)
    except Exception as err:  # CRSError, and TypeError for odd inputs
        raise ConfigError(f"unknown CRS {str(crs)[:200]!r} ({_reason(err)})",
                          code="unknown_crs") from err


def domain(crs) -> Domain:
    """The :class:`Domain` of a CRS, computed once per CRS (cached)."""
    key = crs if isinstance(crs, str) else parse_crs(crs).to_wkt()
    found = _DOMAINS.get(key)
    if found is None:
        found = _domain(parse_crs(crs))
        if len(_DOMAINS) >= 256:
            _DOMAINS.clear()
        _DOMAINS[key] = found
    return found


#: CRS text or WKT -> Domain (a plain dict: a lost race only computes a domain twice)
_DOMAINS: dict[str, Domain] = {}


def _domain(crs: CRS) -> Domain:
    name = _crs_name(crs)
    # a CRS read from a file's WKT1 can lack the usage of its EPSG definition: take the area of
    # use from the authority, so one CRS has one domain whatever object it came in
    epsg = crs.to_epsg()
    area = _area_of_use(CRS.from_epsg(epsg) if epsg else crs)
    if crs.is_geographic:
        return Domain(crs, name, True, crs.to_epsg() == 4326, area, (-360.0, -90.0, 360.0, 90.0))
    bounds = _projected_bounds(crs, area)
    if bounds is None:
        raise DataError(f"{name}: no point of its area of use can be expressed in longitude "
                        "and latitude, so it cannot be placed on a map", code="bad_coordinates")
    return Domain(crs, name, False, False, area, _widen(bounds, MARGIN))


def _crs_name(crs: CRS) -> str:
    auth = crs.to_authority()
    if auth:
        return f"{auth[0]}:{auth[1]}"
    text = crs.to_proj4() or crs.to_wkt()
    return text if len(text) <= 120 else text[:117] + "..."


def _area_of_use(crs: CRS) -> tuple[float, float, float, float]:
    """(west, south, east, north) from the CRS's WKT2 usage; the world when it has none."""
    found = _BBOX.findall(crs.to_wkt(version="WKT2_2019"))
    if not found:
        return WORLD
    try:
        south, west, north, east = (float(v) for v in found[-1])
    except ValueError:
        return WORLD
    return west, south, east, north


def _projected_bounds(crs: CRS, area) -> tuple[float, float, float, float] | None:
    """Bounds of the area of use projected into ``crs``, from a grid of sample points (those
    outside the projection's domain are left out)."""
    west, south, east, north = area
    if east < west:  # across the antimeridian
        east += 360.0
    lons = [west + (east - west) * i / (_GRID - 1) for i in range(_GRID)]
    south, north = max(south, -_MAX_LAT), min(north, _MAX_LAT)  # Mercator-like CRSs: y -> inf
    lats = [south + (north - south) * j / (_GRID - 1) for j in range(_GRID)]
    pts = [(lon, lat) for lon in lons for lat in lats]
    try:
        xs, ys = warp_transform("EPSG:4326", crs, [p[0] for p in pts], [p[1] for p in pts])
        good = list(zip(xs, ys, strict=True))
    except Exception:  # some samples are outside the projection's domain: take them one by one
        good = [_forward_one(crs, lon, lat) for lon, lat in pts]
    good = [(x, y) for x, y in (g for g in good if g) if math.isfinite(x) and math.isfinite(y)]
    if not good:
        return None
    xs, ys = zip(*good, strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def _forward_one(crs: CRS, lon: float, lat: float) -> tuple[float, float] | None:
    try:
        (x,), (y,) = warp_transform("EPSG:4326", crs, [lon], [lat])
    except Exception:
        return None
    return x, y


def _widen(bounds, fraction: float) -> tuple[float, float, float, float]:
    minx, miny, maxx, maxy = bounds
    pad = fraction * max(maxx - minx, maxy - miny)
    return minx - pad, miny - pad, maxx + pad, maxy + pad


def _finite(values: Sequence, what: str) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise DataError(f"{what} must be numbers, got {list(values)!r}",
                        code="bad_coordinates") from err
    if not all(math.isfinite(v) for v in out):
        raise DataError(f"{what} must be finite numbers, got {out}", code="bad_coordinates")
    return out


def _to_4326(dom: Domain, xs: list[float], ys: list[float], what: str, hint: str = ""):
    """Transform checked coordinates; a failure or a non-finite result is a ``DataError``."""
    try:
        lons, lats = warp_transform(dom.crs, "EPSG:4326", xs, ys)
    except Exception as err:  # CPLE_AppDefinedError: outside the projection's domain
        raise DataError(f"{what} is outside what {dom.name} can express ({_reason(err)}){hint}",
                        code="bad_coordinates") from err
    values = list(lons) + list(lats)
    if not all(math.isfinite(v) for v in values) or any(abs(v) > 90.0 + 1e-9 for v in lats):
        raise DataError(f"{what} is outside what {dom.name} can express (it has no longitude "
                        f"and latitude there){hint}", code="bad_coordinates")
    return list(lons), list(lats)


def check_point(x: float, y: float, crs="EPSG:4326") -> tuple[float, float]:
    """``(lon, lat)`` in EPSG:4326 of a point given in ``crs``, checked before transforming:
    finite and inside the CRS's domain, else ``DataError(code="bad_coordinates")``."""
    x, y = _finite((x, y), "point coordinates")
    dom = domain(crs)
    if not dom.contains(x, y):
        raise DataError(f"point ({x:.6g}, {y:.6g}) is outside what {dom.name} can express "
                        f"({_bounds_text(dom)})", code="bad_coordinates")
    if dom.wgs84:
        return _wrap_lon(x), y
    (lon,), (lat,) = _to_4326(dom, [x], [y], f"point ({x:.6g}, {y:.6g})")
    return _wrap_lon(lon), lat


def _wrap_lon(lon: float) -> float:
    return lon if -180.0 <= lon <= 180.0 else (lon + 180.0) % 360.0 - 180.0


def _bounds_text(dom: Domain) -> str:
    minx, miny, maxx, maxy = dom.bounds
    if dom.geographic:
        return "longitude -360..360, latitude -90..90"
    return f"x {minx:.6g}..{maxx:.6g}, y {miny:.6g}..{maxy:.6g}"


def bbox_to_4326(bbox: Sequence[float], crs="EPSG:4326") -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) in ``crs`` -> (west, south, east, north) in EPSG:4326 (edges
    densified). The box is clipped to the CRS's domain first, so a box larger than the world
    (a zoomed-out map) still works; one wholly outside it is a ``DataError``."""
    if isinstance(bbox, (str, bytes)) or len(bbox) != 4:
        raise ConfigError(f"bbox must be [minx, miny, maxx, maxy], got {bbox!r}")
    minx, miny, maxx, maxy = _finite(bbox, "bbox values")
    if minx > maxx or miny > maxy:
        raise ConfigError(f"bbox must be [minx, miny, maxx, maxy], got {list(bbox)}")
    dom = domain(crs)
    box = _clip((minx, miny, maxx, maxy), dom.bounds)
    if box is None:
        raise DataError(f"bbox {[minx, miny, maxx, maxy]} lies outside what {dom.name} can "
                        f"express ({_bounds_text(dom)})", code="bad_coordinates")
    if dom.wgs84:
        return _clip(box, WORLD) or WORLD
    what = f"bbox {[minx, miny, maxx, maxy]}"
    try:
        west, south, east, north = transform_bounds(dom.crs, "EPSG:4326", *box, densify_pts=21)
    except Exception as err:
        raise DataError(f"{what} is outside what {dom.name} can express ({_reason(err)})",
                        code="bad_coordinates") from err
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise DataError(f"{what} is outside what {dom.name} can express (part of it has no "
                        "longitude and latitude)", code="bad_coordinates")
    if west > east:  # across the antimeridian: keep every longitude (the store's boxes are plain)
        west, east = -180.0, 180.0
    return _clip((west, south, east, north), WORLD) or WORLD


def _clip(box, limits) -> tuple[float, float, float, float] | None:
    minx, miny = max(box[0], limits[0]), max(box[1], limits[1])
    maxx, maxy = min(box[2], limits[2]), min(box[3], limits[3])
    if minx > maxx or miny > maxy:
        return None
    return minx, miny, maxx, maxy


def _ring(xs: Sequence[float], ys: Sequence[float]) -> dict:
    coords = [[float(x), float(y)] for x, y in zip(xs, ys, strict=True)]
    coords.append(coords[0])
    return {"type": "Polygon", "coordinates": [coords]}


def footprints(
    src_transform, crs, window: tuple[int, int, int, int], source: str = ""
) -> tuple[dict, dict | None]:
    """(footprint in source CRS or pixels, footprint in EPSG:4326 or None) of a window.

    Corners go top-left, bottom-left, bottom-right, top-right: counter-clockwise on a north-up
    map, as GeoJSON wants for exterior rings. A corner that is not finite or lies outside what
    the CRS can express (wrong georeferencing) raises ``DataError`` naming ``source``."""
    col, row, width, height = window
    cols = [col, col, col + width, col + width]
    rows = [row, row + height, row + height, row]
    if crs is None:
        return _ring(cols, rows), None
    corners = [src_transform @ (c, r) for c, r in zip(cols, rows, strict=True)]
    xs, ys = (list(v) for v in zip(*corners, strict=True))
    what = f"{source + ': ' if source else ''}window {list(window)}"
    dom = domain(crs)
    _check_corners(dom, xs, ys, what)
    src_fp = _ring(xs, ys)
    lats = [max(-90.0, min(90.0, y)) for y in ys] if dom.geographic else ys
    if dom.wgs84:
        return src_fp, (src_fp if lats == ys else _ring(xs, lats))
    lons, lats = _to_4326(dom, xs, lats, f"{what}: a corner", _HINT)
    return src_fp, _ring(lons, lats)


def _check_corners(dom: Domain, xs: list[float], ys: list[float], what: str) -> None:
    for x, y in zip(xs, ys, strict=True):
        if not _corner_ok(dom, x, y):
            raise DataError(
                f"{what}: corner ({x:.6g}, {y:.6g}) is outside what {dom.name} can express "
                f"({_bounds_text(dom)}){_HINT}",
                code="bad_coordinates",
            )


def _corner_ok(dom: Domain, x: float, y: float) -> bool:
    if not (math.isfinite(x) and math.isfinite(y)):
        return False
    if dom.geographic:  # a global grid may overshoot a pole a little (clamped later)
        return -360.0 <= x <= 360.0 and abs(y) <= 90.0 + POLE_SLACK
    return dom.contains(x, y)


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]
