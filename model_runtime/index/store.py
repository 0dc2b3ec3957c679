"""SQLite metadata store of an index: sources, tiles (with their codes), meta.

The store is the single source of truth: each tile row carries its packed code and (optionally)
its float16 tanh outputs, so the faiss file is a cache that can always be rebuilt from here.
The schema is versioned with ``PRAGMA user_version`` and explicit step-by-step migrations; every
write is one transaction (WAL journal), so a killed process leaves either the old or the new
state of a source, never half of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_runtime.errors import DiskFullError, IndexStateError

LOG = logging.getLogger(__name__)

DB_NAME = "index.sqlite"
VERSION = 1
SQLITE_FULL = 13

#: migration to version N = statements run on a store at version N-1
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE sources (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            sha1 TEXT NOT NULL,
            status TEXT NOT NULL,
            crs TEXT,
            width INTEGER,
            height INTEGER,
            info TEXT,
            tiles INTEGER NOT NULL DEFAULT 0,
            indexed_at TEXT NOT NULL)""",
        """CREATE TABLE tiles (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            col INTEGER NOT NULL,
            row INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            scale INTEGER NOT NULL,
            valid REAL NOT NULL,
            footprint TEXT,
            footprint_src TEXT NOT NULL,
            code BLOB NOT NULL,
            feats BLOB)""",
        "CREATE INDEX tiles_source ON tiles(source_id)",
        # EPSG:4326 bounding boxes of georeferenced tiles, for bbox filters and locate()
        "CREATE VIRTUAL TABLE tiles_bbox USING rtree(id, minx, maxx, miny, maxy)",
    ),
}


@dataclass(frozen=True)
class SourceRow:
    """One indexed raster. ``status`` is 'done' once all its tiles are committed."""

    id: int
    path: str
    size: int
    mtime: float
    sha1: str
    status: str
    crs: str | None
    width: int
    height: int
    info: dict
    tiles: int


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


def content_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Fast content hash: sha1 of the size and the first and last MiB."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha1(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(chunk))
        if size > chunk:
            fh.seek(max(chunk, size - chunk))
            digest.update(fh.read(chunk))
    return digest.hexdigest()


def bbox_of(geometry: dict | None) -> tuple[float, float, float, float] | None:
    """(minx, miny, maxx, maxy) of a GeoJSON polygon, None for None."""
    if geometry is None:
        return None
    xs = [p[0] for ring in geometry["coordinates"] for p in ring]
    ys = [p[1] for ring in geometry["coordinates"] for p in ring]
    return min(xs), min(ys), max(xs), max(ys)


def _is_disk_full(err: BaseException) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    return code == SQLITE_FULL or "disk is full" in str(err) or getattr(err, "errno", 0) == 28


