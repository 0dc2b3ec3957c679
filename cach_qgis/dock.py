"""The search panel: a view over one :class:`~.session.SearchSession`.

The session holds what is searched (index, query, marks, last result) and which request is
current; the panel's parts show it and write to it: the runtime lines (``runtime_box``), the
query rows (``query_bar``), the result list and its buttons (``results_view``), the marks box
(``marks_panel``) and the map side (``result_map``). The latest query wins: a new search, or a
turned page, cancels the one still running, and only the current request's answer reaches the
map and the list. Pages repeat the shown query at another offset; a new query (Refine too)
starts again at the first page. Results of another index are cleared as soon as the index
changes. The worker starts when the panel is first shown, so the model is loaded by the time
the first query is typed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from qgis.core import Qgis
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QLabel, QTextBrowser, QVBoxLayout, QWidget

from ..model_runtime.protocol import CaptionResult, Hit, SearchRequest, SearchResult
from . import layers, message_bar, search_files, settings, wording
from .extent import canvas_bbox
from .layers import ResultLayers
from .marks_panel import MarksBox
from .query_bar import QueryBar
from .result_map import ResultMap
from .results_view import ResultActions, ResultsList
from .runtime_box import RuntimeBox
from .runtime_client import PendingRequest, RuntimeClient, WorkerError, log
from .session import Note, Query, SearchSession
from .wording import tr

WEAK_STYLE = "background:#fff3cd; color:#664d03; border:1px solid #e0c36c; padding:4px;"


def query_words(query: Query) -> tuple[str, str]:
    """(label, what) of a query: its name in the group title, and the end of the status line
    ("20 tiles {what}")."""
    if query.kind == "saved":
        label = layers.text_label(Path(query.saved).name)
        return label, tr("for the saved search {name}").format(name=label)
    if query.kind == "tile":
        label = layers.tile_label(int(query.tile))
        return label, label
    if query.kind == "marks":
        return "", ""
    label = layers.text_label(query.text or query.image)
    return label, tr("for {label}").format(label=label)


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
        self.session = SearchSession(settings.index_path(), settings.top_k())
        self.request: PendingRequest | None = None
        self.result_map = ResultMap(iface, self)
        self._build()
        self._connect()

    # --- layout ----------------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget()
        layout = QVBoxLayout(body)
        self.runtime_box = RuntimeBox(self.client)
        self.bar = QueryBar(self.session)
        self.weak_label = QLabel()
        self.weak_label.setWordWrap(True)
        self.weak_label.setStyleSheet(WEAK_STYLE)
        self.weak_label.setVisible(False)
        self.results = ResultsList(self.session.marks)
        self.actions = ResultActions()
        self.marks_box = MarksBox()
        self.marks_box.show_marks(self.session.marks)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.captions = QTextBrowser()
        self.captions.setPlaceholderText(
            self.tr("Click a tile on the map with the CACH tile tool to see its captions.")
        )
        self.captions.setMaximumHeight(140)
        for widget, stretch in (
            (self.runtime_box, 0),
            (self.bar, 0),
            (self.weak_label, 0),
            (self.results, 3),
            (self.actions, 0),
            (self.marks_box, 0),
            (self.status_label, 0),
            (self.captions, 1),
        ):
            layout.addWidget(widget, stretch)
        self.setWidget(body)

    def _connect(self) -> None:
        """What each part asks for, to the panel's actions."""
        self.runtime_box.settingsRequested.connect(self.runtimeSettingsRequested)
        bar, results, marks = self.bar, self.results, self.marks_box
        bar.index_combo.currentTextChanged.connect(self._index_changed)
        bar.query_edit.returnPressed.connect(self.search)
        bar.search_button.clicked.connect(self.search)
        bar.cancel_button.clicked.connect(self.cancel)
        results.selected.connect(self.result_map.show_hit)
        results.zoomRequested.connect(self.result_map.zoom_to_hit)
        results.viewRequested.connect(self.result_map.view_hit)
        results.markRequested.connect(self.mark)
        results.undoRequested.connect(self.undo_mark)
        results.similarRequested.connect(self.search_similar)
        self.actions.previous_button.clicked.connect(lambda: self.turn_page(-1))
        self.actions.next_button.clicked.connect(lambda: self.turn_page(1))
        self.actions.more_button.clicked.connect(lambda: self.mark(results.current_hit(), True))
        self.actions.less_button.clicked.connect(lambda: self.mark(results.current_hit(), False))
        self.actions.save_button.clicked.connect(lambda: self.save_footprints())
        self.actions.clear_button.clicked.connect(self.clear_all_results)
        marks.refine_button.clicked.connect(self.refine)
        marks.undo_button.clicked.connect(lambda: self.undo_mark())
        marks.clear_button.clicked.connect(self.clear_examples)
        marks.save_button.clicked.connect(lambda: self.save_refined_search())
        marks.run_saved_button.clicked.connect(lambda: self.run_saved_search())

    # --- runtime ---------------------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """The panel is shown: start the worker now, so the first search finds it ready."""
        super().showEvent(event)
        self.start_runtime()

    def start_runtime(self) -> None:
        if self.client.state == RuntimeClient.STOPPED and not self.client.last_error:
            log(self.tr("search panel shown: starting the runtime"))
            self.client.start()

    # --- index -----------------------------------------------------------------------------------
    def index_path(self) -> str:
        return self.session.index

    def set_index_path(self, path: str) -> None:
        self.bar.show_index(path)
        settings.set_index_path(path)

    def _index_changed(self, path: str) -> None:
        """Results, a running search and marks of another index are not current any more:
        clear them at once."""
        notes = self.session.set_index(path)
        if Note.INDEX_CHANGED in notes:
            self.cancel()
            self.bar.set_busy(False)
            self.clear_results()
            self.status_label.setText(wording.note_text(Note.INDEX_CHANGED))
        if Note.MARKS_CLEARED in notes:
            self._marks_changed()

    def clear_results(self) -> None:
        """Empty the list, the weak-match note and the highlight (map groups stay)."""
        self.session.clear_result()
        self.results.clear_hits()
        self.weak_label.setVisible(False)
        self.actions.show_pages(False, False)
        self.status_label.setToolTip("")
        self.result_map.reset_highlight()

    def clear_all_results(self) -> int:
        """Clear the list and remove "CACH results" from the layer tree; returns the number
        of layers removed."""
        self.cancel()
        self.clear_results()
        return self.result_map.clear()

    def message(
        self,
        text: str,
        level: Qgis.MessageLevel = Qgis.MessageLevel.Info,
        duration: int = 8,
        details: str = "",
    ) -> None:
        """Message bar + log; errors never become exception dialogs."""
        message_bar.push(self.iface, text, level, duration, details)

    # --- search ----------------------------------------------------------------------------------
    def search(self) -> PendingRequest | None:
        """Search with the query text (and any marked tiles); returns the request."""
        return self._send(Query(text=self.bar.query_edit.text().strip()))

    def refine(self) -> PendingRequest | None:
        """Re-run the query, learning from the tiles marked right and wrong."""
        return self.search()

    def search_similar(self, hit: Hit) -> PendingRequest | None:
        """Tiles like ``hit`` (query by tile)."""
        return self._send(Query(tile=hit.tile_id))

    def run_saved_search(self, path: str = "") -> PendingRequest | None:
        """Run a refined search kept in ``path`` (asked for when empty) on the chosen index
        (the worker's ``saved``)."""
        path = path or search_files.saved_search_path(self)
        return self._send(Query(saved=path)) if path else None

    def save_refined_search(self, path: str = "") -> PendingRequest | None:
        """Refine with the marks and keep the refined search in ``path`` (asked for when
        empty; the worker's ``save``); the results are shown as usual."""
        if not self.session.marks:
            self.status_label.setText(wording.note_text(Note.NO_MARKS))
            return None
        path = path or search_files.save_search_path(self)
        return self._send(Query(text=self.bar.query_edit.text().strip()), path) if path else None

    def turn_page(self, step: int) -> PendingRequest | None:
        """Show the page ``step`` pages after the shown one (before it when negative): the
        same query, marks and extent; None when there is no such page. Marks made on any
        page are kept."""
        call = self.session.page_request(step)
        return self._send(self.session.page.query, call=call) if call is not None else None

    def _send(
        self, query: Query, save: str = "", call: SearchRequest | None = None
    ) -> PendingRequest | None:
        """Send ``query`` as the current search (the latest query wins): as ``call`` when
        given (a page of the shown query), else as the session makes it from the panel. None
        when it cannot be sent (the status line or the message bar says why)."""
        if call is None:
            stopped = self.client.state == RuntimeClient.STOPPED and bool(self.client.last_error)
            blocked = self.session.blocked(query, runtime_down=stopped)
            if blocked is Note.NO_QUERY:
                self.status_label.setText(wording.note_text(blocked))
                return None
            if blocked is not None:
                # the runtime is the first thing to fix: say so, not "choose an index"
                text = self.client.last_error if blocked is Note.RUNTIME_DOWN else ""
                self.message(text or wording.note_text(blocked), Qgis.MessageLevel.Warning)
                return None
            in_extent = self.bar.extent_check.isChecked()
            canvas = self.iface.mapCanvas() if self.iface else None
            call = self.session.search_request(
                query, canvas_bbox(canvas) if in_extent else None, save
            )
        self.cancel()
        settings.set_index_path(self.session.index)
        settings.set_top_k(self.session.k)
        req = self.client.send(call)
        self.session.begin(req.id, query, call)
        req.succeeded.connect(lambda raw, req=req: self._on_results(req, raw))
        req.failed.connect(lambda error, req=req: self._on_failed(req, error))
        self.request = req
        self.bar.set_busy(True)
        self.status_label.setText(wording.note_text(Note.SEARCHING))
        self.searchStarted.emit(req)
        return req

    def cancel(self) -> None:
        """Cancel the running search, if any (its answer will never be shown)."""
        if self.request is not None and not self.request.done:
            self.request.cancel()

    def _on_failed(self, req: PendingRequest, error: WorkerError) -> None:
        note = self.session.failed(req.id, error.cancelled)
        if note is None:
            return  # a replaced search
        self.bar.set_busy(False)
        if note is Note.CANCELLED:
            self.status_label.setText(wording.note_text(note))
            return
        self.clear_results()  # the message must not sit next to another query's results
        text = wording.error_text(error.info)
        self.status_label.setText(message_bar.error_html(text))
        level = message_bar.LEVELS[wording.error_level(error.info)]
        self.message(text, level, duration=15, details=wording.error_details(error.info))
        self.searchFailed.emit(error)

    def _on_results(self, req: PendingRequest, raw: dict[str, Any]) -> None:
        result = SearchResult.from_json(raw)
        result = replace(result, timing_ms=waited(result, req.sent_at))
        query = self.session.query
        notes = self.session.answered(req.id, result)
        if notes is None or query is None:
            return  # a replaced search
        label, what = query_words(query)
        call = req.call  # a saved search sends no marks: its file holds the ones it was made with
        title = layers.group_title(
            label, len(call.positive), len(call.negative), self.session.shown_ranks()
        )
        self.show_result(result, query.key, title, query.text or label, what, notes)
        if req.params.get("save"):
            self.message(wording.saved_search_text(req.params["save"]), Qgis.MessageLevel.Success)

    def show_result(
        self,
        result: SearchResult,
        key: str,
        title: str,
        query: str,
        what: str,
        notes: list[Note] | None = None,
    ) -> ResultLayers:
        """Result group on top of the layer tree, rows in the list, the status and any
        weak-match note. ``notes``: the session has taken ``result`` already."""
        if notes is None:
            notes = self.session.show(result)
        self.bar.set_busy(False)
        shown = self.session.result
        index = str(shown.index.get("path") or self.session.result_index)
        shown_layers = self.result_map.show(shown, key, title, query, index)
        self.results.show_hits(shown.results)
        off_map = sum(1 for h in shown.results if not h.georeferenced)
        ranks = self.session.shown_ranks()
        self.status_label.setText(
            wording.results_status(len(shown.results), off_map, shown.timing_ms, what, ranks,
                                   wording.shared_confidence(shown.results))
        )
        self.actions.show_pages(self.session.has_previous_page(), self.session.has_next_page())
        self.status_label.setToolTip(wording.model_details(shown.model, shown.index))
        weak = Note.WEAK_MATCH in notes
        self.weak_label.setText(wording.weak_match_text(query) if weak else "")
        self.weak_label.setVisible(weak)
        if Note.OUTDATED_INDEX in notes:
            self.outdatedIndex.emit(index, dict(shown.index))
        self.resultsShown.emit(shown_layers)
        return shown_layers

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
                timing_ms=waited(result, waited_since),
            )
            key = Query(tile=hit.tile_id).key
            self.show_result(similar, key, layers.group_title(label), label, label)
        self.captionsShown.emit(hit, result)

    # --- marks -----------------------------------------------------------------------------------
    def mark(self, hit: Hit | None, positive: bool) -> None:
        """Mark a tile right (more like this) or wrong (less like this); Refine learns from it."""
        if hit is None:
            self.status_label.setText(wording.note_text(Note.NO_SELECTION))
            return
        self.session.mark(hit, positive)
        self._marks_changed()

    def undo_mark(self, tile_id: int | None = None) -> bool:
        """Forget one mark: ``tile_id``'s, else the one selected in the marks list, else the
        latest. Returns whether a mark was forgotten."""
        if tile_id is None:
            tile_id = self.marks_box.selected_tile()
        undone = self.session.marks.undo(tile_id)
        self._marks_changed()
        return undone is not None

    def clear_examples(self) -> None:
        """Forget every mark."""
        self.session.marks.clear()
        self._marks_changed()

    def _marks_changed(self) -> None:
        self.marks_box.show_marks(self.session.marks)
        self.results.show_marks()

    # --- export and unload -----------------------------------------------------------------------
    def save_footprints(self, path: str = "") -> str:
        """Write the footprints to a GeoPackage (``path``, asked for when empty) and say which
        rows have no geometry and why; returns what was said."""
        if self.result_map.layers is None:
            self.status_label.setText(wording.note_text(Note.NO_RESULT))
            return ""
        path = path or search_files.footprints_path(self)
        if not path:
            return ""
        try:
            text, level = self.result_map.save_footprints(path)
        except OSError as err:
            self.message(
                self.tr(
                    "The footprints could not be saved ({err}). Choose another file or folder."
                ).format(err=err),
                Qgis.MessageLevel.Warning,
            )
            return ""
        self.message(text, level)
        return text

    def cleanup(self) -> None:
        """Remove what the panel put on the canvas (plugin unload)."""
        self.results.clear_hits()
        self.cancel()
        self.result_map.cleanup()


def waited(result: Any, since: float | None) -> dict[str, Any]:
    """The runtime's timings with ``total`` = the time the analyst waited since ``since``
    (monotonic), the runtime's own total kept as ``runtime``."""
    timing = dict(result.timing_ms or {})
    if since is None:
        return timing
    return {**timing, "runtime": timing.get("total"), "total": (time.monotonic() - since) * 1000}
