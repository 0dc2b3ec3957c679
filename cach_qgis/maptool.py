"""Click-a-tile map tool: ``locate`` the indexed tile under the click, then ``caption`` it.
Right-click offers to mark the tile there right or wrong (the search panel's marks)."""

from __future__ import annotations

import time
from collections.abc import Callable

from qgis.core import QgsCoordinateReferenceSystem, QgsPointXY, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QCursor
from qgis.PyQt.QtWidgets import QMenu

from ..model_runtime.protocol import DEFAULT_K, CaptionRequest, CaptionResult, Hit, LocateRequest
from . import wording
from .extent import crs_id
from .layers import FOOTPRINT_CRS, footprint_geometry, outline_band
from .runtime_client import PendingRequest, RuntimeClient, WorkerError


class TileTool(QgsMapTool):
    """Clicking a point on an indexed raster shows its tile, captions and similar tiles."""

    started = pyqtSignal()  # a click started a new query (it replaces any running search)
    located = pyqtSignal(object)  # Hit
    captioned = pyqtSignal(object, object)  # Hit, CaptionResult (with model and index)
    failed = pyqtSignal(object)  # WorkerError
    notice = pyqtSignal(str)  # a plain-words note of the plugin's own (no tile here, no index)
    busy = pyqtSignal(bool)
    marked = pyqtSignal(object, bool)  # Hit, right (True) or wrong (False)

    def __init__(
        self,
        canvas: QgsMapCanvas,
        client: RuntimeClient,
        index_path: Callable[[], str],
        k: Callable[[], int] = lambda: DEFAULT_K,
    ) -> None:
        super().__init__(canvas)
        self.client = client
        self.index_path = index_path
        self.k = k
        self.setCursor(QCursor(Qt.CursorShape.CrossCursor))
        self.band = outline_band(canvas)
        self._request: PendingRequest | None = None
        self.clicked_at: float | None = None

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.LeftButton:
            self.identify(event.mapPoint())
        elif event.button() == Qt.MouseButton.RightButton:
            self.mark_menu(event.mapPoint()).exec_(QCursor.pos())

    def mark_menu(self, point: QgsPointXY) -> QMenu:
        """The right-click menu: mark the tile at ``point`` (canvas CRS) right or wrong."""
        menu = QMenu(self.canvas())
        menu.addAction(
            self.tr("Mark this tile right (more like this)"), lambda: self.mark_at(point, True)
        )
        menu.addAction(
            self.tr("Mark this tile wrong (less like this)"), lambda: self.mark_at(point, False)
        )
        menu.addSeparator()
        menu.addAction(self.tr("Captions and similar tiles"), lambda: self.identify(point))
        return menu

    def mark_at(self, point: QgsPointXY, right: bool) -> PendingRequest | None:
        """Locate the tile at ``point`` and emit ``marked`` (the panel lists it; Refine uses
        it). A mark starts no search, so it does not cancel one."""
        index = self._chosen_index()
        if not index:
            return None
        req = self._locate(index, point)
        req.succeeded.connect(lambda result: self._on_mark_located(result, right))
        req.failed.connect(lambda err: None if err.cancelled else self.failed.emit(err))
        return req

    def _chosen_index(self) -> str:
        """The panel's index; empty (and a notice saying what to do) when none is chosen."""
        index = self.index_path()
        if not index:
            self.notice.emit(
                self.tr(
                    "Choose an index in the CACH search panel first, or make one with {INDEX_MENU}"
                ).format(INDEX_MENU=wording.INDEX_MENU)
            )
        return index

    def _locate(self, index: str, point: QgsPointXY) -> PendingRequest:
        """Ask the worker which tile of ``index`` holds ``point`` (canvas CRS)."""
        crs = self.canvas().mapSettings().destinationCrs()
        return self.client.send(LocateRequest(index, point.x(), point.y(), crs_id(crs)))

    def _on_mark_located(self, result: dict, right: bool) -> None:
        hit = self._located_hit(result)
        if hit is not None:
            self.marked.emit(hit, right)

    def _located_hit(self, result: dict) -> Hit | None:
        """The tile a locate answer found, highlighted; None (and a notice) when none."""
        tile = result.get("tile")
        if not tile:
            self.notice.emit(
                self.tr(
                    "No indexed tile here. Click on a raster you indexed, or index it with "
                    "{INDEX_MENU}"
                ).format(INDEX_MENU=wording.INDEX_MENU)
            )
            return None
        hit = Hit.from_json(tile)
        self.highlight(hit)
        return hit

    def identify(self, point: QgsPointXY) -> PendingRequest | None:
        """Locate the tile at ``point`` (canvas CRS) and caption it; results come as signals."""
        index = self._chosen_index()
        if not index:
            return None
        self.cancel()
        self.started.emit()
        self.clicked_at = time.monotonic()  # the panel says how long the analyst waited
        req = self._locate(index, point)
        req.succeeded.connect(lambda result, req=req: self._on_located(req, index, result))
        req.failed.connect(lambda err, req=req: self._on_failed(req, err))
        self._request = req
        self.busy.emit(True)
        return req

    def cancel(self) -> None:
        """Cancel the click's query still running (a newer search replaces it)."""
        if self._request is not None and not self._request.done:
            self._request.cancel()

    def _on_located(self, req: PendingRequest, index: str, result: dict) -> None:
        if req is not self._request:
            return
        hit = self._located_hit(result)
        if hit is None:
            self.busy.emit(False)
            return
        self.located.emit(hit)
        caption = self.client.send(CaptionRequest(index, tile=hit.tile_id, similar=self.k()))
        caption.succeeded.connect(lambda r, c=caption: self._on_captioned(c, hit, r))
        caption.failed.connect(lambda err, c=caption: self._on_failed(c, err))
        self._request = caption

    def _on_captioned(self, req: PendingRequest, hit: Hit, result: dict) -> None:
        if req is not self._request:
            return
        self.busy.emit(False)
        self.captioned.emit(hit, CaptionResult.from_json(result))

    def _on_failed(self, req: PendingRequest, error: WorkerError) -> None:
        if req is not self._request:
            return
        self.busy.emit(False)
        if not error.cancelled:
            self.failed.emit(error)

    def highlight(self, hit: Hit) -> None:
        geom = footprint_geometry(hit)
        self.band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
        if not geom.isEmpty():
            self.band.setToGeometry(geom, QgsCoordinateReferenceSystem(FOOTPRINT_CRS))

    def deactivate(self) -> None:
        self.band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
        super().deactivate()
