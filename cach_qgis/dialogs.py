"""Dialogs: "Index raster folder..." and "Runtime settings"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import QgsApplication
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import QCoreApplication, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..model_runtime.protocol import Estimate, IndexRequest, LoadRequest
from . import guide, settings, wording
from .message_bar import error_html
from .runtime_client import PendingRequest, RuntimeClient, WorkerError
from .runtime_setup import KINDS, RuntimeInstaller, describe_runtime, is_executable, size_text
from .tasks import IndexTask
from .wording import tr


def parse_bands(text: str) -> list[int] | None:
    """ "4,3,2" -> [4, 3, 2]; empty -> None (the runtime chooses). Raises ValueError."""
    text = text.strip()
    if not text:
        return None
    bands = [int(part) for part in text.replace(" ", ",").split(",") if part]
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise ValueError("Bands are 1 or 3 band numbers, e.g. 1,2,3 or 4,3,2.")
    return bands


class IndexDialog(QDialog):
    """Folder, index location, tiling and bands; "Estimate" runs a dry run; OK starts a task."""

    taskStarted = pyqtSignal(object)  # IndexTask

    def __init__(self, client: RuntimeClient, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.task: IndexTask | None = None
        self._estimate: PendingRequest | None = None
        self.setWindowTitle(self.tr("CACH: Index raster folder"))
        self.folder = QgsFileWidget()
        self.folder.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.folder.fileChanged.connect(self._folder_changed)
        self.index = QgsFileWidget()
        self.index.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        # the index follows the raster folder (<folder>/cach_index) unless the analyst adds to
        # an existing index; the dialog then says what it holds (docs/indexing.md)
        self.index.fileChanged.connect(lambda _path: self.refresh_holdings())
        self.add_existing = QCheckBox(self.tr("add to an existing index"))
        self.add_existing.toggled.connect(self._add_existing_toggled)
        self.holds_label = QLabel("")
        self.holds_label.setWordWrap(True)
        self.holdings: Estimate | None = None
        self._holdings: PendingRequest | None = None
        self._tiling_fields()
        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)
        estimate = QPushButton(self.tr("Estimate (dry run)"))
        estimate.clicked.connect(self.estimate)
        self.estimate_button = estimate
        self._tooltips()
        self._lay_out()

    def _tiling_fields(self) -> None:
        """Tile size, ground size, overlap, scales, rebuild and bands."""
        self.tile_size = QSpinBox()
        self.tile_size.setRange(32, 8192)
        self.tile_size.setValue(256)
        self.tile_size.setSuffix(self.tr(" px"))
        self.tile_metres = QDoubleSpinBox()
        self.tile_metres.setRange(0, 100000)
        self.tile_metres.setSpecialValueText(self.tr("off (use pixels)"))
        self.tile_metres.setSuffix(self.tr(" m"))
        self.overlap = QDoubleSpinBox()
        self.overlap.setRange(0.0, 0.9)
        self.overlap.setSingleStep(0.25)
        self.overlap.setDecimals(2)
        self.multi_scale = QCheckBox(self.tr("also tiles twice as large (scales 1, 2)"))
        self.rebuild = QCheckBox(self.tr("rebuild from scratch (e.g. after a model update)"))
        self.bands = QLineEdit()
        self.bands.setPlaceholderText(self.tr("automatic (RGB), or e.g. 1,2,3 or 4,3,2"))

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow(self.tr("Raster folder"), self.folder)
        form.addRow(self.tr("Index folder"), self.index)
        form.addRow("", self.add_existing)
        form.addRow("", self.holds_label)
        form.addRow(self.tr("Tile size"), self.tile_size)
        form.addRow(self.tr("Tile ground size"), self.tile_metres)
        form.addRow(self.tr("Overlap (fraction)"), self.overlap)
        form.addRow("", self.multi_scale)
        form.addRow("", self.rebuild)
        form.addRow(self.tr("Bands"), self.bands)
        row = QHBoxLayout()
        row.addWidget(self.estimate_button)
        row.addWidget(self.estimate_label, 1)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText(self.tr("Index"))
        buttons.accepted.connect(self.start)
        buttons.rejected.connect(self.reject)
        guide.add_help_button(buttons, guide.INDEX)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row)
        layout.addWidget(buttons)

    def _tooltips(self) -> None:
        """What each field does, where the analyst hovers (the guide has the same words)."""
        for widget, text in (
            (
                self.folder,
                self.tr(
                    "The folder of rasters to index, searched with its subfolders: GeoTIFF, JPEG "
                    "2000, VRT, IMG, PNG and JPEG files"
                ),
            ),
            (self.index, self.tr("The folder the index is written to")),
            (
                self.add_existing,
                self.tr(
                    "Add the raster folder to an index that exists already, instead of a new index "
                    "beside the folder"
                ),
            ),
            (
                self.tile_size,
                self.tr("Tile side in pixels. A photo smaller than a tile becomes one tile"),
            ),
            (
                self.tile_metres,
                self.tr(
                    "Tile side in metres on the ground instead of pixels (rasters with a CRS only)"
                ),
            ),
            (
                self.overlap,
                self.tr(
                    "The fraction of a tile shared with its neighbour: more overlap finds objects "
                    "cut by tile edges, at the cost of more tiles"
                ),
            ),
            (
                self.multi_scale,
                self.tr("Also index tiles twice as large, for scenes bigger than one tile"),
            ),
            (
                self.rebuild,
                self.tr(
                    "Delete what the index holds and index everything again (after a model update)"
                ),
            ),
            (
                self.bands,
                self.tr(
                    "Which bands make the picture: empty = automatic (RGB, alpha ignored), or "
                    "three band numbers such as 4,3,2, or one band"
                ),
            ),
            (
                self.estimate_button,
                self.tr(
                    "Count files, new tiles, data to read and the expected time, without indexing"
                ),
            ),
        ):
            widget.setToolTip(text)

    def preset(self, index: str, folders: list[str], rebuild: bool = False) -> None:
        """Fill the form, e.g. to re-index an index with the new model."""
        self.add_existing.setChecked(True)
        self.index.setFilePath(index)
        if folders:
            self.folder.setFilePath(folders[0])
        self.rebuild.setChecked(rebuild)

    def _folder_changed(self, path: str) -> None:
        if path and not self.add_existing.isChecked():
            self.index.setFilePath(str(Path(path) / "cach_index"))
        self.refresh_holdings()

    def _add_existing_toggled(self, checked: bool) -> None:
        folder = self.folder.filePath().strip()
        following = not self.index.filePath() or (
            folder and self.index.filePath() == str(Path(folder) / "cach_index")
        )
        if checked and following and settings.index_path():
            self.index.setFilePath(settings.index_path())  # the index last used
        elif not checked and folder:
            self.index.setFilePath(str(Path(folder) / "cach_index"))

    def refresh_holdings(self) -> PendingRequest | None:
        """Say which index the run writes to and, for an existing one, what it holds and that
        the folder is added to it (the worker's dry run; its tiling fills the form)."""
        index, folder = self.index.filePath().strip(), self.folder.filePath().strip()
        self.holdings = None
        if not index or not (Path(index) / "index.sqlite").is_file():
            self.holds_label.setText(self.tr("A new index in {0}.").format(index) if index else "")
            return None
        if not folder:
            self.holds_label.setText(
                self.tr("Add to the existing index in {0}: choose the raster folder.").format(index)
            )
            return None
        self.holds_label.setText(self.tr("Reading what the index in {0} holds…").format(index))
        req = self.client.send(IndexRequest(index, paths=(folder,), dry_run=True))
        req.succeeded.connect(lambda raw: self._show_holdings(index, Estimate.from_json(raw)))
        req.failed.connect(
            lambda err: self.holds_label.setText(
                self.tr("Cannot read the index in {0}: {1}").format(
                    index, wording.error_text(err.info)
                )
            )
        )
        self._holdings = req
        return req

    def _show_holdings(self, index: str, estimate: Estimate) -> None:
        if index != self.index.filePath().strip():
            return  # the analyst chose another index meanwhile
        self.holdings = estimate
        self.holds_label.setText(
            holdings_text(index, self.folder.filePath().strip(), estimate, self.tr)
        )
        if estimate.tiling:  # the index's own tiling: indexing as shown re-tiles nothing
            self._set_tiling(estimate.tiling)

    def _set_tiling(self, tiling: dict[str, Any]) -> None:
        self.tile_size.setValue(int(tiling.get("tile_size") or 256))
        self.tile_metres.setValue(float(tiling.get("tile_metres") or 0.0))
        self.overlap.setValue(float(tiling.get("overlap") or 0.0))
        self.multi_scale.setChecked(list(tiling.get("scales") or [1]) == [1, 2])
        bands = tiling.get("bands") or []
        self.bands.setText(",".join(str(b) for b in bands))

    def index_request(self, dry_run: bool = False) -> IndexRequest:
        """The ``index`` request the form describes; raises ValueError on bad input."""
        folder, index = self.folder.filePath().strip(), self.index.filePath().strip()
        if not folder:
            raise ValueError("Choose the folder of rasters to index.")
        if not index:
            raise ValueError("Choose where the index is stored.")
        return IndexRequest(
            index,
            paths=(folder,),
            tile_size=self.tile_size.value(),
            tile_metres=self.tile_metres.value() if self.tile_metres.value() > 0 else None,
            overlap=round(self.overlap.value(), 3),
            scales=(1, 2) if self.multi_scale.isChecked() else None,
            bands=tuple(parse_bands(self.bands.text()) or ()) or None,
            dry_run=dry_run,
            rebuild=self.rebuild.isChecked(),
        )

    def estimate(self) -> PendingRequest | None:
        """Dry run: files, tiles, bytes and seconds, shown under the form."""
        try:
            call = self.index_request(dry_run=True)
        except ValueError as err:
            self.estimate_label.setText(str(err))
            return None
        self.estimate_label.setText(self.tr("Estimating…"))
        self.estimate_button.setEnabled(False)
        req = self.client.send(call)
        req.succeeded.connect(
            lambda r: self.estimate_label.setText(wording.estimate_text(Estimate.from_json(r)))
        )
        req.failed.connect(
            lambda e: self.estimate_label.setText(
                self.tr("Cannot estimate: {error_text}").format(
                    error_text=wording.error_text(e.info)
                )
            )
        )
        req.finished.connect(lambda: self.estimate_button.setEnabled(True))
        self._estimate = req
        return req

    def start(self) -> None:
        """Start the indexing task and close."""
        try:
            call = self.index_request()
        except ValueError as err:
            self.estimate_label.setText(str(err))
            return
        task = IndexTask(self.client, call)
        self.task = task
        QgsApplication.taskManager().addTask(task)
        self.taskStarted.emit(task)
        self.accept()


class QuestionDialog(QDialog):
    """A question with a go-ahead button, shown with ``open()`` (it never blocks the UI thread);
    the caller connects ``accepted``."""

    def __init__(
        self,
        title: str,
        text: str,
        ok_text: str,
        parent: QWidget | None = None,
        help_section: str = "",
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.text = QLabel(text)
        self.text.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText(ok_text)
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setDefault(True)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.help_button = guide.add_help_button(buttons, help_section) if help_section else None
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)


def holdings_text(index: str, folder: str, estimate: Estimate, tr: Any = str) -> str:
    """ "Add to this index (...), which holds N tiles of these folders: ..." from a dry run."""
    held = estimate.roots_held
    if not held:
        return tr("Add to the index in {0}, which holds no tiles yet.").format(index)
    folders = ", ".join(f"{r.get('path')} ({int(r.get('tiles') or 0):,})" for r in held)
    text = tr("Add to this index ({0}), which holds {1:,} tiles of these folders: {2}.").format(
        index, estimate.index_tiles, folders
    )
    if estimate.roots_added:
        text += " " + tr("{0} is new to it and is added.").format(folder)
    else:
        text += " " + tr("{0} is one of them: only new or changed files are indexed.").format(
            folder
        )
    if estimate.retile_tiles:
        text += " " + tr(
            "The tiling chosen is not the index's: all {0:,} tiles would be tiled again."
        ).format(estimate.retile_tiles)
    return text


def confirm_retile_dialog(details: dict[str, Any], parent: QWidget | None = None) -> QuestionDialog:
    """Another tiling than the index's re-tiles every folder of it: ask first."""
    roots = [str(r) for r in details.get("roots") or []]
    text = tr(  # one argument: pylupdate5 misses a call with a trailing comma
        "The tiling you chose is not this index's own. Indexing with it tiles all "
        "{0:,} tiles of the index's {1} folder(s) again: {2}. Re-tile them all, or cancel and "
        "keep the index's tiling."
    ).format(int(details.get("retile_tiles") or 0), len(roots), ", ".join(roots))
    return QuestionDialog(
        QCoreApplication.translate("CACH", "CACH: re-tile the whole index"),
        text,
        QCoreApplication.translate("CACH", "Re-tile all"),
        parent,
    )


def confirm_run_dialog(estimate: Estimate, parent: QWidget | None = None) -> QuestionDialog:
    """The worker's estimate of a very large run, with "Index anyway"."""
    return QuestionDialog(
        tr("CACH: a very large indexing run"),
        wording.confirm_text(estimate),
        tr("Index anyway"),
        parent,
    )


def adapt_dialog(index: str, parent: QWidget | None = None) -> QuestionDialog:
    """What "Adapt to this archive" does, with "Adapt"."""
    return QuestionDialog(
        tr("CACH: adapt to this archive"),
        wording.adapt_question(index),
        tr("Adapt"),
        parent,
        help_section=guide.ADAPT,
    )


class RuntimeDialog(QDialog):
    """Runtime Python path, detection, "Create runtime…" with progress + log, and a test."""

    def __init__(self, client: RuntimeClient, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.installer: RuntimeInstaller | None = None
        self.setWindowTitle(self.tr("CACH: Runtime settings"))
        self.resize(640, 420)
        self.python = QgsFileWidget()
        self.python.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        self.python.setFilePath(
            settings.runtime_python() or settings.resolve_runtime_python() or ""
        )
        self.found = QLabel(describe_runtime())
        self.found.setWordWrap(True)
        self.device = QLabel(self._device_text())
        detect = QPushButton(self.tr("Detect"))
        detect.clicked.connect(self.detect)
        test = QPushButton(self.tr("Test runtime"))
        test.clicked.connect(self.test)
        self.create_button = QPushButton(self.tr("Create runtime…"))
        self.create_button.setToolTip(
            self.tr(
                "Create a virtual environment in {data_dir} with the pinned "
                "requirements (QGIS's own Python is not touched)."
            ).format(data_dir=settings.data_dir())
        )
        self.create_button.clicked.connect(self.create_runtime)
        self._kind_chooser()
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setVisible(False)
        self.python.setToolTip(self.tr("The Python interpreter of the CACH runtime"))
        detect.setToolTip(self.tr("Look for a runtime made by the setup script or from QGIS"))
        test.setToolTip(self.tr("Start the runtime, load its model and show its device"))
        self._lay_out((detect, test, self.create_button))
        client.deviceChanged.connect(lambda _d: self.device.setText(self._device_text()))

    def _kind_chooser(self) -> None:
        """Which runtime "Create runtime" makes, with its size, shown before anything
        downloads."""
        self.kind = QComboBox()
        for kind, (label, _req, _dir) in KINDS.items():
            self.kind.addItem(label, kind)
        self.kind_size = QLabel()
        self.kind_size.setWordWrap(True)
        self.kind.currentIndexChanged.connect(self._show_size)
        self.kind.setToolTip(
            self.tr(
                "Which runtime Create runtime… makes; its size is shown below before anything downloads"
            )
        )
        self._show_size()

    def _lay_out(self, actions: tuple[QPushButton, ...]) -> None:
        form = QFormLayout()
        form.addRow(self.tr("Runtime Python"), self.python)
        form.addRow("", self.found)
        form.addRow(self.tr("Device"), self.device)
        form.addRow(self.tr("Runtime to create"), self.kind)
        form.addRow("", self.kind_size)
        row = QHBoxLayout()
        for button in actions:
            row.addWidget(button)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        guide.add_help_button(buttons, guide.RUNTIME)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.log, 1)
        layout.addWidget(buttons)

    def _device_text(self) -> str:
        if self.client.device:
            return f"{self.client.device} (runtime {self.client.state})"
        return f"unknown until the runtime starts ({self.client.state})"

    def _show_size(self) -> None:
        kind = self.kind.currentData()
        note = {
            "lean": "search, indexing, captions and adaptation on the CPU",
            "full": "adds PyTorch with CUDA: a GPU, training and research",
        }[kind]
        self.kind_size.setText(f"{note}; {size_text(kind)}")

    def detect(self) -> None:
        python = settings.resolve_runtime_python()
        self.python.setFilePath(python or "")
        self.found.setText(describe_runtime())

    def test(self) -> PendingRequest:
        """Start the runtime with the chosen Python and load its model: the device shown is
        the one the model runs on (cpu or cuda), never the "auto" preference."""
        self._apply_python()
        self.device.setText(self.tr("starting…"))
        req = self.client.send(LoadRequest())

        def ok(result: dict) -> None:
            version = self.client.info.version if self.client.info else "?"
            runs = ", ".join(str(result[k]) for k in ("backend", "precision") if result.get(k))
            text = self.tr("{device} — runtime {version}, backbone {backbone}").format(
                device=result.get("device") or self.client.device or "?",
                version=version,
                backbone=result.get("backbone", "?"),
            )
            self.device.setText(text + (f" ({runs})" if runs else ""))

        def fail(err: WorkerError) -> None:
            self.device.setText(error_html(wording.error_text(err.info)))

        req.succeeded.connect(ok)
        req.failed.connect(fail)
        return req

    def _apply_python(self) -> None:
        path = self.python.filePath().strip()
        if path != settings.runtime_python():
            settings.set_runtime_python(path)
            self.client.set_python(None)  # re-read settings on next start

    def create_runtime(self) -> RuntimeInstaller:
        """Create the runtime venv with visible progress and log."""
        self.progress.setVisible(True)
        self.log.setVisible(True)
        self.progress.setValue(0)
        self.create_button.setEnabled(False)
        installer = RuntimeInstaller(parent=self, kind=self.kind.currentData())
        installer.progress.connect(
            lambda pct, msg: (
                self.progress.setValue(pct),
                self.progress.setFormat(f"%p% {msg[:60]}"),
            )
        )
        installer.logLine.connect(self.log.appendPlainText)
        installer.finished.connect(self._installed)
        self.installer = installer
        installer.start()
        return installer

    def _installed(self, ok: bool, message: str) -> None:
        self.create_button.setEnabled(True)
        if ok and is_executable(message):
            self.python.setFilePath(message)
            self._apply_python()
        self.found.setText(describe_runtime() if ok else message)

    def save(self) -> None:
        self._apply_python()
        self.accept()

    def reject(self) -> None:
        if self.installer is not None:
            self.installer.cancel()
        super().reject()
