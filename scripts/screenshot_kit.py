"""What each screenshot script run inside QGIS (``qgis --code``, by scripts/screenshot.sh) needs:
a progress line on stderr and in the CACH log, an exit that unloads the plugin first (stopping
its worker) and asks nothing, and a guard that turns a failed step into an exit code."""

import os
import sys
import traceback

from qgis.core import Qgis, QgsMessageLog, QgsProject
from qgis.utils import plugins

STATE = {"done": False}


def say(text: str) -> None:
    print(f"screenshot: {text}", file=sys.stderr, flush=True)
    QgsMessageLog.logMessage(text, "CACH", Qgis.Info)


def finish(code: int) -> None:
    """Unload the plugin and leave QGIS with ``code`` (once; later calls do nothing)."""
    if STATE["done"]:
        return
    STATE["done"] = True
    plugin = plugins.get("cach_for_qgis")
    if plugin is not None:
        try:
            plugin.unload()  # stops the worker cleanly
        except Exception:  # noqa: BLE001 - best effort on the way out
            traceback.print_exc()
    QgsProject.instance().setDirty(False)
    os._exit(code)  # QGIS would otherwise ask to save the project


def guarded(func, *args) -> None:  # noqa: ANN001
    """Run a step; a failure ends the script with its traceback instead of a QGIS dialog."""
    try:
        func(*args)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        finish(7)
