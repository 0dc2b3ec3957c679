"""The QGIS plugin object: actions, dock, map tool, Processing provider, worker lifetime."""

from __future__ import annotations

from typing import Any

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QToolBar

from . import settings
from .dialogs import IndexDialog, RuntimeDialog
from .dock import SearchDock
from .maptool import TileTool
from .messages import IndexSummary, WorkerError
from .runtime_client import log, shared_client, shutdown_shared_client
from .tasks import IndexTask

MENU = "&CACH"

try:  # compiled Qt resources (pyrcc5); icons fall back to files when absent
    from . import resources_rc  # noqa: F401

    ICON = ":/plugins/cach/icon.svg"
    TILE_ICON = ":/plugins/cach/tile.svg"
except ImportError:  # pragma: no cover - resources not compiled
    ICON = str(settings.PLUGIN_DIR / "resources" / "icons" / "icon.svg")
    TILE_ICON = str(settings.PLUGIN_DIR / "resources" / "icons" / "tile.svg")


class CachPlugin:
    """Created by ``classFactory``; QGIS calls :meth:`initGui` and :meth:`unload`."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.client = None
        self.dock: SearchDock | None = None
        self.tool: TileTool | None = None
        self.toolbar: QToolBar | None = None
        self.actions: list[QAction] = []
        self.provider = None
        self.tasks: list[IndexTask] = []

    # --- Processing ------------------------------------------------------------------------------
    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        """Register the Processing provider (also called by qgis_process)."""
        from .processing.provider import CachProvider

        if self.provider is None:
            provider = CachProvider()
            # addProvider takes ownership and deletes a duplicate; keep only a registered one
            if QgsApplication.processingRegistry().addProvider(provider):
                self.provider = provider
            else:
                log("a Processing provider 'cach' is already registered", Qgis.Warning)

    # --- GUI -------------------------------------------------------------------------------------
    def initGui(self) -> None:  # noqa: N802 - QGIS API
        self.initProcessing()
        self.client = shared_client()
        self.client.notice.connect(self._notice)
        main = self.iface.mainWindow()

        self.dock = SearchDock(self.iface, self.client, main)
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        self.dock.hide()

        canvas = self.iface.mapCanvas()
        self.tool = TileTool(canvas, self.client, self.dock.index_path, self.dock.k_spin.value)
        self.tool.captioned.connect(self.dock.show_captions)
        self.tool.failed.connect(self._tool_failed)

        self.toolbar = self.iface.addToolBar("CACH")
        self.toolbar.setObjectName("CachToolbar")
        search = self._action(ICON, "CACH search panel", self._toggle_dock, checkable=True)
        self.dock.visibilityChanged.connect(search.setChecked)
        tile = self._action(
            TILE_ICON,
            "Identify tile (captions + similar tiles)",
            self._activate_tool,
            checkable=True,
        )
        self.tool.setAction(tile)
        self._action(ICON, "Index raster folder…", self.show_index_dialog, toolbar=False)
        self._action(ICON, "Runtime settings…", self.show_runtime_dialog, toolbar=False)
        self.search_action, self.tile_action = search, tile
        log("plugin loaded")

    def _action(
        self, icon: str, text: str, slot: Any, checkable: bool = False, toolbar: bool = True
    ) -> QAction:
        action = QAction(QIcon(icon), text, self.iface.mainWindow())
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.iface.addPluginToMenu(MENU, action)
        if toolbar and self.toolbar is not None:
            self.toolbar.addAction(action)
        self.actions.append(action)
        return action

    def unload(self) -> None:
        """Remove everything initGui added and stop the worker."""
        canvas = self.iface.mapCanvas()
        if self.tool is not None:
            if canvas is not None and canvas.mapTool() is self.tool:
                canvas.unsetMapTool(self.tool)
            self.tool.band.reset()
            if canvas is not None:
                canvas.scene().removeItem(self.tool.band)
            self.tool.deleteLater()
            self.tool = None
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            action.deleteLater()
        self.actions = []
        if self.toolbar is not None:
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.dock is not None:
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        for task in self.tasks:
            if task.status() in (task.Queued, task.OnHold, task.Running):
                task.cancel()
        self.tasks = []
        if self.client is not None:
            try:
                self.client.notice.disconnect(self._notice)
            except TypeError:
                pass
            self.client = None
        shutdown_shared_client()
        log("plugin unloaded")

    # --- actions ---------------------------------------------------------------------------------
    def _toggle_dock(self, checked: bool) -> None:
        if self.dock is not None:
            self.dock.setVisible(checked)
            if checked:
                self.dock.raise_()
                self.dock.query_edit.setFocus()

    def _activate_tool(self, checked: bool) -> None:
        canvas = self.iface.mapCanvas()
        if self.tool is None:
            return
        if checked:
            canvas.setMapTool(self.tool)
            if self.dock is not None:
                self.dock.show()
        elif canvas.mapTool() is self.tool:
            canvas.unsetMapTool(self.tool)

    def show_index_dialog(self) -> IndexDialog:
        dialog = IndexDialog(self.client, self.iface.mainWindow())
        dialog.taskStarted.connect(self.track_index_task)
        dialog.show()
        return dialog

    def show_runtime_dialog(self) -> RuntimeDialog:
        dialog = RuntimeDialog(self.client, self.iface.mainWindow())
        dialog.show()
        return dialog

    def track_index_task(self, task: IndexTask) -> None:
        """Keep the task alive and report its end in the message bar."""
        self.tasks.append(task)
        task.indexed.connect(self._indexed)
        task.failed.connect(self._index_failed)

    def _indexed(self, index: str, summary: IndexSummary) -> None:
        if self.dock is not None:
            self.dock.set_index_path(index)
        self._message(f"Index ready: {summary.describe()}", Qgis.Success)

    def _index_failed(self, error: WorkerError) -> None:
        if error.cancelled:
            self._message(
                "Indexing cancelled. Files already indexed are kept; index the folder again to "
                "finish.",
                Qgis.Info,
            )
        else:
            self._message(f"Indexing failed: {error}", Qgis.Critical)

    def _tool_failed(self, error: WorkerError) -> None:
        self._message(str(error), Qgis.Warning if error.type == "data" else Qgis.Critical)

    def _notice(self, text: str, level: int) -> None:
        self._message(text, Qgis.MessageLevel(level))

    def _message(self, text: str, level: Qgis.MessageLevel, duration: int = 10) -> None:
        log(text, level)
        self.iface.messageBar().pushMessage("CACH", text, level=level, duration=duration)
