"""The search panel: query, index, top-k, extent filter, results with thumbnails, refinement.

The latest query wins: a new search cancels the one still running, and only the newest
request's answer reaches the map and the list. Results that do not belong to the chosen index
are cleared as soon as the index changes. The worker starts when the panel is first shown, so
the model is loaded by the time the first query is typed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsRectangle,
    QgsWkbTypes,
)
from qgis.gui import QgsDockWidget, QgsMapCanvas, QgsRubberBand
from qgis.PyQt.QtCore import QSize, Qt, QTimer, pyqtSignal
from qgis.PyQt.QtGui import QColor, QIcon, QPixmap
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
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

from ..model_runtime.protocol import CaptionResult, Hit, SearchResult
from . import layers, settings, wording
from .layers import FOOTPRINT_CRS, ResultLayers
from .maptool import crs_id
from .session import Marks
from .marks_panel import MarksBox
from .runtime_client import PendingRequest, RuntimeClient, WorkerError, log
from .thumbnails import thumbnail
from .viewer import TileViewer
from .wording import tr

HIT_ROLE = Qt.ItemDataRole.UserRole + 1
THUMB_SIZE = 64
LEVELS = {
    wording.INFO: Qgis.MessageLevel.Info,
    wording.SUCCESS: Qgis.MessageLevel.Success,
    wording.WARNING: Qgis.MessageLevel.Warning,
    wording.CRITICAL: Qgis.MessageLevel.Critical,
}
WEAK_STYLE = "background:#fff3cd; color:#664d03; border:1px solid #e0c36c; padding:4px;"
ERROR_COLOUR = "#b2182b"
PROBLEM_STYLE = (
    "QFrame#CachRuntimeProblem { background:#f8d7da; border:1px solid #f1aeb5; }"
    "QLabel { color:#58151c; border:none; }"
)


def error_html(text: str) -> str:
    """``text`` in the panel's error colour (already translated: markup only here)."""
    return f"<span style='color:{ERROR_COLOUR}'>{text}</span>"


def monotone_confidence(hits: list[Hit]) -> list[Hit]:
    """Confidence never rises as rank falls: a lower-ranked tile shows at most the confidence
    of the tiles above it (the list, the layer and the export say the same)."""
    out, cap = [], None
    for hit in sorted(hits, key=lambda h: h.rank):
        if hit.confidence is not None:
            cap = hit.confidence if cap is None else min(cap, hit.confidence)
            hit = replace(hit, confidence=cap)
        out.append(hit)
    return out


