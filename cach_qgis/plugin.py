"""The QGIS plugin object: actions, dock, map tool, Processing provider, worker lifetime; the
index and adapt tasks run through ``index_jobs.IndexJobs``.

Unload is robust step by step: each step runs even when an earlier one failed, tasks are touched
only while their C++ object lives (the task manager deletes finished tasks), and the worker is
always shut down last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsSettings
from qgis.PyQt.QtCore import QCoreApplication, Qt, QTranslator
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QPushButton, QToolBar

from . import guide, layers, message_bar, settings, wording
from .dialogs import IndexDialog, QuestionDialog, RuntimeDialog, adapt_dialog
from .dock import SearchDock
from .index_jobs import IndexJobs
from .maptool import TileTool
from .message_bar import LEVELS
from .runtime_client import WorkerError, log, shared_client, shutdown_shared_client
from .tasks import is_alive
from .wording import tr

MENU = "&CACH"
HELP_ICON = ":/images/themes/default/mActionHelpContents.svg"

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
        self.jobs: IndexJobs | None = None
        self.dialogs: list[Any] = []  # open non-modal dialogs (kept alive)
        self.reindex_offers: dict[str, Any] = {}  # index path -> message bar item
        self.translator = install_translator()

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
                log(
                    self.tr("a Processing provider 'cach' is already registered"),
                    Qgis.MessageLevel.Warning,
                )

    # --- GUI -------------------------------------------------------------------------------------
    def initGui(self) -> None:  # noqa: N802 - QGIS API
        self.initProcessing()
        self.client = shared_client()
        self.client.notice.connect(self._notice)
        self.dock = SearchDock(self.iface, self.client, self.iface.mainWindow())
        self.jobs = IndexJobs(self.client, self.iface.mainWindow(), self._message, self._keep)
        self.jobs.indexReady.connect(self.dock.set_index_path)
        self.jobs.adapted.connect(lambda index: self.reindex_offers.pop(index, None))
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.dock.outdatedIndex.connect(self.offer_reindex)
        self.dock.runtimeSettingsRequested.connect(self.show_runtime_dialog)
        self._init_tool()
        self._init_actions()
        log(self.tr("plugin loaded"))

    def _init_tool(self) -> None:
        canvas = self.iface.mapCanvas()
        session = self.dock.session
        self.tool = TileTool(canvas, self.client, self.dock.index_path, lambda: session.k)
        self.tool.captioned.connect(
            lambda hit, result: self.dock.show_captions(
                hit, result, getattr(self.tool, "clicked_at", None)
            )
        )
        self.tool.failed.connect(self._tool_failed)
        self.tool.notice.connect(lambda text: self._message(text, Qgis.MessageLevel.Info))
        # the latest query wins, whichever route it came by
        self.tool.started.connect(self.dock.cancel)
        self.tool.marked.connect(self.dock.mark)  # right-click: mark the tile right or wrong
        self.dock.searchStarted.connect(lambda _req: self.tool.cancel())

    def _init_actions(self) -> None:
        self.toolbar = self.iface.addToolBar(self.tr("CACH"))
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
        self._action(ICON, "Adapt to this archive…", self.show_adapt_dialog, toolbar=False)
        self._action(ICON, "Runtime settings…", self.show_runtime_dialog, toolbar=False)
        self.clear_action = self._action(
            ICON, self.tr("Clear CACH results"), self.clear_results, toolbar=False
        )
        self.help_action = self._action(
            HELP_ICON, self.tr("CACH user guide"), lambda: guide.open_guide(), toolbar=False
        )
        self.search_action, self.tile_action = search, tile

    def _action(
        self, icon: str, text: str, slot: Any, checkable: bool = False, toolbar: bool = True
    ) -> QAction:
        action = QAction(QIcon(icon), text, self.iface.mainWindow())
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.iface.addPluginToRasterMenu(MENU, action)
        if toolbar and self.toolbar is not None:
            self.toolbar.addAction(action)
        self.actions.append(action)
        return action

    # --- unload ----------------------------------------------------------------------------------
    def unload(self) -> None:
        """Remove everything initGui added and stop the worker; every step runs."""
        for name, step in (
            ("tasks", lambda: self.jobs.stop() if self.jobs is not None else None),
            ("dialogs", self._close_dialogs),
            ("map tool", self._remove_tool),
            ("actions", self._remove_actions),
            ("search panel", self._remove_dock),
            ("Processing provider", self._remove_provider),
            ("runtime", self._stop_runtime),
            ("translation", self._remove_translator),
        ):
            _run_step(name, step)
        log(self.tr("plugin unloaded"))

    def _close_dialogs(self) -> None:
        dialogs, self.dialogs = self.dialogs, []
        for dialog in dialogs:
            _run_step("dialog", dialog.close)
        self.reindex_offers.clear()

    def _remove_tool(self) -> None:
        tool, self.tool = self.tool, None
        if tool is None:
            return
        canvas = self.iface.mapCanvas()
        if canvas is not None and canvas.mapTool() is tool:
            canvas.unsetMapTool(tool)
        tool.band.reset()
        if canvas is not None:
            canvas.scene().removeItem(tool.band)
        tool.deleteLater()

    def _remove_actions(self) -> None:
        actions, self.actions = self.actions, []
        for action in actions:
            self.iface.removePluginRasterMenu(MENU, action)
            action.deleteLater()
        toolbar, self.toolbar = self.toolbar, None
        if toolbar is not None:
            toolbar.deleteLater()

    def _remove_dock(self) -> None:
        dock, self.dock = self.dock, None
        if dock is None:
            return
        _run_step("search panel canvas items", dock.cleanup)
        self.iface.removeDockWidget(dock)
        dock.deleteLater()

    def _remove_provider(self) -> None:
        provider, self.provider = self.provider, None
        if provider is not None:
            QgsApplication.processingRegistry().removeProvider(provider)

    def _remove_translator(self) -> None:
        translator, self.translator = self.translator, None
        if translator is not None:
            QCoreApplication.removeTranslator(translator)

    def _stop_runtime(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            _disconnect(client.notice, self._notice)
        shutdown_shared_client()

    # --- actions ---------------------------------------------------------------------------------
    def _toggle_dock(self, checked: bool) -> None:
        if self.dock is not None:
            self.dock.setVisible(checked)
            if checked:
                self.dock.start_runtime()  # also on showEvent; here for a window not yet shown
                self.dock.raise_()
                self.dock.bar.query_edit.setFocus()

    def _activate_tool(self, checked: bool) -> None:
        canvas = self.iface.mapCanvas()
        if self.tool is None:
            return
        if checked:
            canvas.setMapTool(self.tool)
            if self.dock is not None:
                self.dock.show()
                self.dock.start_runtime()
        elif canvas.mapTool() is self.tool:
            canvas.unsetMapTool(self.tool)

    def clear_results(self) -> int:
        """Remove the "CACH results" group and its layers (and the panel's list)."""
        removed = self.dock.clear_all_results() if self.dock else layers.clear_results()
        self._message(
            self.tr("Removed the CACH results from the layer tree ({n} layers).").format(n=removed),
            Qgis.MessageLevel.Info,
        )
        return removed

    def tr(self, text: str) -> str:
        return wording.translate("CachPlugin", text)

    def show_index_dialog(self) -> IndexDialog:
        dialog = IndexDialog(self.client, self.iface.mainWindow())
        dialog.taskStarted.connect(self.jobs.track)
        self._keep(dialog)
        dialog.show()
        return dialog

    def show_runtime_dialog(self) -> RuntimeDialog:
        dialog = RuntimeDialog(self.client, self.iface.mainWindow())
        self._keep(dialog)
        dialog.show()
        return dialog

    def show_adapt_dialog(self) -> QuestionDialog | None:
        """Ask, then adapt the model to the index chosen in the search panel."""
        index = self.dock.index_path() if self.dock is not None else ""
        if not index:
            self._message(
                self.tr(
                    "Choose an index in the CACH search panel first; adapting works on that index."
                ),
                Qgis.MessageLevel.Info,
            )
            return None
        dialog = adapt_dialog(index, self.iface.mainWindow())
        dialog.accepted.connect(lambda: self.jobs.adapt_index(index))
        self._keep(dialog)
        dialog.open()
        return dialog

    def _keep(self, dialog: Any) -> None:
        self.dialogs = [d for d in self.dialogs if is_alive(d) and d.isVisible()] + [dialog]

    # --- re-index offer --------------------------------------------------------------------------
    def offer_reindex(self, index: str, info: dict[str, Any]) -> None:
        """Once per index and session: a message with "Re-index with the new model"."""
        if index in self.reindex_offers:
            return
        bar = self.iface.messageBar()
        item = bar.createMessage(self.tr("CACH"), wording.outdated_text(index))
        button = QPushButton(self.tr("Re-index with the new model"))
        button.clicked.connect(lambda: self.reindex(index, info))
        item.layout().addWidget(button)
        item.button = button  # for tests and scripts
        bar.pushWidget(item, Qgis.MessageLevel.Info, 0)
        self.reindex_offers[index] = item
        log(wording.outdated_text(index))

    def reindex(self, index: str, info: dict[str, Any]) -> IndexDialog:
        """The Index dialog filled for a rebuild of ``index`` with the new model."""
        dialog = self.show_index_dialog()
        folders = [str(p) for p in info.get("roots") or info.get("paths") or []]
        dialog.preset(index, folders, rebuild=True)
        return dialog

    # --- messages --------------------------------------------------------------------------------
    def _tool_failed(self, error: WorkerError) -> None:
        level = LEVELS[wording.error_level(error.info)]
        self._message(
            wording.error_text(error.info), level, details=wording.error_details(error.info)
        )

    def _notice(self, text: str, level: int) -> None:
        self._message(text, Qgis.MessageLevel(level))

    def _message(
        self, text: str, level: Qgis.MessageLevel, duration: int = 10, details: str = ""
    ) -> None:
        message_bar.push(self.iface, text, level, duration, details)


def install_translator() -> QTranslator | None:
    """The plugin's words in the QGIS user's language, when ``i18n/cach_<lang>.qm`` exists
    (``make i18n`` writes the template ``i18n/cach.ts`` that translators start from)."""
    locale = str(QgsSettings().value("locale/userLocale", "") or "")[:2]
    path = settings.PLUGIN_DIR / "i18n" / f"cach_{locale}.qm"
    if not locale or not path.is_file():
        return None
    translator = QTranslator()
    if not translator.load(str(path)):
        return None
    QCoreApplication.installTranslator(translator)
    return translator


def _run_step(name: str, step: Callable[[], Any]) -> None:
    """Run one unload step; a failure is logged and the next step still runs."""
    try:
        step()
    except Exception as err:  # noqa: BLE001 - unload must always finish
        log(
            tr("unload: {name} failed: {error}").format(name=name, error=_error_name(err)),
            Qgis.MessageLevel.Warning,
        )


def _error_name(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _disconnect(signal: Any, slot: Any) -> None:
    try:
        signal.disconnect(slot)
    except (TypeError, RuntimeError):
        pass
