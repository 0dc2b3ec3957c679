"""The search panel's result list: one row per hit with its thumbnail and mark, a right-click
menu, and the buttons under it (‹ Previous and Next › turn the page; + More like this,
− Less like this, Save footprints…, Clear results). The rows show the session's marks; what a
row or button asks for leaves as a signal or a button's click, which the panel acts on."""

from __future__ import annotations

from typing import Any

from qgis.PyQt.QtCore import QSize, Qt, QTimer, pyqtSignal
from qgis.PyQt.QtGui import QColor, QIcon, QPixmap
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..model_runtime.protocol import Hit
from . import wording
from .session import Marks
from .thumbnails import thumbnail

HIT_ROLE = Qt.ItemDataRole.UserRole + 1
THUMB_SIZE = 64
OFF_MAP_COLOUR = "#8a4b00"


class ResultsList(QListWidget):
    """The hits of the shown result, best first; thumbnails load one per event-loop turn."""

    zoomRequested = pyqtSignal(object)  # Hit
    viewRequested = pyqtSignal(object)  # Hit
    selected = pyqtSignal(object)  # Hit: the analyst selected its row
    markRequested = pyqtSignal(object, bool)  # Hit, right
    undoRequested = pyqtSignal(int)  # tile id
    similarRequested = pyqtSignal(object)  # Hit

    def __init__(self, marks: Marks, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.marks = marks
        #: the confidence all shown hits share (``wording.shared_confidence``), else None
        self._shared: float | None = None
        self._thumb_queue: list[QListWidgetItem] = []
        self._thumb_timer = QTimer(self)
        self._thumb_timer.setInterval(0)
        self._thumb_timer.timeout.connect(self._next_thumbnail)
        self.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.setToolTip(
            self.tr("Select a tile to zoom to it; right-click for more (similar tiles, + and −)")
        )
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.currentItemChanged.connect(
            lambda item, _prev: self.selected.emit(item.data(HIT_ROLE)) if item else None
        )

    def show_hits(self, hits: list[Hit]) -> None:
        """List ``hits`` with a grey placeholder each; their thumbnails follow."""
        self.clear_hits()
        self._shared = wording.shared_confidence(hits)
        self.blockSignals(True)
        placeholder = QPixmap(THUMB_SIZE, THUMB_SIZE)
        placeholder.fill(Qt.GlobalColor.lightGray)
        for hit in hits:
            item = QListWidgetItem(QIcon(placeholder), self._text(hit))
            item.setData(HIT_ROLE, hit)
            item.setToolTip(wording.hit_tooltip(hit))
            if not hit.georeferenced:
                item.setForeground(QColor(OFF_MAP_COLOUR))
            self.addItem(item)
            self._thumb_queue.append(item)
        self.blockSignals(False)
        self._thumb_timer.start()

    def clear_hits(self) -> None:
        """Empty the list and stop loading thumbnails."""
        self._thumb_timer.stop()
        self._thumb_queue = []
        self.clear()

    def show_marks(self) -> None:
        """Rewrite each row's mark (✓ right, ✗ wrong) from the session's marks."""
        for row in range(self.count()):
            item = self.item(row)
            item.setText(self._text(item.data(HIT_ROLE)))

    def _text(self, hit: Hit) -> str:
        state = self.marks.state(hit.tile_id)
        return wording.hit_text(hit, "" if state is None else "  ✓" if state else "  ✗",
                                self._shared)

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

    def hits(self) -> list[Hit]:
        """The listed hits, in order."""
        return [self.item(i).data(HIT_ROLE) for i in range(self.count())]

    def current_hit(self) -> Hit | None:
        item = self.currentItem()
        return item.data(HIT_ROLE) if item is not None else None

    def _context_menu(self, pos: Any) -> None:
        item = self.itemAt(pos)
        if item is not None:
            self.menu(item.data(HIT_ROLE)).exec_(self.viewport().mapToGlobal(pos))

    def menu(self, hit: Hit) -> QMenu:
        """The right-click menu of ``hit``'s row."""
        menu = QMenu(self)
        zoom = menu.addAction(self.tr("Zoom to tile"), lambda: self.zoomRequested.emit(hit))
        zoom.setEnabled(hit.georeferenced)
        menu.addAction(self.tr("View tile enlarged"), lambda: self.viewRequested.emit(hit))
        menu.addAction(
            self.tr("Mark right: more like this (+)"), lambda: self.markRequested.emit(hit, True)
        )
        menu.addAction(
            self.tr("Mark wrong: less like this (−)"), lambda: self.markRequested.emit(hit, False)
        )
        if hit.tile_id in self.marks:
            menu.addAction(self.tr("Undo this mark"), lambda: self.undoRequested.emit(hit.tile_id))
        menu.addAction(
            self.tr("Search tiles similar to this one"), lambda: self.similarRequested.emit(hit)
        )
        return menu


class ResultActions(QWidget):
    """The buttons under the list: turn the page, mark the selected row, save the footprints,
    clear."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.previous_button = QPushButton(self.tr("‹ Previous"))
        self.previous_button.setToolTip(self.tr("The page of better-ranked tiles before these"))
        self.next_button = QPushButton(self.tr("Next ›"))
        self.next_button.setToolTip(
            self.tr("The next page: as many tiles again, ranked after these")
        )
        self.show_pages(False, False)
        self.more_button = QPushButton(self.tr("+ More like this"))
        self.more_button.setToolTip(
            self.tr("Use the selected tile as an example of what you want (Refine)")
        )
        self.less_button = QPushButton(self.tr("− Less like this"))
        self.less_button.setToolTip(
            self.tr("Use the selected tile as an example of what you do not want")
        )
        self.save_button = QPushButton(self.tr("Save footprints…"))
        self.save_button.setToolTip(self.tr("Write the result's footprints to a GeoPackage"))
        self.clear_button = QPushButton(self.tr("Clear results"))
        self.clear_button.setToolTip(
            self.tr('Remove the "CACH results" group and all its layers from the layer tree')
        )
        pages = QHBoxLayout()
        pages.addWidget(self.previous_button)
        pages.addStretch(1)
        pages.addWidget(self.next_button)
        row = QHBoxLayout()
        for button in (self.more_button, self.less_button, self.save_button, self.clear_button):
            row.addWidget(button)
        rows = QVBoxLayout(self)
        rows.setContentsMargins(0, 0, 0, 0)
        rows.addLayout(pages)
        rows.addLayout(row)

    def show_pages(self, previous: bool, following: bool) -> None:
        """Enable ‹ Previous when a page comes before the shown one, Next › when one may
        follow."""
        self.previous_button.setEnabled(previous)
        self.next_button.setEnabled(following)
