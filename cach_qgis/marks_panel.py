"""The search panel's marks box: the tiles the analyst marked right or wrong, listed with their
mark, and the buttons that use them (Refine, Undo mark, Clear marks, Save refined search…, Run
saved search…). The state lives in ``session.Marks``; the dock connects the buttons."""

from __future__ import annotations

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from . import wording
from .session import Marks

TILE_ROLE = Qt.ItemDataRole.UserRole + 2
RIGHT_COLOUR = "#1a7f37"
WRONG_COLOUR = "#b2182b"


class MarksBox(QWidget):
    """The marked tiles (latest first) and what can be done with them."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setMaximumHeight(96)
        self.list.setToolTip(
            self.tr("Tiles you marked right (more like this) or wrong (less like this)")
        )
        self.refine_button = self._button(
            self.tr("Refine"),
            self.tr("Search again, learning from the tiles marked right and wrong"),
        )
        self.undo_button = self._button(
            self.tr("Undo mark"), self.tr("Forget the selected mark (none selected: the latest)")
        )
        self.clear_button = self._button(self.tr("Clear marks"), self.tr("Forget every mark"))
        self.save_button = self._button(
            self.tr("Save refined search…"),
            self.tr("Keep this search and its marks in a file, to run it on other imagery later"),
        )
        self.run_saved_button = self._button(
            self.tr("Run saved search…"),
            self.tr("Run a refined search kept in a file on the index chosen above"),
        )
        layout.addWidget(self.label)
        layout.addWidget(self.list)
        layout.addLayout(self._row(self.refine_button, self.undo_button, self.clear_button))
        layout.addLayout(self._row(self.save_button, self.run_saved_button))

    @staticmethod
    def _button(text: str, tip: str) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        return button

    @staticmethod
    def _row(*buttons: QPushButton) -> QHBoxLayout:
        row = QHBoxLayout()
        for button in buttons:
            row.addWidget(button)
        return row

    def show_marks(self, marks: Marks) -> None:
        """List ``marks`` (latest first), each with its mark; enable what they allow."""
        self.list.clear()
        for mark in reversed(marks.items()):
            item = QListWidgetItem(wording.mark_text(mark.hit, mark.right))
            item.setData(TILE_ROLE, mark.tile_id)
            item.setForeground(QColor(RIGHT_COLOUR if mark.right else WRONG_COLOUR))
            item.setToolTip(wording.hit_tooltip(mark.hit))
            self.list.addItem(item)
        right, wrong = len(marks.positive()), len(marks.negative())
        self.label.setText(wording.marks_summary(right, wrong))
        self.list.setVisible(bool(marks))
        self.undo_button.setEnabled(bool(marks))
        self.clear_button.setEnabled(bool(marks))
        self.save_button.setEnabled(bool(marks))

    def selected_tile(self) -> int | None:
        """The tile id of the selected mark, if one is selected."""
        item = self.list.currentItem()
        return int(item.data(TILE_ROLE)) if item is not None and item.isSelected() else None

    def rows(self) -> list[str]:
        """The listed marks' texts, as shown (latest first)."""
        return [self.list.item(i).text() for i in range(self.list.count())]
