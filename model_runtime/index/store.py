"""SQLite store of an index: sources, finished work units, tiles (with their codes), meta.

The store is the single source of truth: each tile row carries its packed code, its float16
tanh outputs and (with heads that have one) the float16 projection of its frozen image
features, so the faiss file is a cache that can always be rebuilt from here, and the codes can
be re-hashed (adaptation) without the encoder. The schema is versioned with ``PRAGMA
user_version`` and step-by-step migrations. Every write is one transaction (WAL journal): a
killed process leaves a work unit either committed or absent, never half of it. The ``units``
table is the resume bookkeeping: a unit key there is finished, whichever executor (local
threads, Ray shards merged later) produced it.
"""

from __future__ import annotations

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
from model_runtime.fsutil import is_disk_full

LOG = logging.getLogger(__name__)

DB_NAME = "index.sqlite"
VERSION = 3
#: the oldest schema a read-only index (that cannot be migrated) is still searched at
READABLE_FROM = 2
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
    2: (
        # a source's identity beside size: the local mtime in ns, or an object store's ETag;
        # NULL on rows of version 1, which compare by (size, mtime) once and then get one
        "ALTER TABLE sources ADD COLUMN version TEXT",
        # how many work units the source was planned into; status 'partial' until all are in
        "ALTER TABLE sources ADD COLUMN units_total INTEGER NOT NULL DEFAULT 0",
        # float16 projection of the frozen image features (heads with proj_dim > 0)
        "ALTER TABLE tiles ADD COLUMN proj BLOB",
        """CREATE TABLE units (
            key TEXT PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            start INTEGER NOT NULL,
            stop INTEGER NOT NULL,
            tiles INTEGER NOT NULL,
            committed_at TEXT NOT NULL)""",
        "CREATE INDEX units_source ON units(source_id)",
    ),
    3: (
        # the folders (or object-storage prefixes) the index holds (docs/indexing.md, "What an
        # index holds"); filled from what an older index holds by _fill_roots
        "CREATE TABLE roots (path TEXT PRIMARY KEY, added_at TEXT NOT NULL)",
    ),
}


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


def _readonly_failure(err: sqlite3.DatabaseError, index_dir: Path) -> bool:
    """A write refused (SQLITE_READONLY) or an open that failed because the folder is
    read-only: a permission problem, never damage."""
    if getattr(err, "sqlite_errorcode", 0) & 0xFF == 8 or "readonly database" in str(err):
        return True  # SQLITE_READONLY and its extended codes
    return "unable to open" in str(err) and not is_writable(index_dir)


def _disk_full(err: BaseException) -> bool:
    return getattr(err, "sqlite_errorcode", None) == SQLITE_FULL or is_disk_full(err)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def is_writable(index_dir: Path) -> bool:
    """Whether this process can write the index folder and its database (False on a read-only
    mount, EROFS, as well as without permission; root is refused only by the former)."""
    db = index_dir / DB_NAME
    return os.access(index_dir, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))


def readonly_error(index_dir: str | os.PathLike, what: str) -> IndexStateError:
    """The coded error of a write (``what``: index, adapt...) asked of a read-only index."""
    return IndexStateError(
        f"The index at {index_dir} is read-only (a read-only mount or no write permission), so "
        f"it cannot {what}. It can still be searched. To change it, copy the folder somewhere "
        "writable or ask for write access.",
        code="index_readonly", path=str(index_dir),
    )


