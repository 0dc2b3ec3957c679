"""Run inside QGIS (``qgis --code scripts/screenshot.py``): search, then save the window.

Started by scripts/screenshot.sh under Xvfb with the demo profile (plugin enabled, demo index set).
Environment: CACH_SCREENSHOT_OUT (PNG path), CACH_SCREENSHOT_QUERY, CACH_SCREENSHOT_K,
CACH_SCREENSHOT_TIMEOUT (s), CACH_SCREENSHOT_LOG (1: the CACH message log on stderr). The
source rasters are shown at full opacity under the result footprints (outlines), so the imagery
stays visible.
"""

import os
import sys
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
)
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins

sys.path.insert(0, str(Path("scripts").resolve()))  # qgis --code runs from the repository
from screenshot_kit import STATE as KIT  # noqa: E402
from screenshot_kit import finish, guarded, say

OUT = Path(os.environ.get("CACH_SCREENSHOT_OUT", "docs/img/screenshot.png")).resolve()
QUERY = os.environ.get("CACH_SCREENSHOT_QUERY", "a forest with trees")
#: "1"/"0": the search must (not) be a weak match, or the script fails (keeps the README honest)
EXPECT_WEAK = os.environ.get("CACH_SCREENSHOT_WEAK", "")
TIMEOUT_S = int(os.environ.get("CACH_SCREENSHOT_TIMEOUT", "600"))
K = int(os.environ.get("CACH_SCREENSHOT_K", "8"))
SAMPLES = Path(os.environ.get("CACH_DEMO_SAMPLES", "resources/samples")).resolve()
STATE = {"done": False}


def echo_log(message: str, tag: str, _level) -> None:  # noqa: ANN001
    """CACH_SCREENSHOT_LOG=1: the plugin's message log on stderr (the client's side of a run)."""
    if tag == "CACH":
        print(f"log: {message}", file=sys.stderr, flush=True)


if os.environ.get("CACH_SCREENSHOT_LOG"):
    QgsApplication.messageLog().messageReceived.connect(echo_log)






def start() -> None:
    plugin = plugins.get("cach_for_qgis")
    if plugin is None or plugin.dock is None:
        say("plugin cach_for_qgis is not loaded; is it enabled in the profile?")
        finish(3)
        return
    # no "choose a datum transformation" dialog when the script changes the map CRS
    QgsSettings().setValue("Projections/showDatumTransformDialog", False)
    window = iface.mainWindow()
    window.resize(1600, 1000)
    window.showMaximized()
    # the source rasters as the background imagery, at full opacity
    for path in sorted(SAMPLES.glob("*.tif")):
        layer = QgsRasterLayer(str(path), path.stem, "gdal")
        if layer.isValid() and layer.crs().isValid():
            QgsProject.instance().addMapLayer(layer)
            node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
            if node is not None:
                node.setExpanded(False)
    dock = plugin.dock
    plugin.search_action.trigger()
    dock.bar.query_edit.setText(QUERY)
    dock.bar.k_spin.setValue(K)
    dock.resultsShown.connect(lambda result: QTimer.singleShot(200, lambda: guarded(zoom, result)))
    dock.searchFailed.connect(lambda err: (say(f"search failed: {err}"), finish(4)))
    say(f"searching {QUERY!r} in {dock.index_path()}")
    dock.search()




def zoom(result) -> None:  # noqa: ANN001
    weak = plugins["cach_for_qgis"].dock.session.result.weak_match
    say(f"{result.footprints.featureCount()} results (weak_match={weak}); zooming to the best")
    if EXPECT_WEAK and bool(weak) != (EXPECT_WEAK == "1"):
        say(f"expected weak_match={EXPECT_WEAK == '1'}, got {weak}: not the picture meant")
        finish(8)
        return
    plugin = plugins["cach_for_qgis"]
    dock = plugin.dock
    canvas = iface.mapCanvas()
    hits = dock.session.result.results if dock.session.result else []
    best = next((h for h in hits if h.georeferenced), None)
    if best is not None and best.crs:  # show the best tile's raster unrotated
        canvas.setDestinationCrs(QgsCoordinateReferenceSystem(best.crs))
    dock.results.setCurrentRow(hits.index(best) if best else 0)  # zooms to the best tile
    extent = canvas.extent()
    extent.scale(4.0)  # ... and show its neighbourhood
    canvas.setExtent(extent)
    canvas.refresh()
    guarded(wait_for_thumbnails, dock, 0)


def wait_for_thumbnails(dock, tries: int) -> None:  # noqa: ANN001
    if (dock.results.thumbnails_pending() or dock.result_map.pending()) and tries < 100:
        QTimer.singleShot(100, lambda: guarded(wait_for_thumbnails, dock, tries + 1))
        return
    group = dock.result_map.layers.group
    group.setExpanded(True)
    for child in group.children():
        if child.name() == "Tiles":
            child.setExpanded(False)
    iface.mapCanvas().refresh()
    say("waiting for the map to render")
    QTimer.singleShot(2000, lambda: guarded(wait_for_render, 0))


def wait_for_render(quiet: int) -> None:
    """Grab once the canvas has not been drawing for a second (or after ~20 s)."""
    canvas = iface.mapCanvas()
    quiet = 0 if canvas.isDrawing() else quiet + 1
    if quiet >= 5 or STATE.get("polls", 0) > 100:
        grab()
        return
    STATE["polls"] = STATE.get("polls", 0) + 1
    QTimer.singleShot(200, lambda: guarded(wait_for_render, quiet))


def grab() -> None:
    if KIT["done"]:
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    image = iface.mainWindow().grab()
    ok = image.save(str(OUT))
    say(f"saved {OUT} ({image.width()}x{image.height()}): {ok}")
    finish(0 if ok else 5)


QTimer.singleShot(TIMEOUT_S * 1000, lambda: (say("timed out"), finish(6)))
QTimer.singleShot(3000, start)
