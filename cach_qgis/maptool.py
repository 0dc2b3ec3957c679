"""Click-a-tile map tool: ``locate`` the indexed tile under the click, then ``caption`` it."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import QgsCoordinateReferenceSystem, QgsPointXY, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QCursor

from .layers import FOOTPRINT_CRS, footprint_geometry
from .messages import CaptionResult, Hit, WorkerError
from .runtime_client import PendingRequest, RuntimeClient


class TileTool(QgsMapTool):
    """Clicking a point on an indexed raster shows its tile, captions and similar tiles."""

    located = pyqtSignal(object)  # Hit
    captioned = pyqtSignal(object, object)  # Hit, CaptionResult
    failed = pyqtSignal(object)  # WorkerError
    busy = pyqtSignal(bool)

    def __init__(
        self,
        canvas: QgsMapCanvas,
        client: RuntimeClient,
        index_path: Callable[[], str],
        k: Callable[[], int] = lambda: 20,
    ) -> None:
        super().__init__(canvas)
        self.client = client
        self.index_path = index_path
        self.k = k
        self.setCursor(QCursor(Qt.CrossCursor))
        self.band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self.band.setColor(QColor(255, 200, 0, 200))
        self.band.setFillColor(QColor(255, 200, 0, 40))
        self.band.setWidth(3)
        self._request: PendingRequest | None = None

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.LeftButton:
            self.identify(event.mapPoint())

    def identify(self, point: QgsPointXY) -> PendingRequest | None:
        """Locate the tile at ``point`` (canvas CRS) and caption it; results come as signals."""
        index = self.index_path()
        if not index:
            self.failed.emit(WorkerError("config", "Choose an index in the CACH search panel."))
            return None
        if self._request is not None and not self._request.done:
            self._request.cancel()
        crs = self.canvas().mapSettings().destinationCrs()
        req = self.client.request(
            "locate", {"index": index, "x": point.x(), "y": point.y(), "crs": _crs_id(crs)}
        )
        req.succeeded.connect(lambda result: self._on_located(index, result))
        req.failed.connect(self._on_failed)
        self._request = req
        self.busy.emit(True)
        return req

    def _on_located(self, index: str, result: dict) -> None:
        tile = result.get("tile")
        if not tile:
            self._on_failed(WorkerError("data", "No indexed tile under this point."))
            return
        hit = Hit.from_json(tile)
        self.highlight(hit)
        self.located.emit(hit)
        req = self.client.request(
            "caption", {"index": index, "tile": hit.tile_id, "k": 5, "similar": self.k()}
        )
        req.succeeded.connect(lambda r: self._on_captioned(hit, r))
        req.failed.connect(self._on_failed)
        self._request = req

    def _on_captioned(self, hit: Hit, result: dict) -> None:
        self.busy.emit(False)
        self.captioned.emit(hit, CaptionResult.from_json(result))

    def _on_failed(self, error: WorkerError) -> None:
        self.busy.emit(False)
        if not error.cancelled:
            self.failed.emit(error)

    def highlight(self, hit: Hit) -> None:
        geom = footprint_geometry(hit)
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        if not geom.isEmpty():
            self.band.setToGeometry(geom, QgsCoordinateReferenceSystem(FOOTPRINT_CRS))

    def deactivate(self) -> None:
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        super().deactivate()


def _crs_id(crs: QgsCoordinateReferenceSystem) -> str:
    """An id the runtime's PROJ understands: the authority id, else WKT."""
    return crs.authid() or crs.toWkt()