class Store:
    """Typed access to ``index.sqlite``. Thread-safe through one lock around the connection."""

    def __init__(self, index_dir: str | os.PathLike, create: bool = False) -> None:
        self.dir = Path(index_dir)
        self.path = self.dir / DB_NAME
        if not self.path.exists() and not create:
            raise IndexStateError(f"No index at {self.dir}: run 'cach index' first.")
        if create:
            self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self.conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as err:
            if _is_disk_full(err):
                raise DiskFullError(f"{self.path}: disk full while opening the index") from err
            raise IndexStateError(f"{self.path}: not a readable index database ({err})") from err

    # -- schema ------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.version
        if current > VERSION:
            raise IndexStateError(
                f"{self.path} was written by a newer CACH (schema {current} > {VERSION}): "
                "update the plugin or rebuild the index."
            )
        for version in range(current + 1, VERSION + 1):
            with self.transaction():
                for statement in MIGRATIONS[version]:
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {version}")
            LOG.debug("%s migrated to schema %d", self.path, version)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rollback on any error; disk full -> DiskFullError."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as err:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                if isinstance(err, sqlite3.DatabaseError | OSError) and _is_disk_full(err):
                    raise DiskFullError(
                        f"{self.path}: disk full; the last source was not written. Free space "
                        "and run 'cach index' again to resume."
                    ) from err
                raise

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # -- meta --------------------------------------------------------------------------------
    def meta(self) -> dict:
        with self._lock:
            rows = self.conn.execute("SELECT key, value FROM meta").fetchall()
        return {key: json.loads(value) for key, value in rows}

    def set_meta(self, conn: sqlite3.Connection | None = None, **values) -> None:
        """Set meta keys (JSON values); inside ``conn``'s transaction when given."""
        rows = [(key, json.dumps(value)) for key, value in values.items()]
        sql = "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"
        if conn is not None:
            conn.executemany(sql, rows)
        else:
            with self.transaction() as tx:
                tx.executemany(sql, rows)

    def _bump(self, conn: sqlite3.Connection) -> None:
        # any change of tiles makes the index incomplete until the builder says otherwise
        gen = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        self.set_meta(
            conn,
            generation=(json.loads(gen[0]) if gen else 0) + 1,
            complete=False,
            updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )

    # -- sources -----------------------------------------------------------------------------
    def sources(self) -> dict[str, SourceRow]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, path, size, mtime, sha1, status, crs, width, height, info, tiles "
                "FROM sources"
            ).fetchall()
        return {
            r[1]: SourceRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7] or 0,
                r[8] or 0,
                json.loads(r[9] or "{}"),
                r[10],
            )
            for r in rows
        }

    def touch_source(self, path: str, size: int, mtime: float) -> None:
        """Record a new mtime for a file whose content hash did not change."""
        with self.transaction() as tx:
            tx.execute("UPDATE sources SET size=?, mtime=? WHERE path=?", (size, mtime, path))

    def replace_source(
        self,
        conn: sqlite3.Connection,
        source: dict,
        windows: Sequence[tuple[int, int, int, int, int]],
        valid: Sequence[float],
        footprints: Sequence[dict | None],
        footprints_src: Sequence[dict],
        codes: np.ndarray,
        feats: np.ndarray | None,
    ) -> list[int]:
        """Inside ``conn``'s transaction: drop the old tiles of ``source['path']`` and insert
        these. ``source`` holds path, size, mtime, sha1, crs, width, height, info."""
        self._delete_source(conn, source["path"])
        cur = conn.execute(
            "INSERT INTO sources(path, size, mtime, sha1, status, crs, width, height, info, "
            "tiles, indexed_at) VALUES (?, ?, ?, ?, 'done', ?, ?, ?, ?, ?, ?)",
            (
                source["path"],
                source["size"],
                source["mtime"],
                source["sha1"],
                source["crs"],
                source["width"],
                source["height"],
                json.dumps(source.get("info", {})),
                len(windows),
                time.strftime("%Y-%m-%dT%H:%M:%S"),
            ),
        )
        source_id = cur.lastrowid
        ids = []
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        feats16 = None if feats is None else np.ascontiguousarray(feats, dtype=np.float16)
        for i, (col, row, width, height, scale) in enumerate(windows):
            cur = conn.execute(
                "INSERT INTO tiles(source_id, col, row, width, height, scale, valid, footprint, "
                "footprint_src, code, feats) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    source_id,
                    col,
                    row,
                    width,
                    height,
                    scale,
                    float(valid[i]),
                    None if footprints[i] is None else json.dumps(footprints[i]),
                    json.dumps(footprints_src[i]),
                    codes[i].tobytes(),
                    None if feats16 is None else feats16[i].tobytes(),
                ),
            )
            ids.append(cur.lastrowid)
            box = bbox_of(footprints[i])
            if box is not None:
                conn.execute(
                    "INSERT INTO tiles_bbox(id, minx, maxx, miny, maxy) VALUES (?, ?, ?, ?, ?)",
                    (ids[-1], box[0], box[2], box[1], box[3]),
                )
        self._bump(conn)
        return ids

    def _delete_source(self, conn: sqlite3.Connection, path: str) -> bool:
        row = conn.execute("SELECT id FROM sources WHERE path=?", (path,)).fetchone()
        if row is None:
            return False
        conn.execute(
            "DELETE FROM tiles_bbox WHERE id IN (SELECT id FROM tiles WHERE source_id=?)", (row[0],)
        )
        conn.execute("DELETE FROM tiles WHERE source_id=?", (row[0],))
        conn.execute("DELETE FROM sources WHERE id=?", (row[0],))
        return True

    def delete_sources(self, paths: Iterable[str]) -> int:
        """Drop sources and their tiles in one transaction; returns how many existed."""
        with self.transaction() as tx:
            removed = sum(self._delete_source(tx, p) for p in paths)
            if removed:
                self._bump(tx)
        return removed

    # -- tiles -------------------------------------------------------------------------------
    def count_tiles(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM tiles").fetchone()[0])

    def all_codes(self, nbytes: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 ascending, codes uint8 [N, nbytes]) of every tile."""
        with self._lock:
            rows = self.conn.execute("SELECT id, code FROM tiles ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        codes = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8)
        if codes.size != len(rows) * nbytes:
            raise IndexStateError(f"{self.path}: stored codes are not {nbytes} bytes each")
        return ids, codes.reshape(len(rows), nbytes)

    def tiles(self, ids: Sequence[int], geometry: bool = True) -> dict[int, TileRow]:
        """Rows for these tile ids (missing ids are absent from the result). Without
        ``geometry`` the footprints are left as None (no JSON parsing) but ``bbox`` is set:
        the cheap form used to rank and collapse search candidates."""
        out: dict[int, TileRow] = {}
        ids = [int(i) for i in ids]
        geo = "t.footprint, t.footprint_src" if geometry else "NULL, NULL"
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for r in self.conn.execute(
                    "SELECT t.id, s.path, t.col, t.row, t.width, t.height, t.scale, s.crs, "
                    f"t.valid, {geo}, b.minx, b.miny, b.maxx, b.maxy FROM tiles t "
                    "JOIN sources s ON s.id = t.source_id "
                    "LEFT JOIN tiles_bbox b ON b.id = t.id "
                    f"WHERE t.id IN ({marks})",
                    chunk,
                ):
                    out[r[0]] = TileRow(
                        id=r[0],
                        source=r[1],
                        window=(r[2], r[3], r[4], r[5]),
                        scale=r[6],
                        crs=r[7],
                        valid=r[8],
                        footprint=json.loads(r[9]) if r[9] else None,
                        footprint_src=json.loads(r[10]) if r[10] else None,
                        bbox=None if r[11] is None else (r[11], r[12], r[13], r[14]),
                    )
        return out

    def vectors(self, ids: Sequence[int], bits: int) -> dict[int, tuple[bytes, np.ndarray | None]]:
        """Packed code and float32 tanh outputs (None when not stored) for these tile ids."""
        out = {}
        ids = [int(i) for i in ids]
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for tid, code, feats in self.conn.execute(
                    f"SELECT id, code, feats FROM tiles WHERE id IN ({marks})", chunk
                ):
                    vec = None
                    if feats is not None:
                        vec = np.frombuffer(feats, dtype=np.float16).astype(np.float32)
                    out[tid] = (code, vec)
        return out

    def ids_in_bbox(self, minx: float, miny: float, maxx: float, maxy: float) -> np.ndarray:
        """Ids of georeferenced tiles whose EPSG:4326 bbox intersects this one, ascending."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT id FROM tiles_bbox WHERE maxx >= ? AND minx <= ? AND maxy >= ? "
                "AND miny <= ? ORDER BY id",
                (minx, maxx, miny, maxy),
            ).fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def source_info(self, path: str) -> dict | None:
        with self._lock:
            row = self.conn.execute("SELECT info FROM sources WHERE path=?", (path,)).fetchone()
        return json.loads(row[0] or "{}") if row else None

    def integrity_problems(self) -> list[str]:
        """Consistency checks used by tests and ``cach index --check``: empty when healthy."""
        problems = []
        with self._lock:
            q = self.conn.execute
            dup = q(
                "SELECT source_id, col, row, width, height, scale, COUNT(*) FROM tiles "
                "GROUP BY 1, 2, 3, 4, 5, 6 HAVING COUNT(*) > 1"
            ).fetchall()
            if dup:
                problems.append(f"{len(dup)} duplicated tile windows")
            bad = q(
                "SELECT s.path, s.tiles, COUNT(t.id) FROM sources s LEFT JOIN tiles t "
                "ON t.source_id = s.id GROUP BY s.id HAVING s.tiles != COUNT(t.id)"
            ).fetchall()
            problems += [f"{p}: expected {n} tiles, found {m}" for p, n, m in bad]
            orphans = q(
                "SELECT COUNT(*) FROM tiles_bbox WHERE id NOT IN (SELECT id FROM tiles)"
            ).fetchone()[0]
            if orphans:
                problems.append(f"{orphans} bbox rows without a tile")
        return problems


#: the keys of ``model_info`` that must match between an index and the model searching it
MODEL_KEYS = ("backbone", "bits", "heads_sha")


def check_model(stored: dict | None, expected: dict | None, where: str | os.PathLike) -> None:
    """Raise ``ModelMismatchError`` when an index was built with another backbone/bits/heads."""
    from model_runtime.errors import ModelMismatchError

    if not stored or not expected:
        return
    diffs = [
        f"{key} {stored.get(key)!r} (index) vs {expected.get(key)!r} (model)"
        for key in MODEL_KEYS
        if key in expected and expected.get(key) is not None and stored.get(key) != expected[key]
    ]
    if diffs:
        raise ModelMismatchError(
            f"The index at {where} was built with another model: {'; '.join(diffs)}. "
            "Search it with the model it was built with, or rebuild it with "
            "'cach index --rebuild'."
        )
