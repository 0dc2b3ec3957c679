"""The search panel: query, index, top-k, extent filter, results with thumbnails, refinement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsRectangle,
)
from qgis.gui import QgsDockWidget, QgsMapCanvas
from qgis.PyQt.QtCore import QSize, Qt, QTimer, pyqtSignal
from qgis.PyQt.QtGui import QIcon, QPixmap
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import layers, settings
from .layers import FOOTPRINT_CRS, ResultLayers
from .maptool import _crs_id
from .messages import CaptionResult, Hit, SearchResult, WorkerError
from .runtime_client import PendingRequest, RuntimeClient, log
from .thumbnails import thumbnail

HIT_ROLE = Qt.UserRole + 1
THUMB_SIZE = 64


class SearchDock(QgsDockWidget):
    """Type what you are looking for; results become a layer group and a list."""

    resultsShown = pyqtSignal(object)  # ResultLayers
    searchFailed = pyqtSignal(object)  # WorkerError
    captionsShown = pyqtSignal(object, object)  # Hit, CaptionResult

    def __init__(self, iface: Any, client: RuntimeClient, parent: QWidget | None = None) -> None:
        super().__init__("CACH search", parent)
        self.setObjectName("CachSearchDock")
        self.iface = iface
        self.client = client
        self.request: PendingRequest | None = None
        self.result: SearchResult | None = None
        self.result_layers: ResultLayers | None = None
        self.positive: dict[int, Hit] = {}
        self.negative: dict[int, Hit] = {}
        self._query_key = ""
        self._thumb_queue: list[QListWidgetItem] = []
        self._thumb_timer = QTimer(self)
        self._thumb_timer.setInterval(0)
        self._thumb_timer.timeout.connect(self._next_thumbnail)
        self._build()
        client.stateChanged.connect(self._update_runtime_label)
        client.deviceChanged.connect(self._update_runtime_label)
        self._update_runtime_label()

    # --- layout ----------------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget()
        layout = QVBoxLayout(body)

        self.runtime_label = QLabel()
        self.runtime_label.setWordWrap(True)
        layout.addWidget(self.runtime_label)

        index_row = QHBoxLayout()
        self.index_combo = QComboBox()
        self.index_combo.setEditable(True)
        self.index_combo.setToolTip("Folder of the index to search (made by 'Index raster folder')")
        self.index_combo.lineEdit().setPlaceholderText("index folder")
        for path in settings.recent_indexes():
            self.index_combo.addItem(path)
        self.index_combo.setCurrentText(settings.index_path())
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose an index folder")
        browse.clicked.connect(self._browse_index)
        index_row.addWidget(QLabel("Index"))
        index_row.addWidget(self.index_combo, 1)
        index_row.addWidget(browse)
        layout.addLayout(index_row)

        query_row = QHBoxLayout()
        self.query_edit = QLineEdit()
        self.query_edit.setPlaceholderText("type what you are looking for")
        self.query_edit.setClearButtonEnabled(True)
        self.query_edit.returnPressed.connect(self.search)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setVisible(False)
        query_row.addWidget(self.query_edit, 1)
        query_row.addWidget(self.search_button)
        query_row.addWidget(self.cancel_button)
        layout.addLayout(query_row)

        options_row = QHBoxLayout()
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 500)
        self.k_spin.setValue(settings.top_k())
        self.k_spin.setPrefix("top ")
        self.extent_check = QCheckBox("current map extent only")
        options_row.addWidget(self.k_spin)
        options_row.addWidget(self.extent_check, 1)
        layout.addLayout(options_row)

        examples_row = QHBoxLayout()
        self.examples_label = QLabel()
        self.refine_button = QPushButton("Refine")
        self.refine_button.setToolTip("Search again with the example tiles marked + and −")
        self.refine_button.clicked.connect(self.refine)
        clear = QPushButton("Clear examples")
        clear.clicked.connect(self.clear_examples)
        examples_row.addWidget(self.examples_label, 1)
        examples_row.addWidget(self.refine_button)
        examples_row.addWidget(clear)
        layout.addLayout(examples_row)
        self._update_examples()

        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumHeight(8)
        self.busy.setTextVisible(False)
        self.busy.setVisible(False)
        layout.addWidget(self.busy)

        self.results = QListWidget()
        self.results.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.results.setSelectionMode(QAbstractItemView.SingleSelection)
        self.results.setContextMenuPolicy(Qt.CustomContextMenu)
        self.results.customContextMenuRequested.connect(self._context_menu)
        self.results.currentItemChanged.connect(lambda item, _prev: self.zoom_to_item(item))
        layout.addWidget(self.results, 3)

        actions_row = QHBoxLayout()
        more = QPushButton("+ More like this")
        more.clicked.connect(lambda: self._mark_current(positive=True))
        less = QPushButton("− Less like this")
        less.clicked.connect(lambda: self._mark_current(positive=False))
        save = QPushButton("Save footprints…")
        save.clicked.connect(self.save_footprints_dialog)
        for button in (more, less, save):
            actions_row.addWidget(button)
        layout.addLayout(actions_row)

        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)

        self.captions = QTextBrowser()
        self.captions.setPlaceholderText(
            "Click a tile on the map with the CACH tile tool to see its captions."
        )
        self.captions.setMaximumHeight(140)
        layout.addWidget(self.captions, 1)
        self.setWidget(body)

    # --- state -----------------------------------------------------------------------------------
    def index_path(self) -> str:
        return self.index_combo.currentText().strip()

    def set_index_path(self, path: str) -> None:
        if self.index_combo.findText(path) < 0:
            self.index_combo.insertItem(0, path)
        self.index_combo.setCurrentText(path)
        settings.set_index_path(path)

    def _browse_index(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "CACH index folder", self.index_path())
        if path:
            self.set_index_path(path)

    def _update_runtime_label(self, *_args: Any) -> None:
        state = self.client.state
        device = self.client.device
        if state == RuntimeClient.READY:
            text = f"Runtime ready on <b>{device or '?'}</b>"
        elif state == RuntimeClient.STARTING:
            text = "Runtime starting…"
        else:
            text = "Runtime starts with the first search"
            if device:
                text += f" (last device: {device})"
        self.runtime_label.setText(text)

    def _set_busy(self, busy: bool) -> None:
        self.busy.setVisible(busy)
        self.search_button.setEnabled(not busy)
        self.refine_button.setEnabled(not busy)
        self.cancel_button.setVisible(busy)

    def message(self, text: str, level: Qgis.MessageLevel = Qgis.Info, duration: int = 8) -> None:
        """Message bar + log; errors never become exception dialogs."""
        log(text, level)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None:
            bar.pushMessage("CACH", text, level=level, duration=duration)

    # --- search ----------------------------------------------------------------------------------
    def search(self) -> PendingRequest | None:
        """Search with the query text (and any example tiles); returns the request."""
        text = self.query_edit.text().strip()
        if not text and not self.positive:
            self.status_label.setText("Type what you are looking for, or mark example tiles.")
            return None
        return self._run_search({"text": text} if text else {}, key=f"text:{text}", label=text)

    def refine(self) -> PendingRequest | None:
        """Re-run the last query with the + and − examples."""
        return self.search()

    def search_similar(self, hit: Hit) -> PendingRequest | None:
        """Tiles like ``hit`` (query by tile)."""
        return self._run_search(
            {"tile": hit.tile_id}, key=f"tile:{hit.tile_id}", label=f"like tile {hit.tile_id}"
        )

    def _run_search(self, query: dict[str, Any], key: str, label: str) -> PendingRequest | None:
        index = self.index_path()
        if not index:
            self.message("Choose an index folder first (or index a raster folder).", Qgis.Warning)
            return None
        params: dict[str, Any] = {"index": index, "k": self.k_spin.value(), **query}
        if self.positive:
            params["positive"] = sorted(self.positive)
        if self.negative:
            params["negative"] = sorted(self.negative)
        bbox = self.extent_bbox() if self.extent_check.isChecked() else None
        if bbox is not None:
            params["bbox"], params["bbox_crs"] = bbox
        if self.request is not None and not self.request.done:
            self.request.cancel()
        settings.set_index_path(index)
        settings.set_top_k(self.k_spin.value())
        title = f'CACH: "{label}"' if label else "CACH: examples"
        if self.positive or self.negative:
            title += f" (+{len(self.positive)}/−{len(self.negative)})"
        req = self.client.request("search", params)
        req.succeeded.connect(lambda r, req=req: self._on_results(req, key, title, label, r))
        req.failed.connect(lambda e, req=req: self._on_failed(req, e))
        self.request = req
        self._set_busy(True)
        self.status_label.setText("Searching…")
        return req

    def extent_bbox(self) -> tuple[list[float], str] | None:
        """The canvas extent and its CRS id, as the ``bbox``/``bbox_crs`` params."""
        canvas: QgsMapCanvas | None = self.iface.mapCanvas() if self.iface else None
        if canvas is None:
            return None
        extent = canvas.extent()
        crs = canvas.mapSettings().destinationCrs()
        if not crs.authid():  # custom CRS: send EPSG:4326
            target = QgsCoordinateReferenceSystem(FOOTPRINT_CRS)
            extent = QgsCoordinateTransform(
                crs, target, QgsProject.instance()
            ).transformBoundingBox(extent)
            crs = target
        bbox = [extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()]
        return bbox, _crs_id(crs)

    def cancel(self) -> None:
        if self.request is not None and not self.request.done:
            self.request.cancel()

    def _on_failed(self, req: PendingRequest, error: WorkerError) -> None:
        if req is not self.request:
            return
        self._set_busy(False)
        if error.cancelled:
            self.status_label.setText("Search cancelled.")
            return
        self.status_label.setText(f"<span style='color:#b2182b'>{error}</span>")
        self.message(str(error), Qgis.Critical, duration=15)
        self.searchFailed.emit(error)

    def _on_results(
        self, req: PendingRequest, key: str, title: str, label: str, raw: dict[str, Any]
    ) -> None:
        if req is not self.request:
            return
        self._set_busy(False)
        result = SearchResult.from_json(raw)
        self.show_result(result, key, title, label)

    def show_result(self, result: SearchResult, key: str, title: str, label: str) -> ResultLayers:
        """Result group on the map and rows in the list."""
        self.result = result
        index = str(result.index.get("path") or self.index_path())
        self._query_key = key
        self.result_layers = layers.show_results(
            key, title, result.hits, label, result.model_label, index
        )
        self._sync_canvas_layers()
        self._fill_list(result.hits)
        total = result.timing_ms.get("total") if result.timing_ms else None
        timing = f" in {float(total):.0f} ms" if total is not None else ""
        self.status_label.setText(
            f"{len(result.hits)} tiles{timing} — {result.model_label or 'model ?'}"
            f" — index of {result.index.get('tiles', '?')} tiles"
        )
        self.resultsShown.emit(self.result_layers)
        return self.result_layers

    def _sync_canvas_layers(self) -> None:
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

    def _fill_list(self, hits: list[Hit]) -> None:
        self._thumb_timer.stop()
        self.results.blockSignals(True)
        self.results.clear()
        self._thumb_queue = []
        placeholder = QPixmap(THUMB_SIZE, THUMB_SIZE)
        placeholder.fill(Qt.lightGray)
        for hit in hits:
            item = QListWidgetItem(QIcon(placeholder), self._item_text(hit))
            item.setData(HIT_ROLE, hit)
            item.setToolTip(f"{hit.source}\nwindow {list(hit.window)}  tile {hit.tile_id}")
            self.results.addItem(item)
            self._thumb_queue.append(item)
        self.results.blockSignals(False)
        self._thumb_timer.start()

    def _item_text(self, hit: Hit) -> str:
        mark = (
            " +" if hit.tile_id in self.positive else " −" if hit.tile_id in self.negative else ""
        )
        ham = f", hamming {hit.hamming}" if hit.hamming is not None else ""
        return f"#{hit.rank}  score {hit.score:.3f}{ham}{mark}\n{hit.name}"

    def _next_thumbnail(self) -> None:
        """One thumbnail per event-loop turn, so the UI stays responsive."""
        if not self._thumb_queue:
            self._thumb_timer.stop()
            return
        item = self._thumb_queue.pop(0)
        hit: Hit = item.data(HIT_ROLE)
        image = thumbnail(hit.source, hit.window, THUMB_SIZE)
        if image is not None:
            item.setIcon(QIcon(QPixmap.fromImage(image)))

    def thumbnails_pending(self) -> int:
        return len(self._thumb_queue)

    # --- selection, zoom, refinement -------------------------------------------------------------
    def zoom_to_item(self, item: QListWidgetItem | None) -> None:
        if item is None:
            return
        self.zoom_to_hit(item.data(HIT_ROLE))

    def zoom_to_hit(self, hit: Hit) -> QgsRectangle | None:
        """Zoom the canvas to a hit's footprint (with a margin) and flash it."""
        canvas = self.iface.mapCanvas() if self.iface else None
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
        canvas.flashGeometries([geom], dest)
        return rect

    def current_hit(self) -> Hit | None:
        item = self.results.currentItem()
        return item.data(HIT_ROLE) if item is not None else None

    def _mark_current(self, positive: bool) -> None:
        hit = self.current_hit()
        if hit is None:
            self.status_label.setText("Select a result first.")
            return
        self.mark(hit, positive)

    def mark(self, hit: Hit, positive: bool) -> None:
        """Use a tile as a positive (more like this) or negative (less like this) example."""
        (self.positive if positive else self.negative)[hit.tile_id] = hit
        (self.negative if positive else self.positive).pop(hit.tile_id, None)
        self._update_examples()
        for row in range(self.results.count()):
            item = self.results.item(row)
            item.setText(self._item_text(item.data(HIT_ROLE)))

    def clear_examples(self) -> None:
        self.positive.clear()
        self.negative.clear()
        self._update_examples()

    def _update_examples(self) -> None:
        self.examples_label.setText(
            f"Examples: +{len(self.positive)}  −{len(self.negative)}"
            if self.positive or self.negative
            else "Examples: none (select a result, then + or −)"
        )

    def _context_menu(self, pos: Any) -> None:
        item = self.results.itemAt(pos)
        if item is None:
            return
        hit: Hit = item.data(HIT_ROLE)
        menu = QMenu(self)
        menu.addAction("Zoom to tile", lambda: self.zoom_to_hit(hit))
        menu.addAction("More like this (+)", lambda: self.mark(hit, True))
        menu.addAction("Less like this (−)", lambda: self.mark(hit, False))
        menu.addAction("Search tiles similar to this one", lambda: self.search_similar(hit))
        menu.exec_(self.results.viewport().mapToGlobal(pos))

    def save_footprints_dialog(self) -> None:
        if self.result_layers is None:
            self.status_label.setText("Run a search first.")
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save footprints", str(Path.home() / "cach_results.gpkg"), "GeoPackage (*.gpkg)"
        )
        if path:
            try:
                layers.save_footprints(self.result_layers.footprints, path)
            except OSError as err:
                self.message(str(err), Qgis.Critical)
                return
            self.message(f"Footprints saved to {path}", Qgis.Success)

    # --- click-a-tile ----------------------------------------------------------------------------
    def show_captions(self, hit: Hit, result: CaptionResult) -> None:
        """Captions of a clicked tile, and its similar tiles as results."""
        lines = [f"<b>{hit.name}</b> (tile {hit.tile_id})<ol>"]
        for cap in result.captions:
            lines.append(f"<li>{cap.text} <small>({cap.score:.2f})</small></li>")
        lines.append("</ol>")
        self.captions.setHtml("".join(lines))
        if result.similar:
            similar = SearchResult(hits=result.similar, query={"tile": hit.tile_id})
            self.show_result(
                similar,
                f"tile:{hit.tile_id}",
                f"CACH: like tile {hit.tile_id}",
                f"like tile {hit.tile_id}",
            )
        self.captionsShown.emit(hit, result)