class SearchDock(QgsDockWidget):
    """Type what you are looking for; results become a layer group and a list."""

    resultsShown = pyqtSignal(object)  # ResultLayers
    searchFailed = pyqtSignal(object)  # WorkerError
    searchStarted = pyqtSignal(object)  # PendingRequest
    captionsShown = pyqtSignal(object, object)  # Hit, CaptionResult
    #: a search answered from an index made with an earlier model: (index path, index info)
    outdatedIndex = pyqtSignal(str, object)
    #: the analyst pressed the runtime problem's button: open the Runtime dialog
    runtimeSettingsRequested = pyqtSignal()

    def __init__(self, iface: Any, client: RuntimeClient, parent: QWidget | None = None) -> None:
        super().__init__(tr("CACH search"), parent)
        self.setObjectName("CachSearchDock")
        self.iface = iface
        self.client = client
        self.request: PendingRequest | None = None
        self.result: SearchResult | None = None
        self.result_index = ""
        self.result_layers: ResultLayers | None = None
        self.marks = Marks()
        self.marks_index = ""  # the index the marked tile ids belong to
        self.viewer: TileViewer | None = None
        self._highlight: QgsRubberBand | None = None
        self._thumb_queue: list[QListWidgetItem] = []
        self._thumb_timer = QTimer(self)
        self._thumb_timer.setInterval(0)
        self._thumb_timer.timeout.connect(self._next_thumbnail)
        self._build()
        client.stateChanged.connect(self._update_runtime_label)
        client.deviceChanged.connect(self._update_runtime_label)
        client.modelLoaded.connect(self._update_runtime_label)
        client.startFailed.connect(self._update_runtime_label)
        self._update_runtime_label()

    # --- layout ----------------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget()
        layout = QVBoxLayout(body)
        self.runtime_label = QLabel()
        self.runtime_label.setWordWrap(True)
        layout.addWidget(self.runtime_label)
        layout.addWidget(self._runtime_problem_box())
        layout.addLayout(self._index_row())
        layout.addLayout(self._query_row())
        layout.addLayout(self._options_row())
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumHeight(8)
        self.busy.setTextVisible(False)
        self.busy.setVisible(False)
        layout.addWidget(self.busy)
        self.weak_label = QLabel()
        self.weak_label.setWordWrap(True)
        self.weak_label.setStyleSheet(WEAK_STYLE)
        self.weak_label.setVisible(False)
        layout.addWidget(self.weak_label)
        layout.addWidget(self._results_list(), 3)
        layout.addLayout(self._actions_row())
        layout.addWidget(self._marks_box())
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        self.captions = QTextBrowser()
        self.captions.setPlaceholderText(
            self.tr("Click a tile on the map with the CACH tile tool to see its captions.")
        )
        self.captions.setMaximumHeight(140)
        layout.addWidget(self.captions, 1)
        self.setWidget(body)

    def _runtime_problem_box(self) -> QFrame:
        """Where the analyst looks: why the runtime cannot run, and the button that fixes it."""
        self.runtime_problem = QFrame()
        self.runtime_problem.setObjectName("CachRuntimeProblem")
        self.runtime_problem.setStyleSheet(PROBLEM_STYLE)
        box = QVBoxLayout(self.runtime_problem)
        self.runtime_problem_label = QLabel()
        self.runtime_problem_label.setWordWrap(True)
        self.runtime_problem_label.setTextFormat(Qt.TextFormat.PlainText)
        self.runtime_button = QPushButton(self.tr("Runtime settings…"))
        self.runtime_button.setToolTip(
            self.tr("Create the CACH runtime, or choose the Python of an existing one")
        )
        self.runtime_button.clicked.connect(self.runtimeSettingsRequested)
        box.addWidget(self.runtime_problem_label)
        box.addWidget(self.runtime_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.runtime_problem.setVisible(False)
        return self.runtime_problem

    def _index_row(self) -> QHBoxLayout:
        self.index_combo = QComboBox()
        self.index_combo.setEditable(True)
        self.index_combo.setToolTip(
            self.tr("Folder of the index to search (made with {INDEX_MENU})").format(
                INDEX_MENU=wording.INDEX_MENU
            )
        )
        self.index_combo.lineEdit().setPlaceholderText(self.tr("index folder"))
        for path in settings.recent_indexes():
            self.index_combo.addItem(path)
        self.index_combo.setCurrentText(settings.index_path())
        self.index_combo.currentTextChanged.connect(self._index_changed)
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip(self.tr("Choose an index folder"))
        browse.clicked.connect(self._browse_index)
        row = QHBoxLayout()
        row.addWidget(QLabel(self.tr("Index")))
        row.addWidget(self.index_combo, 1)
        row.addWidget(browse)
        return row

    def _query_row(self) -> QHBoxLayout:
        self.query_edit = QLineEdit()
        self.query_edit.setPlaceholderText(self.tr("type what you are looking for"))
        self.query_edit.setClearButtonEnabled(True)
        self.query_edit.setToolTip(
            self.tr('Describe the scene in words, e.g. "a baseball field next to a parking lot"')
        )
        self.query_edit.returnPressed.connect(self.search)
        self.search_button = QPushButton(self.tr("Search"))
        self.search_button.setToolTip(self.tr("Search now (a search still running is replaced)"))
        self.search_button.clicked.connect(self.search)
        self.cancel_button = QPushButton(self.tr("Cancel"))
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setToolTip(self.tr("Stop the running search"))
        self.cancel_button.setVisible(False)
        row = QHBoxLayout()
        row.addWidget(self.query_edit, 1)
        row.addWidget(self.search_button)
        row.addWidget(self.cancel_button)
        return row

    def _options_row(self) -> QHBoxLayout:
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 500)
        self.k_spin.setValue(settings.top_k())
        self.k_spin.setPrefix(self.tr("top "))
        self.k_spin.setToolTip(self.tr("How many tiles a search returns"))
        self.tiles_spin = QSpinBox()
        self.tiles_spin.setRange(0, 200)
        self.tiles_spin.setValue(settings.max_tile_layers())
        self.tiles_spin.setSuffix(self.tr(" tiles on map"))
        self.tiles_spin.setToolTip(
            self.tr(
                "How many of a query's best tiles are added to the map as raster layers "
                "(0: footprints only)"
            )
        )
        self.tiles_spin.valueChanged.connect(settings.set_max_tile_layers)
        self.extent_check = QCheckBox(self.tr("current map extent only"))
        self.extent_check.setToolTip(
            self.tr("Only tiles inside what the map shows now (its extent and CRS are sent)")
        )
        row = QHBoxLayout()
        row.addWidget(self.k_spin)
        row.addWidget(self.tiles_spin)
        row.addWidget(self.extent_check, 1)
        return row

    def _marks_box(self) -> MarksBox:
        self.marks_box = MarksBox()
        self.refine_button = self.marks_box.refine_button
        self.marks_box.refine_button.clicked.connect(self.refine)
        self.marks_box.undo_button.clicked.connect(lambda: self.undo_mark())
        self.marks_box.clear_button.clicked.connect(self.clear_examples)
        self.marks_box.save_button.clicked.connect(self.save_refined_search_dialog)
        self.marks_box.run_saved_button.clicked.connect(self.run_saved_search_dialog)
        self._update_examples()
        return self.marks_box

    def _results_list(self) -> QListWidget:
        self.results = QListWidget()
        self.results.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.results.setToolTip(
            self.tr("Select a tile to zoom to it; right-click for more (similar tiles, + and −)")
        )
        self.results.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.results.customContextMenuRequested.connect(self._context_menu)
        self.results.currentItemChanged.connect(lambda item, _prev: self.show_item(item))
        return self.results

    def _actions_row(self) -> QHBoxLayout:
        more = QPushButton(self.tr("+ More like this"))
        more.setToolTip(self.tr("Use the selected tile as an example of what you want (Refine)"))
        more.clicked.connect(lambda: self._mark_current(positive=True))
        less = QPushButton(self.tr("− Less like this"))
        less.setToolTip(self.tr("Use the selected tile as an example of what you do not want"))
        less.clicked.connect(lambda: self._mark_current(positive=False))
        save = QPushButton(self.tr("Save footprints…"))
        save.setToolTip(self.tr("Write the result's footprints to a GeoPackage"))
        save.clicked.connect(self.save_footprints_dialog)
        self.clear_button = QPushButton(self.tr("Clear results"))
        self.clear_button.setToolTip(
            self.tr('Remove the "CACH results" group and all its layers from the layer tree')
        )
        self.clear_button.clicked.connect(self.clear_all_results)
        row = QHBoxLayout()
        for button in (more, less, save, self.clear_button):
            row.addWidget(button)
        return row

    # --- runtime ---------------------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """The panel is shown: start the worker now, so the first search finds it ready."""
        super().showEvent(event)
        self.start_runtime()

    def start_runtime(self) -> None:
        if self.client.state == RuntimeClient.STOPPED and not self.client.last_error:
            log(self.tr("search panel shown: starting the runtime"))
            self.client.start()

    def _update_runtime_label(self, *_args: Any) -> None:
        state, device = self.client.state, self.client.device
        if state == RuntimeClient.READY:
            text = (
                self.tr("Runtime ready on <b>{device}</b>").format(device=device)
                if device
                else self.tr("Runtime ready; loading the model…")
            )
        elif state == RuntimeClient.STARTING:
            text = "Starting the CACH runtime…"
        elif self.client.last_error:
            text = self.tr("The CACH runtime is not running.")
        else:
            text = self.tr("The runtime starts when this panel opens.")
        self.runtime_label.setText(text)
        problem = self.client.last_error if state == RuntimeClient.STOPPED else ""
        self.runtime_problem_label.setText(problem)
        self.runtime_problem.setVisible(bool(problem))
        model = self.client.model
        self.runtime_label.setToolTip(wording.model_details(model.to_json(), {}) if model else "")

    # --- state -----------------------------------------------------------------------------------
    def index_path(self) -> str:
        return self.index_combo.currentText().strip()

    def set_index_path(self, path: str) -> None:
        if self.index_combo.findText(path) < 0:
            self.index_combo.insertItem(0, path)
        self.index_combo.setCurrentText(path)
        settings.set_index_path(path)

    def _browse_index(self) -> None:
        path = QFileDialog.getExistingDirectory(
            self, self.tr("CACH index folder"), self.index_path()
        )
        if path:
            self.set_index_path(path)

    def _index_changed(self, path: str) -> None:
        """Results of another index are not current any more: clear them at once."""
        if self.result is not None and path.strip() != self.result_index:
            self.cancel()
            self.clear_results()
            self.status_label.setText(self.tr("Index changed: press Search to search this index."))
        if self.marks and path.strip() != self.marks_index:
            self.clear_examples()  # tile ids are an index's own: marks do not carry over

    def clear_results(self) -> None:
        """Empty the list, the weak-match note and the highlight (map groups stay)."""
        self._thumb_timer.stop()
        self._thumb_queue = []
        self.results.clear()
        self.result = None
        self.result_index = ""
        self.weak_label.setVisible(False)
        self.status_label.setToolTip("")
        self._reset_highlight()

    def clear_all_results(self) -> int:
        """Clear the list and remove "CACH results" from the layer tree; returns the number
        of layers removed."""
        self.cancel()
        self.clear_results()
        self.result_layers = None
        return layers.clear_results()

    def _set_busy(self, busy: bool) -> None:
        # Search stays enabled: a new query replaces the running one (the latest query wins)
        self.busy.setVisible(busy)
        self.cancel_button.setVisible(busy)

    def message(
        self,
        text: str,
        level: Qgis.MessageLevel = Qgis.MessageLevel.Info,
        duration: int = 8,
        details: str = "",
    ) -> None:
        """Message bar + log; errors never become exception dialogs."""
        log(f"{text} {details}".strip(), level)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is None:
            return
        if details:
            bar.pushMessage(self.tr("CACH"), text, details, level=level, duration=duration)
        else:
            bar.pushMessage(self.tr("CACH"), text, level=level, duration=duration)

    # --- search ----------------------------------------------------------------------------------
    def search(self) -> PendingRequest | None:
        """Search with the query text (and any marked tiles); returns the request."""
        return self._search({})

    def _search(self, extra: dict[str, Any]) -> PendingRequest | None:
        text = self.query_edit.text().strip()
        if not text and not self.positive:
            self.status_label.setText(
                self.tr("Type what you are looking for, or mark example tiles.")
            )
            return None
        label = layers.text_label(text) if text else ""
        query = {"text": text, **extra} if text else dict(extra)
        return self._run_search(query, f"text:{text}", label, f"for {label}" if text else "")

    def refine(self) -> PendingRequest | None:
        """Re-run the query, learning from the tiles marked right and wrong."""
        return self._search({})

    def search_similar(self, hit: Hit) -> PendingRequest | None:
        """Tiles like ``hit`` (query by tile)."""
        label = layers.tile_label(hit.tile_id)
        return self._run_search({"tile": hit.tile_id}, f"tile:{hit.tile_id}", label, label)

    def _run_search(
        self, query: dict[str, Any], key: str, label: str, what: str
    ) -> PendingRequest | None:
        index = self.index_path()
        if not index and self.client.state == RuntimeClient.STOPPED and self.client.last_error:
            # the runtime is the first thing to fix: say so, not "choose an index"
            self.message(self.client.last_error, Qgis.MessageLevel.Warning)
            return None
        if not index:
            self.message(
                self.tr("Choose an index folder first, or make one with {INDEX_MENU}").format(
                    INDEX_MENU=wording.INDEX_MENU
                ),
                Qgis.MessageLevel.Warning,
            )
            return None
        params = self._search_params(index, query)
        self.cancel()  # the latest query wins
        settings.set_index_path(index)
        settings.set_top_k(self.k_spin.value())
        saved = "saved" in query  # a saved search: the marks it was made with are in its file
        title = layers.group_title(
            label, 0 if saved else len(self.positive), 0 if saved else len(self.negative)
        )
        req = self.client.request("search", params)
        req.sent_at = time.monotonic()  # the status line says the time the analyst waited
        req.succeeded.connect(lambda r, req=req: self._on_results(req, key, title, label, what, r))
        req.failed.connect(lambda e, req=req: self._on_failed(req, e))
        self.request = req
        self._set_busy(True)
        self.status_label.setText(self.tr("Searching…"))
        self.searchStarted.emit(req)
        return req

    def _search_params(self, index: str, query: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {"index": index, "k": self.k_spin.value(), **query}
        if "saved" not in query:  # a saved search carries its own marks and nothing else
            params.update(self.marks.params())
        bbox = self.extent_bbox() if self.extent_check.isChecked() else None
        if bbox is not None:
            params["bbox"], params["bbox_crs"] = bbox
        return params

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
        return bbox, crs_id(crs)

    def cancel(self) -> None:
        """Cancel the running search, if any (its answer will never be shown)."""
        if self.request is not None and not self.request.done:
            self.request.cancel()

    def _on_failed(self, req: PendingRequest, error: WorkerError) -> None:
        if req is not self.request:
            return  # a replaced search
        self._set_busy(False)
        if error.cancelled:
            self.status_label.setText(self.tr("Search cancelled."))
            return
        self.clear_results()  # the message must not sit next to another query's results
        text = wording.error_text(error.info)
        self.status_label.setText(error_html(text))
        level = LEVELS[wording.error_level(error.info)]
        self.message(text, level, duration=15, details=wording.error_details(error.info))
        self.searchFailed.emit(error)

    def _on_results(
        self,
        req: PendingRequest,
        key: str,
        title: str,
        label: str,
        what: str,
        raw: dict[str, Any],
    ) -> None:
        if req is not self.request:
            return  # a replaced search
        self._set_busy(False)
        query = str(req.params.get("text") or label)
        result = SearchResult.from_json(raw)
        timing = self._waited(result.timing_ms, getattr(req, "sent_at", None))
        self.show_result(replace(result, timing_ms=timing), key, title, query, what)

    def show_result(
        self, result: SearchResult, key: str, title: str, query: str, what: str
    ) -> ResultLayers:
        """Result group on top of the layer tree, rows in the list, the status and any
        weak-match note."""
        self._reset_highlight()
        result = replace(result, results=monotone_confidence(result.results))
        self.result = result
        index = str(result.index.get("path") or self.index_path())
        self.result_index = self.index_path()
        self.result_layers = layers.show_results(
            key, title, result.results, query, wording.model_provenance(result.model), index
        )
        self._sync_canvas_layers()
        self.result_layers.loader.done.connect(self._sync_canvas_layers)
        self._fill_list(result.results)
        self._show_status(result, what)
        self._show_weak_match(result, query)
        if result.index.get("outdated_model"):
            self.outdatedIndex.emit(index, dict(result.index))
        self.resultsShown.emit(self.result_layers)
        return self.result_layers

    def _show_status(self, result: SearchResult, what: str) -> None:
        off_map = sum(1 for h in result.results if not h.georeferenced)
        self.status_label.setText(
            wording.results_status(len(result.results), off_map, result.timing_ms, what)
        )
        self.status_label.setToolTip(wording.model_details(result.model, result.index))

    def _show_weak_match(self, result: SearchResult, query: str) -> None:
        weak = bool(result.weak_match) and bool(result.results)
        self.weak_label.setText(wording.weak_match_text(query) if weak else "")
        self.weak_label.setVisible(weak)

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
        placeholder.fill(Qt.GlobalColor.lightGray)
        for hit in hits:
            item = QListWidgetItem(QIcon(placeholder), self._item_text(hit))
            item.setData(HIT_ROLE, hit)
            item.setToolTip(wording.hit_tooltip(hit))
            if not hit.georeferenced:
                item.setForeground(QColor("#8a4b00"))
            self.results.addItem(item)
            self._thumb_queue.append(item)
        self.results.blockSignals(False)
        self._thumb_timer.start()

    def _item_text(self, hit: Hit) -> str:
        state = self.marks.state(hit.tile_id)
        mark = "" if state is None else "  ✓" if state else "  ✗"
        return wording.hit_text(hit, mark)

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

    def layers_pending(self) -> int:
        """Tile layers of the shown result still to be added (one per event-loop turn)."""
        return self.result_layers.tiles_pending if self.result_layers is not None else 0

    def hits(self) -> list[Hit]:
        """The hits in the list, in order."""
        return [self.results.item(i).data(HIT_ROLE) for i in range(self.results.count())]

    # --- selection, zoom, viewer -----------------------------------------------------------------
    def show_item(self, item: QListWidgetItem | None) -> None:
        """A selected row: zoom to a georeferenced tile; view one that has no place on the map."""
        if item is None:
            return
        hit: Hit = item.data(HIT_ROLE)
        if hit.georeferenced:
            self.zoom_to_hit(hit)
        else:
            self.view_hit(hit)

    def view_hit(self, hit: Hit) -> TileViewer:
        """The tile enlarged, with "Open image"."""
        if self.viewer is None:
            self.viewer = TileViewer(self)
        self.viewer.show_hit(hit)
        return self.viewer

    def zoom_to_hit(self, hit: Hit) -> QgsRectangle | None:
        """Zoom the canvas to a hit's footprint (with a margin) and outline it."""
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
        self._outline(canvas, geom, dest)
        return rect

    def _outline(self, canvas: QgsMapCanvas, geom: Any, crs: QgsCoordinateReferenceSystem) -> None:
        """Mark the selected tile with an outline only: the tile itself stays visible."""
        if self._highlight is None:
            self._highlight = layers.outline_band(canvas)
        self._highlight.setToGeometry(geom, crs)

    def _reset_highlight(self) -> None:
        if self._highlight is not None:
            self._highlight.reset(QgsWkbTypes.GeometryType.PolygonGeometry)

    def highlight_geometry(self) -> Any:
        """The outline of the selected tile (empty when none), in canvas CRS."""
        return self._highlight.asGeometry() if self._highlight is not None else None

    def cleanup(self) -> None:
        """Remove what the panel put on the canvas (plugin unload)."""
        self._thumb_timer.stop()
        self.cancel()
        layers.stop_loading()
        if self._highlight is not None:
            canvas = self.iface.mapCanvas() if self.iface else None
            self._highlight.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
            if canvas is not None:
                canvas.scene().removeItem(self._highlight)
            self._highlight = None
        if self.viewer is not None:
            self.viewer.close()

    # --- refinement ------------------------------------------------------------------------------
    def current_hit(self) -> Hit | None:
        item = self.results.currentItem()
        return item.data(HIT_ROLE) if item is not None else None

    def _mark_current(self, positive: bool) -> None:
        hit = self.current_hit()
        if hit is None:
            self.status_label.setText(self.tr("Select a result first."))
            return
        self.mark(hit, positive)

    @property
    def positive(self) -> dict[int, Hit]:
        """The tiles marked right, by tile id."""
        return self.marks.hits(True)

    @property
    def negative(self) -> dict[int, Hit]:
        """The tiles marked wrong, by tile id."""
        return self.marks.hits(False)

    def mark(self, hit: Hit, positive: bool) -> None:
        """Mark a tile right (more like this) or wrong (less like this); Refine learns from it."""
        if not self.marks:
            self.marks_index = self.result_index or self.index_path()
        self.marks.mark(hit, positive)
        self._update_examples()

    def undo_mark(self, tile_id: int | None = None) -> bool:
        """Forget one mark: ``tile_id``'s, else the one selected in the marks list, else the
        latest. Returns whether a mark was forgotten."""
        if tile_id is None:
            tile_id = self.marks_box.selected_tile()
        undone = self.marks.undo(tile_id)
        self._update_examples()
        return undone is not None

    def clear_examples(self) -> None:
        """Forget every mark."""
        self.marks.clear()
        self._update_examples()

    def _update_examples(self) -> None:
        self.marks_box.show_marks(self.marks)
        for row in range(self.results.count()):
            item = self.results.item(row)
            item.setText(self._item_text(item.data(HIT_ROLE)))

    def _context_menu(self, pos: Any) -> None:
        item = self.results.itemAt(pos)
        if item is None:
            return
        hit: Hit = item.data(HIT_ROLE)
        menu = QMenu(self)
        zoom = menu.addAction(self.tr("Zoom to tile"), lambda: self.zoom_to_hit(hit))
        zoom.setEnabled(hit.georeferenced)
        menu.addAction(self.tr("View tile enlarged"), lambda: self.view_hit(hit))
        menu.addAction(self.tr("Mark right: more like this (+)"), lambda: self.mark(hit, True))
        menu.addAction(self.tr("Mark wrong: less like this (−)"), lambda: self.mark(hit, False))
        if hit.tile_id in self.marks:
            menu.addAction(self.tr("Undo this mark"), lambda: self.undo_mark(hit.tile_id))
        menu.addAction(
            self.tr("Search tiles similar to this one"), lambda: self.search_similar(hit)
        )
        menu.exec_(self.results.viewport().mapToGlobal(pos))

    # --- export ----------------------------------------------------------------------------------
    def save_footprints_dialog(self) -> None:
        if self.result_layers is None:
            self.status_label.setText(self.tr("Run a search first."))
            return
        path, _ = QFileDialog.getSaveFileName(
            self,
            self.tr("Save footprints"),
            str(Path.home() / "cach_results.gpkg"),
            self.tr("GeoPackage (*.gpkg)"),
        )
        if path:
            self.save_footprints(path)

    def save_footprints(self, path: str) -> str:
        """Write the footprints to a GeoPackage and say which rows have no geometry and why."""
        footprints = self.result_layers.footprints if self.result_layers else None
        if footprints is None:
            return ""
        try:
            layers.save_footprints(footprints, path)
        except OSError as err:
            self.message(
                self.tr(
                    "The footprints could not be saved ({err}). Choose another file or folder."
                ).format(err=err),
                Qgis.MessageLevel.Warning,
            )
            return ""
        text = f"Footprints saved to {path}."
        no_geometry = layers.rows_without_geometry(footprints)
        if no_geometry:
            ranks = ", ".join(f"#{r}" for r in no_geometry)
            text += (
                f" {len(no_geometry)} rows have no geometry ({ranks}): "
                f"{wording.NOT_GEOREFERENCED} (see their 'note' field)."
            )
        self.message(text, Qgis.MessageLevel.Warning if no_geometry else Qgis.MessageLevel.Success)
        return text

    # --- saved refined searches ----------------------------------------------------------------
    def save_refined_search_dialog(self) -> None:
        if not self.marks:
            self.status_label.setText(self.tr("Mark tiles right or wrong first, then save."))
            return
        path, _ = QFileDialog.getSaveFileName(
            self,
            self.tr("Save refined search"),
            str(Path.home() / "cach_search.json"),
            self.tr("CACH saved search (*.json)"),
        )
        if path:
            self.save_refined_search(path)

    def save_refined_search(self, path: str) -> PendingRequest | None:
        """Refine with the marks and keep the refined search in ``path`` (the worker's
        ``save``); the results are shown as usual."""
        req = self._search({"save": path})
        if req is not None:
            req.succeeded.connect(lambda _r, req=req: self._on_saved(req, path))
        return req

    def _on_saved(self, req: PendingRequest, path: str) -> None:
        if req is self.request:
            self.message(wording.saved_search_text(path), Qgis.MessageLevel.Success)

    def run_saved_search_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            self.tr("Run saved search"),
            str(Path.home()),
            self.tr("CACH saved search (*.json)"),
        )
        if path:
            self.run_saved_search(path)

    def run_saved_search(self, path: str) -> PendingRequest | None:
        """Run a refined search kept in ``path`` on the chosen index (the worker's ``saved``)."""
        label = f"“{Path(path).name}”"
        what = self.tr("for the saved search {name}").format(name=label)
        return self._run_search({"saved": path}, f"saved:{path}", label, what)

    # --- click-a-tile ----------------------------------------------------------------------------
    @staticmethod
    def _waited(timing_ms: dict[str, Any], since: float | None) -> dict[str, Any]:
        """The runtime's timings with ``total`` = the time waited since ``since`` (monotonic)."""
        if since is None:
            return timing_ms
        waited = (time.monotonic() - since) * 1000
        return {**timing_ms, "runtime": timing_ms.get("total"), "total": waited}

    def show_captions(
        self, hit: Hit, result: CaptionResult, waited_since: float | None = None
    ) -> None:
        """Captions of a clicked tile, and its similar tiles as results."""
        lines = [f"<b>{hit.name}</b> (tile {hit.tile_id})<ol>"]
        for cap in result.captions:
            lines.append(f"<li>{cap.text} <small>({cap.score:.2f})</small></li>")
        lines.append("</ol>")
        self.captions.setHtml("".join(lines))
        if result.similar:
            self.cancel()  # the click is the latest query
            label = layers.tile_label(hit.tile_id)
            similar = SearchResult(
                results=result.similar,
                query={"tile": hit.tile_id},
                model=result.model,
                index=result.index,
                timing_ms=self._waited(result.timing_ms, waited_since),
            )
            self.show_result(
                similar, f"tile:{hit.tile_id}", layers.group_title(label), label, label
            )
        self.captionsShown.emit(hit, result)
