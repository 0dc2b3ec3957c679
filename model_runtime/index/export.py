"""Write hits where an analyst can open them: GeoJSON, GeoPackage, a PNG contact sheet.

Both vector formats carry the footprint-layer schema of ``protocol.FOOTPRINT_FIELDS``, the same
fields the QGIS plugin writes, so a layer saved from the plugin and one from ``cach search
--gpkg`` are interchangeable. Hits of images without a CRS have no geometry; their ``note``
says why. The GeoPackage is written with ``sqlite3`` following the OGC GeoPackage 1.3 encoding
(no GDAL vector bindings needed); QGIS and ``ogrinfo`` read it as a polygon layer in EPSG:4326.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from model_runtime.errors import DataError
from model_runtime.fsutil import atomic_write
from model_runtime.index.store import bbox_of
from model_runtime.protocol import FOOTPRINT_FIELDS, Hit, footprint_row

LOG = logging.getLogger(__name__)

LAYER = "cach_hits"
_SQL_TYPES = {"int": "INTEGER", "real": "REAL", "text": "TEXT", "bool": "BOOLEAN"}


def _provenance(query: dict | str | None, model_info: dict | None) -> tuple[str, str]:
    query_text = query if isinstance(query, str) else json.dumps(query or {}, sort_keys=True)
    return query_text, json.dumps(model_info or {}, sort_keys=True)


def write_geojson(hits: Sequence[Hit], path: str | os.PathLike, query: dict | str | None = None,
                  model_info: dict | None = None, index: str = "") -> Path:
    """A FeatureCollection of hit footprints (EPSG:4326; null geometry without CRS)."""
    query_text, model_text = _provenance(query, model_info)
    features = [{"type": "Feature", "id": hit.tile_id, "geometry": hit.footprint,
                 "properties": footprint_row(hit, query_text, model_text, index)}
                for hit in hits]
    doc = {"type": "FeatureCollection", "name": LAYER,
           "query": query if query is not None else {}, "model": model_info or {},
           "features": features}
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(doc), encoding="utf-8"))


def _gpkg_geometry(geometry: dict, srs_id: int = 4326) -> bytes:
    """GeoPackage binary: 'GP' header with an xy envelope, then little-endian WKB polygon."""
    minx, miny, maxx, maxy = bbox_of(geometry)
    header = b"GP" + bytes([0, 0b00000011]) + struct.pack("<i4d", srs_id, minx, maxx, miny, maxy)
    rings = geometry["coordinates"]
    wkb = struct.pack("<BII", 1, 3, len(rings))
    for ring in rings:
        wkb += struct.pack("<I", len(ring))
        wkb += np.asarray(ring, dtype="<f8").tobytes()
    return header + wkb


_WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,'
    'AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,'
    'AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],'
    'AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)


#: the GeoPackage 1.3 core tables exactly as the standard's Annex C defines them (GDAL's
#: ``validate_gpkg.py`` compares column types, defaults and keys with these)
_GPKG_META = (
    """CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL,
       srs_id INTEGER NOT NULL PRIMARY KEY, organization TEXT NOT NULL,
       organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL,
       description TEXT)""",
    """CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY,
       data_type TEXT NOT NULL, identifier TEXT UNIQUE, description TEXT DEFAULT '',
       last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
       min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
       CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id))""",
    """CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL,
       geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL,
       m TINYINT NOT NULL, CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
       CONSTRAINT uk_gc_table_name UNIQUE (table_name),
       CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
       CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id))""",
    # an attributes table needs an INTEGER PRIMARY KEY like any GeoPackage user table
    """CREATE TABLE cach_query (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
       key TEXT NOT NULL UNIQUE, value TEXT)""",
)
_SRS_ROWS = (
    ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", None),
    ("Undefined geographic SRS", 0, "NONE", 0, "undefined", None),
    ("WGS 84 geodetic", 4326, "EPSG", 4326, _WGS84_WKT, "longitude/latitude"),
)


def _extent(hits: Sequence[Hit]) -> tuple:
    boxes = [bbox_of(h.footprint) for h in hits if h.footprint is not None]
    if not boxes:
        return (None, None, None, None)
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
            max(b[3] for b in boxes))


def _gpkg_tables(conn: sqlite3.Connection, layer: str, query_text: str, extent: tuple,
                 now: str) -> None:
    """The GeoPackage's own tables, the feature table (schema ``FOOTPRINT_FIELDS``) and the
    ``cach_query`` attribute table."""
    conn.execute("PRAGMA application_id = 1196444487")  # 'GPKG'
    conn.execute("PRAGMA user_version = 10300")
    for statement in _GPKG_META:
        conn.execute(statement)
    conn.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", _SRS_ROWS)
    columns = ", ".join(f'"{n}" {_SQL_TYPES[t]}' for n, t in FOOTPRINT_FIELDS)
    conn.execute(f'CREATE TABLE "{layer}" (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, '
                 f"geom POLYGON, {columns})")
    conn.execute("INSERT INTO gpkg_contents VALUES (?, 'features', ?, ?, ?, ?, ?, ?, ?, 4326)",
                 (layer, layer, f"CACH search results: {query_text}"[:500], now, *extent))
    conn.execute("INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'POLYGON', 4326, 0, 0)",
                 (layer,))
    conn.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, last_change) "
                 "VALUES ('cach_query', 'attributes', 'cach_query', ?)", (now,))


def write_gpkg(hits: Sequence[Hit], path: str | os.PathLike, query: dict | str | None = None,
               model_info: dict | None = None, layer: str = LAYER, index: str = "") -> Path:
    """A GeoPackage polygon layer of hit footprints (``protocol.FOOTPRINT_FIELDS``), plus a
    ``cach_query`` attribute table holding the query and model once."""
    query_text, model_text = _provenance(query, model_info)
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    names = ", ".join(f'"{n}"' for n, _ in FOOTPRINT_FIELDS)
    marks = ", ".join("?" * (len(FOOTPRINT_FIELDS) + 1))
    rows = [(None if h.footprint is None else _gpkg_geometry(h.footprint),
             *footprint_row(h, query_text, model_text, index).values()) for h in hits]

    def write(tmp: Path) -> None:
        conn = sqlite3.connect(tmp)
        try:
            _gpkg_tables(conn, layer, query_text, _extent(hits), now)
            conn.executemany(f'INSERT INTO "{layer}" (geom, {names}) VALUES ({marks})', rows)
            conn.executemany("INSERT INTO cach_query (key, value) VALUES (?, ?)",
                             [("query", query_text), ("model", model_text), ("written", now)])
            conn.commit()
        finally:
            conn.close()

    return atomic_write(path, write)


def contact_sheet(
    hits: Sequence[Hit],
    path: str | os.PathLike,
    thumb: int = 160,
    columns: int | None = None,
    reader: Callable[[Hit], np.ndarray] | None = None,
) -> Path:
    """PNG grid of hit thumbnails labelled with rank, score, Hamming distance and file name.

    ``reader(hit) -> HxWx3 uint8`` defaults to reading the window with default tiling options;
    pass ``lambda h: index.read_tile_pixels(h.tile_id)`` to show what the encoder saw."""
    from PIL import Image, ImageDraw

    from model_runtime.raster.tiling import read_window

    if not hits:
        raise DataError("No hits to draw a contact sheet of.")
    reader = reader or (lambda h: read_window(h.source, h.window))
    columns = columns or min(5, len(hits))
    label_h = 30
    rows = -(-len(hits) // columns)
    sheet = Image.new("RGB", (columns * (thumb + 4) + 4, rows * (thumb + label_h + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for i, hit in enumerate(hits):
        x = 4 + (i % columns) * (thumb + 4)
        y = 4 + (i // columns) * (thumb + label_h + 4)
        try:
            img = Image.fromarray(reader(hit)).convert("RGB").resize((thumb, thumb))
        except DataError as err:
            LOG.warning("contact sheet: %s", err)
            img = Image.new("RGB", (thumb, thumb), (200, 200, 200))
        sheet.paste(img, (x, y))
        draw.text(
            (x, y + thumb + 2), f"#{hit.rank}  {hit.score:.2f}  h={hit.hamming}", fill="black"
        )
        draw.text((x, y + thumb + 15), Path(hit.source).name[: thumb // 6], fill=(80, 80, 80))

    return atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))
