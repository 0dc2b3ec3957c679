"""The search panel's side of the map: the shown result's layer group, the outline of the
selected tile, zooming to it, the enlarged view of a tile that has no place on the map, and the
footprints written to a GeoPackage."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsRectangle,
    QgsWkbTypes,
)
from qgis.gui import QgsRubberBand
from qgis.PyQt.QtWidgets import QWidget

from ..model_runtime.protocol import Hit, SearchResult
from . import layers, wording
from .layers import FOOTPRINT_CRS, ResultLayers
from .viewer import TileViewer

POLYGON = QgsWkbTypes.GeometryType.PolygonGeometry


class ResultMap:
    """What the panel shows on the map canvas and in the layer tree."""

    def __init__(self, iface: Any, parent: QWidget) -> None:
        self.iface = iface
        self.parent = parent
        self.layers: ResultLayers | None = None
        self.band: QgsRubberBand | None = None  # the selected tile's outline
        self.viewer: TileViewer | None = None

    def canvas(self) -> Any:
        return self.iface.mapCanvas() if self.iface else None

    def show(
        self, result: SearchResult, key: str, title: str, query: str, index: str
    ) -> ResultLayers:
        """The result's group on top of the layer tree (a re-run query's old group goes)."""
        self.reset_highlight()
        provenance = wording.model_provenance(result.model)
        self.layers = layers.show_results(key, title, result.results, query, provenance, index)
        self._sync_canvas()
        self.layers.loader.done.connect(self._sync_canvas)
        return self.layers

    def _sync_canvas(self) -> None:
        """Make the canvas show the new group at once.

        QGIS's layer-tree bridge defers its update; seen under Xvfb, it could miss a group added
        from a worker callback, so ask it directly when the interface offers it.
        """
        bridge = getattr(self.iface, "layerTreeCanvasBridge", None)
        if callable(bridge):
            try:
                bridge().setCanvasLayers()
            except (AttributeError, RuntimeError, TypeError):
                pass

    def pending(self) -> int:
        """Tile layers of the shown result still to be added (one per event-loop turn)."""
        return self.layers.tiles_pending if self.layers is not None else 0

    def clear(self) -> int:
        """Remove "CACH results" from the layer tree; returns the number of layers removed."""
        self.layers = None
        self.reset_highlight()
        return layers.clear_results()

    def show_hit(self, hit: Hit) -> None:
        """A selected row: zoom to a georeferenced tile; view one that has no place on the map."""
        if hit.georeferenced:
            self.zoom_to_hit(hit)
        else:
            self.view_hit(hit)

    def view_hit(self, hit: Hit) -> TileViewer:
        """The tile enlarged, with "Open image"."""
        if self.viewer is None:
            self.viewer = TileViewer(self.parent)
        self.viewer.show_hit(hit)
        return self.viewer

    def zoom_to_hit(self, hit: Hit) -> QgsRectangle | None:
        """Zoom the canvas to a hit's footprint (with a margin) and outline it; the tile
        itself stays visible."""
        canvas = self.canvas()
        geom = layers.footprint_geometry(hit)
        if canvas is None or geom.isEmpty():
            return None
        dest = canvas.mapSettings().destinationCrs()
        transform = QgsCoordinateTransform(
            QgsCoordinateReferenceSystem(FOOTPRINT_CRS), dest, QgsProject.instance()
        )
        geom.transform(transform)
        rect = geom.boundingBox()
        rect.scale(1.5)
        canvas.setExtent(rect)
        canvas.refresh()
        if self.band is None:
            self.band = layers.outline_band(canvas)
        self.band.setToGeometry(geom, dest)
        return rect

    def reset_highlight(self) -> None:
        if self.band is not None:
            self.band.reset(POLYGON)

    def highlight_geometry(self) -> Any:
        """The outline of the selected tile (empty when none), in canvas CRS."""
        return self.band.asGeometry() if self.band is not None else None

    def save_footprints(self, path: str) -> tuple[str, Qgis.MessageLevel]:
        """Write the shown footprints to a GeoPackage: what to tell the analyst (which rows
        have no geometry and why) and how loudly; ("", Info) with nothing shown. Raises
        OSError when the file cannot be written."""
        footprints = self.layers.footprints if self.layers is not None else None
        if footprints is None:
            return "", Qgis.MessageLevel.Info
        layers.save_footprints(footprints, path)
        no_geometry = layers.rows_without_geometry(footprints)
        text = wording.footprints_saved_text(path, no_geometry)
        return text, Qgis.MessageLevel.Warning if no_geometry else Qgis.MessageLevel.Success

    def cleanup(self) -> None:
        """Remove what was put on the canvas (plugin unload)."""
        layers.stop_loading()
        if self.band is not None:
            canvas = self.canvas()
            self.band.reset(POLYGON)
            if canvas is not None:
                canvas.scene().removeItem(self.band)
            self.band = None
        if self.viewer is not None:
            self.viewer.close()
