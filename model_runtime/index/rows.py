"""The typed rows of an index's store (sources, tiles, what a unit commits) and how a unit's
tiles become table rows and come back as arrays."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SourceRow:
    """One indexed raster. ``status`` is 'done' once all its units are committed, 'partial'
    while some are missing (a killed or cancelled run resumes them)."""

    id: int
    path: str
    size: int
    mtime: float
    sha1: str  # a cheap content signature (size + first and last bytes), never a full hash
    status: str
    crs: str | None
    width: int
    height: int
    info: dict
    tiles: int
    version: str | None = None
    units_total: int = 0


@dataclass(frozen=True)
class TileRow:
    """One tile as stored, joined with its source's path and CRS."""

    id: int
    source: str
    window: tuple[int, int, int, int]
    scale: int
    crs: str | None
    valid: float
    footprint: dict | None
    footprint_src: dict | None
    bbox: tuple[float, float, float, float] | None = None  # EPSG:4326 (minx, miny, maxx, maxy)


@dataclass(frozen=True)
class SourceMeta:
    """What the writer records about a source when its first unit commits."""

    uri: str
    size: int
    version: str
    mtime: float
    signature: str
    crs: str | None
    width: int
    height: int
    info: dict


@dataclass
class TileRows:
    """Rows of one work unit, ready to insert (arrays aligned with ``windows``)."""

    windows: list[tuple[int, int, int, int, int]]  # col, row, width, height, scale
    valid: list[float]
    footprints: list[dict | None]
    footprints_src: list[dict]
    codes: np.ndarray  # uint8 [n, bits // 8]
    tanh: np.ndarray | None  # float16 [n, bits]
    proj: np.ndarray | None  # float16 [n, proj_dim]

    def __len__(self) -> int:
        return len(self.windows)


def bbox_of(geometry: dict | None) -> tuple[float, float, float, float] | None:
    """(minx, miny, maxx, maxy) of a GeoJSON polygon, None for None."""
    if geometry is None:
        return None
    xs = [p[0] for ring in geometry["coordinates"] for p in ring]
    ys = [p[1] for ring in geometry["coordinates"] for p in ring]
    return min(xs), min(ys), max(xs), max(ys)


def insert_tiles(conn: sqlite3.Connection, source_id: int, rows: TileRows) -> list[int]:
    """Inside a transaction: insert a unit's tiles (and the bbox of each georeferenced one);
    returns their new ids in order."""
    codes = np.ascontiguousarray(rows.codes, dtype=np.uint8)
    tanh = None if rows.tanh is None else np.ascontiguousarray(rows.tanh, np.float16)
    proj = None if rows.proj is None else np.ascontiguousarray(rows.proj, np.float16)
    ids = []
    for i, (col, row, width, height, scale) in enumerate(rows.windows):
        footprint = rows.footprints[i]
        cur = conn.execute(
            "INSERT INTO tiles(source_id, col, row, width, height, scale, valid, footprint, "
            "footprint_src, code, feats, proj) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (source_id, col, row, width, height, scale, float(rows.valid[i]),
             None if footprint is None else json.dumps(footprint),
             json.dumps(rows.footprints_src[i]), codes[i].tobytes(),
             None if tanh is None else tanh[i].tobytes(),
             None if proj is None else proj[i].tobytes()),
        )
        ids.append(int(cur.lastrowid))
        box = bbox_of(footprint)
        if box is not None:
            conn.execute("INSERT INTO tiles_bbox(id, minx, maxx, miny, maxy) "
                         "VALUES (?, ?, ?, ?, ?)", (ids[-1], box[0], box[2], box[1], box[3]))
    return ids


def chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    """``ids`` in slices of ``size``: an ``IN (...)`` list stays under SQLite's variable limit."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def f16(blob: bytes | None) -> np.ndarray | None:
    """A stored float16 vector as float32, None for NULL."""
    return None if blob is None else np.frombuffer(blob, dtype=np.float16).astype(np.float32)
