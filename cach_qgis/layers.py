"""Search results as map layers: one group per query, footprints + tile windows as VRT.

Each :class:`~cach_qgis.messages.Hit` becomes one feature whose attributes map one-to-one onto the
hit's fields plus the query/model/index provenance. Tiles are GDAL VRT windows (``srcwin``) of the
source rasters, so no pixels are copied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
)
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QColor, QFont

from . import settings
from .messages import Hit

gdal.UseExceptions()
ogr.UseExceptions()

GROUP_KEY = "cach/query_key"
FOOTPRINT_CRS = "EPSG:4326"
#: rank classes, best first: (upper rank bound, colour)
RANK_COLOURS = ("#b2182b", "#ef8a62", "#fddbc7", "#67a9cf", "#2166ac")


def hit_fields() -> QgsFields:
    """Attribute schema of a footprint layer (shared with the Processing "Text search" sink)."""
    fields = QgsFields()
    for name, kind in (
        ("rank", QVariant.Int),
        ("score", QVariant.Double),
        ("hamming", QVariant.Int),
        ("tile_id", QVariant.LongLong),
        ("source", QVariant.String),
        ("window", QVariant.String),
        ("crs", QVariant.String),
        ("query", QVariant.String),
        ("model", QVariant.String),
        ("index", QVariant.String),
    ):
        fields.append(QgsField(name, kind))
    return fields


def footprint_geometry(hit: Hit) -> QgsGeometry:
    """The hit's EPSG:4326 footprint (an empty geometry when the source has no CRS)."""
    if not hit.footprint:
        return QgsGeometry()
    ogr_geom = ogr.CreateGeometryFromJson(json.dumps(hit.footprint))
    return QgsGeometry.fromWkt(ogr_geom.ExportToWkt())


def hit_feature(hit: Hit, fields: QgsFields, query: str, model: str, index: str) -> QgsFeature:
    """One footprint feature with the hit's attributes and provenance."""
    feat = QgsFeature(fields)
    feat.setGeometry(footprint_geometry(hit))
    feat.setAttributes(
        [
            hit.rank,
            hit.score,
            hit.hamming,
            hit.tile_id,
            hit.source,
            ",".join(str(v) for v in hit.window),
            hit.crs or "",
            query,
            model,
            index,
        ]
    )
    return feat


def create_footprint_layer(
    hits: Sequence[Hit], query: str, model: str, index: str, name: str = "Footprints"
) -> QgsVectorLayer:
    """A styled, labelled memory layer of the hits' footprints."""
    layer = QgsVectorLayer(f"Polygon?crs={FOOTPRINT_CRS}", name, "memory")
    provider = layer.dataProvider()
    fields = hit_fields()
    provider.addAttributes(fields.toList())
    layer.updateFields()
    provider.addFeatures([hit_feature(h, layer.fields(), query, model, index) for h in hits])
    layer.updateExtents()
    style_footprints(layer, max((h.rank for h in hits), default=1))
    return layer


def style_footprints(layer: QgsVectorLayer, max_rank: int) -> None:
    """Graduated colours by rank (best = dark red) and the rank as a label."""
    n_classes = max(1, min(len(RANK_COLOURS), max_rank))
    step = max(1, -(-max_rank // n_classes))  # ceil
    ranges = []
    lower = 1
    for i in range(n_classes):
        upper = max_rank if i == n_classes - 1 else min(max_rank, lower + step - 1)
        colour = QColor(RANK_COLOURS[i])
        fill = QColor(colour)
        fill.setAlpha(50)
        symbol = QgsFillSymbol.createSimple(
            {
                "color": fill.name(QColor.HexArgb),
                "outline_color": colour.name(),
                "outline_width": "0.8" if i == 0 else "0.5",
            }
        )
        label = f"rank {lower}" if lower == upper else f"rank {lower}–{upper}"
        ranges.append(QgsRendererRange(lower - 0.5, upper + 0.5, symbol, label))
        lower = upper + 1
        if lower > max_rank:
            break
    layer.setRenderer(QgsGraduatedSymbolRenderer("rank", ranges))

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
    pal.placement = QgsPalLayerSettings.OverPoint
    pal.setFormat(text)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(pal))
    layer.setLabelsEnabled(True)


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


def create_tile_layer(hit: Hit) -> QgsRasterLayer:
    """A raster layer showing the hit's window of its source raster."""
    name = f"#{hit.rank} {Path(hit.source).name} ({hit.score:.2f})"
    return QgsRasterLayer(str(tile_vrt(hit)), name, "gdal")


@dataclass
class ResultLayers:
    """What :func:`show_results` added: the group, the footprints and the tile layers."""

    group: QgsLayerTreeGroup
    footprints: QgsVectorLayer
    tiles: list[QgsRasterLayer] = field(default_factory=list)


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
    group = find_group(key, project)
    if group is None:
        return False
    layer_ids = [node.layerId() for node in group.findLayers()]
    parent = group.parent()
    parent.removeChildNode(group)
    project.removeMapLayers(layer_ids)
    return True


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
    """Add (or replace) the group ``title`` for query ``key``: footprints on top, then tiles."""
    project = project or QgsProject.instance()
    root = project.layerTreeRoot()
    position = 0
    old = find_group(key, project)
    if old is not None:
        position = max(0, old.parent().children().index(old)) if old.parent() is root else 0
        remove_group(key, project)
    # build the group detached, then insert it in one step: one layer-tree change, so the
    # canvas bridge updates the map once (and reliably) with all the new layers
    group = QgsLayerTreeGroup(title)
    group.setCustomProperty(GROUP_KEY, key)

    footprints = create_footprint_layer(hits, query, model, index)
    project.addMapLayer(footprints, False)
    group.addLayer(footprints)

    limit = settings.max_tile_layers() if max_tiles is None else max_tiles
    tiles: list[QgsRasterLayer] = []
    if hits and limit > 0:
        tile_group = group.addGroup("Tiles")
        for hit in list(hits)[:limit]:
            try:
                layer = create_tile_layer(hit)
            except RuntimeError:
                continue
            if not layer.isValid():
                continue
            project.addMapLayer(layer, False)
            tile_group.addLayer(layer)
            tiles.append(layer)
    root.insertChildNode(position, group)
    return ResultLayers(group, footprints, tiles)


def save_footprints(layer: QgsVectorLayer, path: str) -> str:
    """Write a footprint layer to a GeoPackage (layer name = the memory layer's name)."""
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = layer.name() or "footprints"
    if Path(path).exists():
        options.actionOnExistingFile = QgsVectorFileWriter.CreateOrOverwriteLayer
    error, message, *_ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, path, QgsProject.instance().transformContext(), options
    )
    if error != QgsVectorFileWriter.NoError:
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
