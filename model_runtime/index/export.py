"""Write hits where an analyst can open them: GeoJSON, GeoPackage, a PNG contact sheet.

The GeoPackage is written with ``sqlite3`` following the OGC GeoPackage 1.3 encoding (no GDAL
vector bindings needed); QGIS and ``ogrinfo`` read it as a polygon layer in EPSG:4326.
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

from model_runtime.errors import DataError, DiskFullError
from model_runtime.index.binary import temp_path
from model_runtime.index.query import Hit
from model_runtime.index.store import bbox_of

LOG = logging.getLogger(__name__)

LAYER = "cach_hits"


def _provenance(query: dict | str | None, model_info: dict | None) -> tuple[str, str]:
    query_text = query if isinstance(query, str) else json.dumps(query or {}, sort_keys=True)
    return query_text, json.dumps(model_info or {}, sort_keys=True)


def _replace_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno == 28:
            raise DiskFullError(f"{path}: disk full while writing results") from err
        raise
    return path


def write_geojson(
    hits: Sequence[Hit],
    path: str | os.PathLike,
    query: dict | str | None = None,
    model_info: dict | None = None,
) -> Path:
    """A FeatureCollection of hit footprints (EPSG:4326; null geometry without CRS)."""
    query_text, model_text = _provenance(query, model_info)
    features = []
    for hit in hits:
        props = hit.to_json()
        props.pop("footprint")
        props["footprint_src"] = json.dumps(props["footprint_src"])
        props["window"] = json.dumps(props["window"])
        props.update(query=query_text, model=model_text)
        features.append(
            {"type": "Feature", "id": hit.tile_id, "geometry": hit.footprint, "properties": props}
        )
    doc = {
        "type": "FeatureCollection",
        "name": LAYER,
        "query": query if query is not None else {},
        "model": model_info or {},
        "features": features,
    }

    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(doc), encoding="utf-8")

    return _replace_atomically(Path(path), write)


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


def write_gpkg(
    hits: Sequence[Hit],
    path: str | os.PathLike,
    query: dict | str | None = None,
    model_info: dict | None = None,
    layer: str = LAYER,
) -> Path:
    """A GeoPackage polygon layer of hit footprints with rank, score, query and model fields,
    plus a ``cach_query`` attribute table holding the query and model once."""
    query_text, model_text = _provenance(query, model_info)
    boxes = [bbox_of(h.footprint) for h in hits if h.footprint is not None]
    extent = (
        (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        if boxes
        else (None, None, None, None)
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

    def write(tmp: Path) -> None:
        conn = sqlite3.connect(tmp)
        try:
            q = conn.execute
            q("PRAGMA application_id = 1196444487")  # 'GPKG'
            q("PRAGMA user_version = 10300")
            q("""CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL,
                 srs_id INTEGER PRIMARY KEY, organization TEXT NOT NULL,
                 organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL,
                 description TEXT)""")
            conn.executemany(
                "INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
                [
                    ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", None),
                    ("Undefined geographic SRS", 0, "NONE", 0, "undefined", None),
                    ("WGS 84 geodetic", 4326, "EPSG", 4326, _WGS84_WKT, "longitude/latitude"),
                ],
            )
            q("""CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY,
                 data_type TEXT NOT NULL, identifier TEXT UNIQUE, description TEXT DEFAULT '',
                 last_change DATETIME NOT NULL, min_x DOUBLE, min_y DOUBLE, max_x DOUBLE,
                 max_y DOUBLE, srs_id INTEGER,
                 CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id)
                 REFERENCES gpkg_spatial_ref_sys(srs_id))""")
            q("""CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL,
                 column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
                 srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
                 CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name))""")
            q(f"""CREATE TABLE "{layer}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom POLYGON,
                 rank INTEGER, tile_id INTEGER, source TEXT, col_off INTEGER, row_off INTEGER,
                 width INTEGER, height INTEGER, crs TEXT, hamming INTEGER, score REAL,
                 footprint_src TEXT, query TEXT, model TEXT)""")
            q(
                "INSERT INTO gpkg_contents VALUES (?, 'features', ?, ?, ?, ?, ?, ?, ?, 4326)",
                (layer, layer, f"CACH search results: {query_text}"[:500], now, *extent),
            )
            q(
                "INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'POLYGON', 4326, 0, 0)",
                (layer,),
            )
            conn.executemany(
                f'INSERT INTO "{layer}" (geom, rank, tile_id, source, col_off, row_off, width, '
                "height, crs, hamming, score, footprint_src, query, model) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        None if h.footprint is None else _gpkg_geometry(h.footprint),
                        h.rank,
                        h.tile_id,
                        h.source,
                        *h.window,
                        h.crs,
                        h.hamming,
                        h.score,
                        json.dumps(h.footprint_src),
                        query_text,
                        model_text,
                    )
                    for h in hits
                ],
            )
            q("CREATE TABLE cach_query (key TEXT PRIMARY KEY, value TEXT)")
            conn.executemany(
                "INSERT INTO cach_query VALUES (?, ?)",
                [("query", query_text), ("model", model_text), ("written", now)],
            )
            q(
                "INSERT INTO gpkg_contents (table_name, data_type, identifier, last_change) "
                "VALUES ('cach_query', 'attributes', 'cach_query', ?)",
                (now,),
            )
            conn.commit()
        finally:
            conn.close()

    return _replace_atomically(Path(path), write)


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

    from model_runtime.tiling import read_window

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

    def write(tmp: Path) -> None:
        sheet.save(tmp, format="PNG")

    return _replace_atomically(Path(path), write)
