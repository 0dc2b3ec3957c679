"""The search panel's query rows: the index folder, the words and Search/Cancel, the options (top
k, tiles on the map, current extent only) and the busy bar. The rows write the session's index
and k as they change; the panel connects Search, Cancel and the index change."""

from __future__ import annotations

from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import settings, wording
from .session import SearchSession


class QueryBar(QWidget):
    """What to search and how: index, words, k, tiles on the map, extent."""

    def __init__(self, session: SearchSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._index_row())
        layout.addLayout(self._query_row())
        layout.addLayout(self._options_row())
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumHeight(8)
        self.busy.setTextVisible(False)
        self.busy.setVisible(False)
        layout.addWidget(self.busy)

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
        self.index_combo.setCurrentText(self.session.index)
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
        self.search_button = QPushButton(self.tr("Search"))
        self.search_button.setToolTip(self.tr("Search now (a search still running is replaced)"))
        self.cancel_button = QPushButton(self.tr("Cancel"))
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
        self.k_spin.setValue(self.session.k)
        self.k_spin.setPrefix(self.tr("top "))
        self.k_spin.setToolTip(self.tr("How many tiles a search returns"))
        self.k_spin.valueChanged.connect(self._set_k)
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

    def _set_k(self, k: int) -> None:
        self.session.k = int(k)

    def _browse_index(self) -> None:
        path = QFileDialog.getExistingDirectory(
            self, self.tr("CACH index folder"), self.session.index
        )
        if path:
            self.show_index(path)
            settings.set_index_path(path)

    def show_index(self, path: str) -> None:
        """Choose ``path`` in the index box (listed first when new); the box's change signal
        tells the panel."""
        if self.index_combo.findText(path) < 0:
            self.index_combo.insertItem(0, path)
        self.index_combo.setCurrentText(path)

    def set_busy(self, busy: bool) -> None:
        """A search is running. Search stays enabled: a new query replaces the running one."""
        self.busy.setVisible(busy)
        self.cancel_button.setVisible(busy)
