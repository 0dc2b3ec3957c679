"""Run inside QGIS (``qgis --code``, through scripts/screenshot.sh with
CACH_SCREENSHOT_SCRIPT=scripts/screenshot_marks.py): the search panel with marked tiles.

Searches $CACH_SCREENSHOT_QUERY (default "a river"), marks the first two results right and the
third wrong, refines (the marks are learnt from), selects the best refined tile and saves the
window to $CACH_SCREENSHOT_OUT. Fails (non-zero exit) if the refined search did not use the
marks or the panel does not list them.
"""

import os
import sys
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
)
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins

sys.path.insert(0, str(Path("scripts").resolve()))  # qgis --code runs from the repository
from screenshot_kit import finish, guarded, say  # noqa: E402

OUT = Path(os.environ.get("CACH_SCREENSHOT_OUT", "docs/img/screenshot-marks.png")).resolve()
QUERY = os.environ.get("CACH_SCREENSHOT_QUERY", "a river")
SAMPLES = Path(os.environ.get("CACH_DEMO_SAMPLES", "resources/samples")).resolve()
STATE = {"done": False, "refined": False, "polls": 0}








def start() -> None:
    plugin = plugins.get("cach_for_qgis")
    if plugin is None or plugin.dock is None:
        say("plugin cach_for_qgis is not loaded")
        finish(3)
        return
    QgsSettings().setValue("Projections/showDatumTransformDialog", False)
    iface.mainWindow().resize(1600, 1000)
    iface.mainWindow().showMaximized()
    for path in sorted(SAMPLES.glob("*.tif")):  # the imagery under the footprints
        layer = QgsRasterLayer(str(path), path.stem, "gdal")
        if layer.isValid() and layer.crs().isValid():
            QgsProject.instance().addMapLayer(layer)
            node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
            if node is not None:
                node.setExpanded(False)
    dock = plugin.dock
    plugin.search_action.trigger()
    dock.bar.query_edit.setText(QUERY)
    dock.bar.k_spin.setValue(8)
    dock.resultsShown.connect(lambda _r: QTimer.singleShot(300, lambda: guarded(shown, dock)))
    dock.searchFailed.connect(lambda err: (say(f"search failed: {err}"), finish(4)))
    dock.search()


def shown(dock) -> None:  # noqa: ANN001
    hits = dock.session.result.results
    if not STATE["refined"]:
        STATE["refined"] = True
        dock.mark(hits[0], True)
        dock.mark(hits[1], True)
        dock.mark(hits[2], False)
        say(f"marked {dock.session.marks.params()}; refining")
        dock.refine()
        return
    if dock.session.result.query.get("learner") != "logistic-prior" or len(dock.marks_box.rows()) != 3:
        say(f"the refined search did not use the marks: {dock.session.result.query}")
        finish(8)
        return
    best = next((h for h in hits if h.georeferenced), None)
    if best is not None and best.crs:
        iface.mapCanvas().setDestinationCrs(QgsCoordinateReferenceSystem(best.crs))
    dock.results.setCurrentRow(hits.index(best) if best else 0)
    extent = iface.mapCanvas().extent()
    extent.scale(4.0)
    iface.mapCanvas().setExtent(extent)
    QTimer.singleShot(500, lambda: guarded(wait, dock))


def wait(dock) -> None:  # noqa: ANN001
    STATE["polls"] += 1
    busy = dock.results.thumbnails_pending() or dock.result_map.pending() or iface.mapCanvas().isDrawing()
    if busy and STATE["polls"] < 100:
        QTimer.singleShot(200, lambda: guarded(wait, dock))
        return
    QTimer.singleShot(1500, grab)


def grab() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    image = iface.mainWindow().grab()
    ok = image.save(str(OUT))
    say(f"saved {OUT} ({image.width()}x{image.height()}): {ok}")
    finish(0 if ok else 5)


QTimer.singleShot(600 * 1000, lambda: (say("timed out"), finish(6)))
QTimer.singleShot(3000, start)