def _bind(value: object) -> object:
    """A str SQLite can store as TEXT, or the bytes of a path that is not UTF-8 (a file name's
    undecodable bytes, held by Python as surrogate escapes) as a BLOB."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(value)
    return value


def _params(params: object) -> object:
    if isinstance(params, dict):
        return {k: _bind(v) for k, v in params.items()}
    return tuple(_bind(v) for v in params)  # type: ignore[union-attr]


def db_path(value: object) -> str:
    """A path read from the store: a BLOB path (:func:`_bind`) is the same str again."""
    return os.fsdecode(value) if isinstance(value, bytes) else value  # type: ignore[return-value]


class _Connection(sqlite3.Connection):
    """Binds every parameter through :func:`_bind`: a file whose name is not UTF-8 can be
    indexed (SQLite TEXT must be UTF-8); reads turn such paths back with :func:`db_path`."""

    def execute(self, sql, parameters=(), /):  # type: ignore[override]
        return super().execute(sql, _params(parameters))

    def executemany(self, sql, seq_of_parameters, /):  # type: ignore[override]
        return super().executemany(sql, (_params(p) for p in seq_of_parameters))


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """Open a database SQLite may not write. A WAL database needs its -shm file: when the last
    writer closed it cleanly there is none and none can be made, so the file is opened as
    immutable (nothing can change it on a read-only mount)."""
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    mode = "mode=ro" if wal.exists() and shm.exists() else "immutable=1"
    return sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, isolation_level=None,
                           check_same_thread=False, timeout=30, factory=_Connection)


class Store:
    """Typed access to ``index.sqlite``. Thread-safe through one lock around the connection."""

    def __init__(self, index_dir: str | os.PathLike, create: bool = False) -> None:
        self.dir = Path(index_dir)
        self.path = self.dir / DB_NAME
        if not self.path.is_file() and not create:
            raise IndexStateError(f"There is no CACH index in {self.dir}.", code="index_missing")
        if create:
            self.dir.mkdir(parents=True, exist_ok=True)
        #: an index on a read-only mount (or without write permission) is opened for search
        self.readonly = not create and not is_writable(self.dir)
        self._lock = threading.RLock()
        self.conn: sqlite3.Connection | None = None
        with self.reading("opening"):
            if self.readonly:
                self.conn = _connect_readonly(self.path)
            else:
                self.conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=30,
                    factory=_Connection,
                )
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()

    # -- errors ------------------------------------------------------------------------------
    @contextmanager
    def reading(self, what: str = "reading") -> Iterator[None]:
        """Turn SQLite failures into messages: damaged pages, a full disk, not a database."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            if _readonly_failure(err, self.dir):
                raise readonly_error(self.dir, "be changed") from err
            if _disk_full(err):
                raise DiskFullError(f"The disk is full ({what} {self.path}): nothing half-written "
                                    "was kept. Free space and index the same folders again to "
                                    "resume.") from err
            raise IndexStateError(
                f"The index database {self.path} is damaged ({err}). Index the folders again "
                "with 'Rebuild' (cach index --rebuild) to make a new one.",
                code="index_corrupt",
            ) from err

    # -- schema ------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.version
        if current > VERSION:
            raise IndexStateError(
                f"{self.path} was written by a newer CACH (schema {current} > {VERSION}): "
                "update the plugin or rebuild the index.",
                code="index_newer",
            )
        if self.readonly and READABLE_FROM <= current < VERSION:
            return  # what the later schemas add (roots) is derived when read: still searchable
        if self.readonly and current < VERSION:
            raise readonly_error(self.dir, f"be upgraded from schema {current} to {VERSION} "
                                 "for this version of CACH")
        for version in range(current + 1, VERSION + 1):
            with self.transaction():
                for statement in MIGRATIONS[version]:
                    self.conn.execute(statement)
                if version == 3:
                    _fill_roots(self.conn)
                self.conn.execute(f"PRAGMA user_version = {version}")
            LOG.debug("%s migrated to schema %d", self.path, version)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rollback on any error; disk full -> DiskFullError."""
        if self.readonly:
            raise readonly_error(self.dir, "be written")
        with self._lock, self.reading("writing"):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def _rows(self, sql: str, args: Sequence = ()) -> list[tuple]:
        with self._lock, self.reading():
            return self.conn.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            if self.conn is not None:
                self.conn.close()

    # -- meta --------------------------------------------------------------------------------
    def meta(self) -> dict:
        rows = self._rows("SELECT key, value FROM meta")
        try:
            return {key: json.loads(value) for key, value in rows}
        except (TypeError, ValueError) as err:
            raise IndexStateError(f"The index database {self.path} is damaged (unreadable "
                                  "metadata). Index the folders again with 'Rebuild'.",
                                  code="index_corrupt") from err

    def set_meta(self, conn: sqlite3.Connection | None = None, **values) -> None:
        """Set meta keys (JSON values); inside ``conn``'s transaction when given."""
        rows = [(key, json.dumps(value)) for key, value in values.items()]
        sql = ("INSERT INTO meta(key, value) VALUES (?, ?) "
               "ON CONFLICT(key) DO UPDATE SET value=excluded.value")
        if conn is not None:
            conn.executemany(sql, rows)
        else:
            with self.transaction() as tx:
                tx.executemany(sql, rows)

    def _bump(self, conn: sqlite3.Connection) -> None:
        # any change of tiles makes the index incomplete until the builder says otherwise
        gen = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        self.set_meta(conn, generation=(json.loads(gen[0]) if gen else 0) + 1, complete=False,
                      updated=_now())

    # -- roots -------------------------------------------------------------------------------
    def roots(self) -> list[str]:
        """The index's root folders (or prefixes), in the order they were added."""
        if self.version < 3:  # read-only at schema 2: derived as migration 3 would
            with self._lock, self.reading():
                return _old_roots(self.conn)
        return [db_path(r[0]) for r in self._rows("SELECT path FROM roots ORDER BY rowid")]

    def add_roots(self, conn: sqlite3.Connection, roots: Sequence[str]) -> list[str]:
        """Inside a transaction: remember these roots; returns those that were new."""
        added = []
        for root in roots:
            cur = conn.execute("INSERT OR IGNORE INTO roots(path, added_at) VALUES (?, ?)",
                               (root, _now()))
            added += [root] if cur.rowcount else []
        return added

    def remove_root(self, root: str) -> int:
        """Forget a root and drop the sources under it, in one transaction; returns how many
        sources went. Sources under another (deeper) remembered root stay."""
        from model_runtime.index.roots import root_of

        with self.transaction() as tx:
            rest = [db_path(r[0])
                    for r in tx.execute("SELECT path FROM roots WHERE path != ?", (root,))]
            paths = [db_path(r[0]) for r in tx.execute("SELECT path FROM sources")]
            mine = [p for p in paths if root_of(p, [*rest, root]) == root]
            removed = sum(self._delete_source(tx, p) for p in mine)
            tx.execute("DELETE FROM roots WHERE path = ?", (root,))
            self._bump(tx)
        return removed

    # -- sources -----------------------------------------------------------------------------
    def sources(self) -> dict[str, SourceRow]:
        rows = self._rows(
            "SELECT id, path, size, mtime, sha1, status, crs, width, height, info, tiles, "
            "version, units_total FROM sources")
        return {
            db_path(r[1]): SourceRow(r[0], db_path(r[1]), r[2], r[3], r[4], r[5], r[6], r[7] or 0,
                                     r[8] or 0, json.loads(r[9] or "{}"), r[10], r[11],
                                     r[12] or 0)
            for r in rows
        }

    def set_identity(self, uri: str, size: int, version: str, mtime: float) -> None:
        """Record a new identity for a source whose content did not change (a touched file)."""
        with self.transaction() as tx:
            tx.execute("UPDATE sources SET size=?, version=?, mtime=? WHERE path=?",
                       (size, version, mtime, uri))

    def done_units(self, uri: str) -> set[str]:
        """Keys of the committed units of a source."""
        rows = self._rows("SELECT u.key FROM units u JOIN sources s ON s.id = u.source_id "
                          "WHERE s.path = ?", (uri,))
        return {r[0] for r in rows}

    def begin_source(self, conn: sqlite3.Connection, meta: SourceMeta, units_total: int) -> int:
        """Inside a transaction: the id of the source row for ``meta``, created (status
        'partial') when absent or when its identity changed (old tiles and units dropped)."""
        row = conn.execute("SELECT id, size, version FROM sources WHERE path=?",
                           (meta.uri,)).fetchone()
        if row is not None and (row[1], row[2]) == (meta.size, meta.version):
            return int(row[0])
        if row is not None:
            self._delete_source(conn, meta.uri)
        cur = conn.execute(
            "INSERT INTO sources(path, size, mtime, sha1, status, crs, width, height, info, "
            "tiles, indexed_at, version, units_total) "
            "VALUES (?, ?, ?, ?, 'partial', ?, ?, ?, ?, 0, ?, ?, ?)",
            (meta.uri, meta.size, meta.mtime, meta.signature, meta.crs, meta.width, meta.height,
             json.dumps(meta.info), _now(), meta.version, units_total),
        )
        return int(cur.lastrowid)

    def commit_unit(self, conn: sqlite3.Connection, source_id: int, key: str, span: tuple[int, int],
                    rows: TileRows) -> list[int] | None:
        """Inside a transaction: insert one unit's tiles and record the unit; mark the source
        'done' when all its units are in. A unit already committed (a shard delivered twice, a
        resumed run racing a merge) is left as it is: returns None, never duplicates tiles."""
        if conn.execute("SELECT 1 FROM units WHERE key=?", (key,)).fetchone():
            return None
        ids = self._insert_tiles(conn, source_id, rows)
        conn.execute("INSERT INTO units(key, source_id, start, stop, tiles, committed_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (key, source_id, span[0], span[1], len(ids),
                                                   _now()))
        conn.execute(
            "UPDATE sources SET tiles = tiles + :n, status = CASE WHEN (SELECT COUNT(*) FROM units "
            "WHERE source_id = :id) >= units_total THEN 'done' ELSE 'partial' END, "
            "indexed_at = :now WHERE id = :id",
            {"id": source_id, "n": len(ids), "now": _now()},
        )
        self._bump(conn)
        return ids

    def _insert_tiles(self, conn: sqlite3.Connection, source_id: int, rows: TileRows) -> list[int]:
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

    def _delete_source(self, conn: sqlite3.Connection, path: str) -> bool:
        row = conn.execute("SELECT id FROM sources WHERE path=?", (path,)).fetchone()
        if row is None:
            return False
        conn.execute("DELETE FROM tiles_bbox WHERE id IN (SELECT id FROM tiles WHERE source_id=?)",
                     (row[0],))
        conn.execute("DELETE FROM tiles WHERE source_id=?", (row[0],))
        conn.execute("DELETE FROM units WHERE source_id=?", (row[0],))
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
        return int(self._rows("SELECT COUNT(*) FROM tiles")[0][0])

    def all_codes(self, nbytes: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 ascending, codes uint8 [N, nbytes]) of every tile."""
        rows = self._rows("SELECT id, code FROM tiles ORDER BY id")
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        codes = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8)
        if codes.size != len(rows) * nbytes:
            raise IndexStateError(f"{self.path}: stored codes are not {nbytes} bytes each",
                                  code="index_corrupt")
        return ids, codes.reshape(len(rows), nbytes)

    def iter_vectors(self, column: str, batch: int = 20_000) -> Iterator[tuple[np.ndarray, list]]:
        """(ids, blobs) of every tile in id order, ``batch`` at a time; ``column`` is ``feats``
        (tanh outputs) or ``proj``. Used to adapt and re-hash without loading all at once."""
        if column not in ("feats", "proj", "code"):
            raise ValueError(column)
        last = -1
        while True:
            rows = self._rows(f"SELECT id, {column} FROM tiles WHERE id > ? ORDER BY id LIMIT ?",
                              (last, batch))
            if not rows:
                return
            last = rows[-1][0]
            yield np.asarray([r[0] for r in rows], np.int64), [r[1] for r in rows]

    def update_codes(self, conn: sqlite3.Connection, ids: np.ndarray, codes: np.ndarray,
                     tanh: np.ndarray) -> None:
        """Inside a transaction: new codes and tanh outputs for these tiles (a re-hash)."""
        codes = np.ascontiguousarray(codes, np.uint8)
        tanh = np.ascontiguousarray(tanh, np.float16)
        conn.executemany("UPDATE tiles SET code=?, feats=? WHERE id=?",
                         [(codes[i].tobytes(), tanh[i].tobytes(), int(t))
                          for i, t in enumerate(ids)])

    def tiles(self, ids: Sequence[int], geometry: bool = True) -> dict[int, TileRow]:
        """Rows for these tile ids (missing ids are absent from the result). Without
        ``geometry`` the footprints are left as None (no JSON parsing) but ``bbox`` is set:
        the cheap form used to rank and collapse search candidates."""
        out: dict[int, TileRow] = {}
        geo = "t.footprint, t.footprint_src" if geometry else "NULL, NULL"
        for chunk in _chunks([int(i) for i in ids]):
            for r in self._rows(
                "SELECT t.id, s.path, t.col, t.row, t.width, t.height, t.scale, s.crs, "
                f"t.valid, {geo}, b.minx, b.miny, b.maxx, b.maxy FROM tiles t "
                "JOIN sources s ON s.id = t.source_id LEFT JOIN tiles_bbox b ON b.id = t.id "
                f"WHERE t.id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                out[r[0]] = TileRow(
                    id=r[0], source=db_path(r[1]), window=(r[2], r[3], r[4], r[5]), scale=r[6], crs=r[7],
                    valid=r[8], footprint=json.loads(r[9]) if r[9] else None,
                    footprint_src=json.loads(r[10]) if r[10] else None,
                    bbox=None if r[11] is None else (r[11], r[12], r[13], r[14]),
                )
        return out

    def vectors(self, ids: Sequence[int]) -> dict[int, tuple[bytes, np.ndarray | None,
                                                                np.ndarray | None]]:
        """(packed code, float32 tanh outputs or None, float32 projection or None) per tile."""
        out = {}
        for chunk in _chunks([int(i) for i in ids]):
            for tid, code, feats, proj in self._rows(
                f"SELECT id, code, feats, proj FROM tiles WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                out[tid] = (code, _f16(feats), _f16(proj))
        return out

    def ids_in_bbox(self, minx: float, miny: float, maxx: float, maxy: float) -> np.ndarray:
        """Ids of georeferenced tiles whose EPSG:4326 bbox intersects this one, ascending."""
        rows = self._rows("SELECT id FROM tiles_bbox WHERE maxx >= ? AND minx <= ? AND maxy >= ? "
                          "AND miny <= ? ORDER BY id", (minx, maxx, miny, maxy))
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def source_info(self, path: str) -> dict | None:
        rows = self._rows("SELECT info FROM sources WHERE path=?", (path,))
        return json.loads(rows[0][0] or "{}") if rows else None

    def integrity_problems(self) -> list[str]:
        """Consistency checks used by tests and ``cach index --check``: empty when healthy."""
        problems = []
        dup = self._rows("SELECT source_id, col, row, width, height, scale, COUNT(*) FROM tiles "
                         "GROUP BY 1, 2, 3, 4, 5, 6 HAVING COUNT(*) > 1")
        if dup:
            problems.append(f"{len(dup)} duplicated tile windows")
        bad = self._rows("SELECT s.path, s.tiles, COUNT(t.id) FROM sources s LEFT JOIN tiles t "
                         "ON t.source_id = s.id GROUP BY s.id HAVING s.tiles != COUNT(t.id)")
        problems += [f"{db_path(p)}: expected {n} tiles, found {m}" for p, n, m in bad]
        orphans = self._rows("SELECT COUNT(*) FROM tiles_bbox WHERE id NOT IN "
                             "(SELECT id FROM tiles)")[0][0]
        if orphans:
            problems.append(f"{orphans} bbox rows without a tile")
        return problems


def _old_roots(conn: sqlite3.Connection) -> list[str]:
    """The roots of an index written before they were stored: its older ``meta.roots``
    (remembered by earlier runs), plus the folder of any source under none of them."""
    from model_runtime.index.roots import derive_roots

    row = conn.execute("SELECT value FROM meta WHERE key='roots'").fetchone()
    try:
        known = [str(r) for r in json.loads(row[0]) or []] if row else []
    except (TypeError, ValueError):
        known = []
    uris = [db_path(r[0]) for r in conn.execute("SELECT path FROM sources")]
    return derive_roots(uris, known)


def _fill_roots(conn: sqlite3.Connection) -> None:
    """Migration 3: store the roots of an older index (:func:`_old_roots`)."""
    conn.executemany("INSERT OR IGNORE INTO roots(path, added_at) VALUES (?, ?)",
                     [(root, _now()) for root in _old_roots(conn)])
    conn.execute("DELETE FROM meta WHERE key='roots'")  # the table is the one record now


def _chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _f16(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float16).astype(np.float32)


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
            "Search it with the model it was built with, or index the folders again with "
            "'Rebuild' (cach index --rebuild)."
        )
