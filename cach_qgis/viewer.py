"""A tile enlarged: for results that have no place on the map (not georeferenced), and on demand.

The image is read by GDAL from the source window, like the list's thumbnails; "Open image" hands
the source file to the system's image viewer. Nothing here puts a layer on the map.
"""

from __future__ import annotations

from qgis.PyQt.QtCore import Qt, QUrl
from qgis.PyQt.QtGui import QDesktopServices, QPixmap
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..model_runtime.protocol import NOT_GEOREFERENCED_NOTE, Hit
from . import wording
from .thumbnails import thumbnail

VIEW_SIZE = 480


class TileViewer(QDialog):
    """Non-modal window showing one result tile large, with "Open image"."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("CachTileViewer")
        self.hit: Hit | None = None
        self.opened: list[str] = []  # URLs handed to the system viewer
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(VIEW_SIZE // 2, VIEW_SIZE // 2)
        self.title = QLabel()
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color:#8a4b00")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.open_button = QPushButton(self.tr("Open image"))
        self.open_button.setToolTip(self.tr("Open the source image in your system's image viewer"))
        self.open_button.clicked.connect(self.open_image)
        buttons.addButton(self.open_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        for widget in (self.image, self.title, self.note, buttons):
            layout.addWidget(widget)

    def show_hit(self, hit: Hit) -> None:
        """Show ``hit`` enlarged and bring the window up."""
        self.hit = hit
        self.setWindowTitle(self.tr("CACH: result #{rank}").format(rank=hit.rank))
        image = thumbnail(hit.source, hit.window, VIEW_SIZE)
        if image is None:
            self.image.setText(self.tr("The image cannot be read."))
        else:
            self.image.setPixmap(QPixmap.fromImage(image))
        match = wording.confidence_text(hit.confidence) or f"score {hit.score:.2f}"
        self.title.setText(
            self.tr("<b>#{rank}</b> {name} — {match}").format(
                rank=hit.rank, name=hit.name, match=match
            )
        )
        self.note.setText(
            ""
            if hit.georeferenced
            else f"{wording.NOT_GEOREFERENCED.capitalize()}: "
            f"{NOT_GEOREFERENCED_NOTE.split(': ', 1)[-1]}."
        )
        self.note.setVisible(not hit.georeferenced)
        self.show()
        self.raise_()

    def open_image(self) -> str:
        """Open the whole source image in the system viewer; returns the URL."""
        if self.hit is None:
            return ""
        url = QUrl.fromLocalFile(self.hit.source)
        self.opened.append(url.toString())
        QDesktopServices.openUrl(url)
        return url.toString()
