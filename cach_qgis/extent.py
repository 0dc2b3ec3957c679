"""Map extents as the runtime reads them: a CRS id its PROJ understands, and a rectangle as a
search's ``bbox``/``bbox_crs``. One place for the search panel's "current map extent only" and
the Processing algorithm's "Only within extent"."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsRectangle,
)

from .layers import FOOTPRINT_CRS
from .session import Bbox


def crs_id(crs: QgsCoordinateReferenceSystem) -> str:
    """An id the runtime's PROJ understands: the authority id, else WKT."""
    return crs.authid() or crs.toWkt()


def rect_bbox(rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> Bbox:
    """``rect`` (in ``crs``) as ``bbox``/``bbox_crs``. A CRS without an authority id is sent
    as EPSG:4326: the rectangle is transformed there, so every runtime reads it."""
    if not crs.authid():
        target = QgsCoordinateReferenceSystem(FOOTPRINT_CRS)
        transform = QgsCoordinateTransform(crs, target, QgsProject.instance())
        rect, crs = transform.transformBoundingBox(rect), target
    return [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()], crs_id(crs)


def canvas_bbox(canvas: Any) -> Bbox | None:
    """What the map canvas shows now, as ``bbox``/``bbox_crs``; None without a canvas."""
    if canvas is None:
        return None
    return rect_bbox(canvas.extent(), canvas.mapSettings().destinationCrs())
