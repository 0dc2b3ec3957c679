"""Search results as map layers: one group per query, footprints + tile windows as VRT.

Each :class:`~model_runtime.protocol.Hit` becomes one feature whose attributes are the
protocol's footprint schema (``FOOTPRINT_FIELDS``, the same as the CLI's GeoPackage). Hits whose
source has no CRS are rows without geometry (``georeferenced`` false, ``note`` says why) and never
become tile layers: they have no place on a map. Tiles are GDAL VRT windows (``srcwin``) of the
source rasters, so no pixels are copied.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osgeo import gdal, ogr
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsGraduatedSymbolRenderer,
    QgsLayerTreeGroup,
    QgsPalLayerSettings,
    QgsProject,
    QgsRasterLayer,
    QgsRendererRange,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
    QgsWkbTypes,
)
from qgis.gui import QgsRubberBand
from qgis.PyQt.QtCore import QCoreApplication, QObject, Qt, QTimer, QVariant, pyqtSignal
from qgis.PyQt.QtGui import QColor, QFont

from ..model_runtime.protocol import FOOTPRINT_FIELDS, Hit, footprint_row
from . import settings
from .wording import tr

gdal.UseExceptions()
ogr.UseExceptions()

GROUP_KEY = "cach/query_key"
GROUP_TOKEN = "cach/group_token"
#: the parent group of every query's group (found by this property, whatever its name)
ROOT_KEY = "cach/results_root"
TILES_GROUP = "Tiles"
FOOTPRINT_CRS = "EPSG:4326"
#: outline colours by rank class, best first: strong colours only, so every class stays visible
#: over imagery without a fill that would wash it out
RANK_COLOURS = ("#d7191c", "#fd8d3c", "#ffd700", "#00e5ff", "#2c7bb6")
#: the selected or clicked tile: a dashed outline in a colour no rank class uses
HIGHLIGHT_COLOUR = "#ff00ff"
_QVARIANT = {
    "int": QVariant.Type.LongLong,
    "real": QVariant.Type.Double,
    "text": QVariant.Type.String,
    "bool": QVariant.Type.Bool,
}


def group_title(
    label: str, positive: int = 0, negative: int = 0, ranks: tuple[int, int] | None = None
) -> str:
    """The one naming scheme of result groups, whatever the route (panel, map tool, menu);
    ``ranks``: the (first, last) rank of a page after the first."""
    title = tr("CACH: {label}").format(label=label) if label else tr("CACH: examples")
    if positive or negative:
        title += f" (+{positive}/−{negative})"
    if ranks is not None:
        title += tr(", results {first}–{last}").format(first=ranks[0], last=ranks[1])
    return title


def text_label(text: str) -> str:
    return f"“{text}”"


def tile_label(tile_id: int) -> str:
    return tr("similar to tile {id}").format(id=tile_id)


def hit_fields() -> QgsFields:
    """Attribute schema of a footprint layer: ``protocol.FOOTPRINT_FIELDS`` (shared with the
    Processing "Text search" sink and the CLI's GeoPackage)."""
    fields = QgsFields()
    for name, kind in FOOTPRINT_FIELDS:
        fields.append(QgsField(name, _QVARIANT[kind]))
    return fields


def footprint_geometry(hit: Hit) -> QgsGeometry:
    """The hit's EPSG:4326 footprint (an empty geometry when the source has no CRS)."""
    if not hit.georeferenced:
        return QgsGeometry()
    ogr_geom = ogr.CreateGeometryFromJson(json.dumps(hit.footprint))
    return QgsGeometry.fromWkt(ogr_geom.ExportToWkt())


def hit_feature(hit: Hit, fields: QgsFields, query: str, model: str, index: str) -> QgsFeature:
    """One footprint feature: the protocol's row, and a geometry only when georeferenced."""
    feat = QgsFeature(fields)
    if hit.georeferenced:
        feat.setGeometry(footprint_geometry(hit))
    row = footprint_row(hit, query, model, index)
    feat.setAttributes([row[name] for name, _kind in FOOTPRINT_FIELDS])
    return feat


def create_footprint_layer(
    hits: Sequence[Hit], query: str, model: str, index: str, name: str = "Footprints"
) -> QgsVectorLayer:
    """A styled, labelled memory layer of the hits' footprints."""
    layer = QgsVectorLayer(f"Polygon?crs={FOOTPRINT_CRS}", name, "memory")
    provider = layer.dataProvider()
    provider.addAttributes(hit_fields().toList())
    layer.updateFields()
    provider.addFeatures([hit_feature(h, layer.fields(), query, model, index) for h in hits])
    layer.updateExtents()
    style_footprints(layer, max((h.rank for h in hits), default=1))
    return layer


def _rank_symbol(colour: str, best: bool) -> QgsFillSymbol:
    """An outline with a thin dark casing and no fill: the tile underneath stays visible."""
    symbol = QgsFillSymbol.createSimple(
        {"style": "no", "outline_color": "35,35,35,200", "outline_width": "1.3"}
    )
    outline = QgsFillSymbol.createSimple(
        {"style": "no", "outline_color": colour, "outline_width": "0.8" if best else "0.6"}
    )
    symbol.appendSymbolLayer(outline.symbolLayer(0).clone())
    return symbol


def style_footprints(layer: QgsVectorLayer, max_rank: int) -> None:
    """Rank classes as coloured outlines (red = best), and the rank as a label."""
    n_classes = max(1, min(len(RANK_COLOURS), max_rank))
    step = max(1, -(-max_rank // n_classes))  # ceil
    ranges = []
    lower = 1
    for i in range(n_classes):
        upper = max_rank if i == n_classes - 1 else min(max_rank, lower + step - 1)
        label = (
            tr("rank {n}").format(n=lower)
            if lower == upper
            else tr("rank {first}–{last}").format(first=lower, last=upper)
        )
        symbol = _rank_symbol(RANK_COLOURS[i], i == 0)
        ranges.append(QgsRendererRange(lower - 0.5, upper + 0.5, symbol, label))
        lower = upper + 1
        if lower > max_rank:
            break
    layer.setRenderer(QgsGraduatedSymbolRenderer("rank", ranges))
    layer.setLabeling(QgsVectorLayerSimpleLabeling(_rank_labels()))
    layer.setLabelsEnabled(True)


def _rank_labels() -> QgsPalLayerSettings:
    text = QgsTextFormat()
    font = QFont()
    font.setBold(True)
    text.setFont(font)
    text.setSize(10)
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(1.0)
    buffer.setColor(QColor("white"))
    text.setBuffer(buffer)
    pal = QgsPalLayerSettings()
    pal.fieldName = "rank"
    pal.isExpression = False
    pal.placement = QgsPalLayerSettings.Placement.OverPoint
    pal.setFormat(text)
    return pal


def tile_vrt(hit: Hit, folder: Path | None = None) -> Path:
    """A VRT file that is the hit's window of its source raster (cached by source + window)."""
    folder = folder or settings.tiles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(f"{Path(hit.source).resolve()}|{hit.window}".encode()).hexdigest()[:12]
    col, row, width, height = hit.window
    path = folder / f"{Path(hit.source).stem}_{col}_{row}_{width}x{height}_{digest}.vrt"
    if not path.exists():
        options = gdal.TranslateOptions(format="VRT", srcWin=[col, row, width, height])
        ds = gdal.Translate(str(path), hit.source, options=options)
        ds = None  # noqa: F841 - closing writes the file
    return path


def outline_band(canvas: Any) -> QgsRubberBand:
    """A rubber band for the selected or clicked tile: a dashed outline and no fill, so the tile
    itself stays visible."""
    band = QgsRubberBand(canvas, QgsWkbTypes.GeometryType.PolygonGeometry)
    band.setStrokeColor(QColor(HIGHLIGHT_COLOUR))
    band.setFillColor(QColor(0, 0, 0, 0))
    band.setLineStyle(Qt.PenStyle.DashLine)
    band.setWidth(3)
    return band


def create_tile_layer(hit: Hit) -> QgsRasterLayer:
    """A raster layer showing the hit's window of its source raster (georeferenced hits only)."""
    name = f"#{hit.rank} {Path(hit.source).name}"
    options = QgsRasterLayer.LayerOptions(False)  # no default style file to look up
    return QgsRasterLayer(str(tile_vrt(hit)), name, "gdal", options)


class TileLoader(QObject):
    """Adds the result tiles as raster layers one per event-loop turn (opening a layer takes
    10-30 ms: twenty at once would stall the UI), into the group with ``token``.

    The group is found again by its token at every step, never through a kept pointer: a
    re-run query or the user may have removed it meanwhile, and then loading stops."""

    done = pyqtSignal()

    def __init__(self, token: str, hits: Sequence[Hit], project: QgsProject) -> None:
        super().__init__()
        self.token, self.project = token, project
        self.hits = list(hits)
        self.layers: list[QgsRasterLayer] = []
        self._timer = QTimer(self)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._next)
        project.cleared.connect(self.stop)  # a new project: nothing left to fill
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.stop)

    @property
    def pending(self) -> int:
        return len(self.hits)

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self.hits = []
        self._timer.stop()

    def _next(self) -> None:
        group = _tiles_group(self.token, self.project)
        if not self.hits or group is None:
            self.stop()
            self.done.emit()
            return
        hit = self.hits.pop(0)
        try:
            layer = create_tile_layer(hit)
        except RuntimeError:
            return
        if layer.isValid() and layer.crs().isValid():
            self.project.addMapLayer(layer, False)
            group.addLayer(layer).setExpanded(False)
            self.layers.append(layer)


_LOADERS: dict[str, TileLoader] = {}  # query key -> the loader filling its group


def _tiles_group(token: str, project: QgsProject) -> QgsLayerTreeGroup | None:
    for group in project.layerTreeRoot().findGroups(True):
        if group.customProperty(GROUP_TOKEN) == token:
            return group.findGroup(TILES_GROUP)
    return None


@dataclass
class ResultLayers:
    """What :func:`show_results` added: the group, the footprints, and the tile layers (added
    by ``loader`` over the next event-loop turns)."""

    group: QgsLayerTreeGroup
    footprints: QgsVectorLayer
    loader: TileLoader

    @property
    def tiles(self) -> list[QgsRasterLayer]:
        return self.loader.layers

    @property
    def tiles_pending(self) -> int:
        return self.loader.pending


def stop_loading() -> None:
    """Stop every tile loader (plugin unload)."""
    while _LOADERS:
        _LOADERS.popitem()[1].stop()


def find_group(key: str, project: QgsProject | None = None) -> QgsLayerTreeGroup | None:
    """The result group of a query key, if present."""
    root = (project or QgsProject.instance()).layerTreeRoot()
    for group in root.findGroups(True):
        if group.customProperty(GROUP_KEY) == key:
            return group
    return None


def remove_group(key: str, project: QgsProject | None = None) -> bool:
    """Remove a query's group and its layers; True when there was one."""
    project = project or QgsProject.instance()
    loader = _LOADERS.pop(key, None)
    if loader is not None:
        loader.stop()
    group = find_group(key, project)
    if group is None:
        return False
    layer_ids = [node.layerId() for node in group.findLayers()]
    parent = group.parent()
    parent.removeChildNode(group)
    project.removeMapLayers(layer_ids)
    return True


def results_root(
    project: QgsProject | None = None, create: bool = False
) -> QgsLayerTreeGroup | None:
    """The one parent group "CACH results" of every query's group (on top of the layer tree)."""
    root = (project or QgsProject.instance()).layerTreeRoot()
    for group in root.findGroups(True):
        if group.customProperty(ROOT_KEY):
            return group
    if not create:
        return None
    group = QgsLayerTreeGroup(results_root_name())
    group.setCustomProperty(ROOT_KEY, True)
    root.insertChildNode(0, group)
    return group


def results_root_name() -> str:
    return tr("CACH results")


def footprints_name(title: str) -> str:
    """A footprint layer's name says its query (layer pickers list many of them)."""
    return tr("{title} footprints").format(title=title)


def clear_results(project: QgsProject | None = None) -> int:
    """Remove "CACH results" and every layer in it; returns how many layers went."""
    project = project or QgsProject.instance()
    stop_loading()
    parent = results_root(project)
    if parent is None:
        return 0
    layer_ids = [node.layerId() for node in parent.findLayers()]
    parent.parent().removeChildNode(parent)
    project.removeMapLayers(layer_ids)
    return len(layer_ids)


def _insert_group(group: QgsLayerTreeGroup, project: QgsProject) -> None:
    """The newest query's group first and expanded; the earlier ones collapsed (one state
    rule, whatever the order of queries)."""
    parent = results_root(project, create=True)
    for older in parent.findGroups(False):
        older.setExpanded(False)
    parent.insertChildNode(0, group)
    group.setExpanded(True)
    parent.setExpanded(True)


def show_results(
    key: str,
    title: str,
    hits: Sequence[Hit],
    query: str,
    model: str,
    index: str,
    max_tiles: int | None = None,
    project: QgsProject | None = None,
) -> ResultLayers:
    """Put the group ``title`` of query ``key`` at the top of the layer tree (a re-run query's
    old group goes): the footprints at once, then the georeferenced tiles, collapsed, one per
    event-loop turn."""
    project = project or QgsProject.instance()
    remove_group(key, project)
    token = uuid.uuid4().hex
    group = QgsLayerTreeGroup(title)
    group.setCustomProperty(GROUP_KEY, key)
    group.setCustomProperty(GROUP_TOKEN, token)
    footprints = create_footprint_layer(hits, query, model, index, footprints_name(title))
    georeferenced = [h for h in hits if h.georeferenced]
    limit = settings.max_tile_layers() if max_tiles is None else max_tiles
    on_map = georeferenced[: max(0, limit)]
    if georeferenced:  # hits with no place on the map add no (empty) layer: the list has them
        project.addMapLayer(footprints, False)
        group.addLayer(footprints).setExpanded(False)
        if on_map:
            group.addGroup(TILES_GROUP).setExpanded(False)
        _insert_group(group, project)
    loader = TileLoader(token, on_map, project)
    _LOADERS[key] = loader
    loader.start()
    return ResultLayers(group, footprints, loader)


def rows_without_geometry(layer: QgsVectorLayer) -> list[int]:
    """Ranks of the rows that have no geometry (their ``note`` says why)."""
    return sorted(
        int(f["rank"]) for f in layer.getFeatures() if not f.hasGeometry() or f.geometry().isEmpty()
    )


def save_footprints(layer: QgsVectorLayer, path: str) -> str:
    """Write a footprint layer to a GeoPackage (layer name = the memory layer's name)."""
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = layer.name() or "footprints"
    if Path(path).exists():
        options.actionOnExistingFile = (
            QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteLayer
        )
    error, message, *_ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, path, QgsProject.instance().transformContext(), options
    )
    if error != QgsVectorFileWriter.WriterError.NoError:
        raise OSError(message or f"cannot write {path}")
    return path


def raster_extent_4326(path: str):
    """The raster's extent in EPSG:4326 (QgsRectangle), or None without a CRS."""
    from qgis.core import QgsCoordinateTransform

    layer = QgsRasterLayer(path, "extent", "gdal")
    if not layer.isValid() or not layer.crs().isValid():
        return None
    transform = QgsCoordinateTransform(
        layer.crs(), QgsCoordinateReferenceSystem(FOOTPRINT_CRS), QgsProject.instance()
    )
    return transform.transformBoundingBox(layer.extent())
