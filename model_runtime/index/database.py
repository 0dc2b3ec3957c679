"""The SQLite file of an index: its schema (``PRAGMA user_version`` and step-by-step
migrations), how it is opened (read-write with a WAL journal, or read-only), how paths are bound,
and how SQLite failures are told apart (read-only, disk full). ``store.Store`` runs its queries
on what :func:`connect` opens.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from model_runtime.errors import IndexStateError
from model_runtime.fsutil import is_disk_full

DB_NAME = "index.sqlite"
VERSION = 3
#: the oldest schema a read-only index (that cannot be migrated) is still searched at
READABLE_FROM = 2
SQLITE_FULL = 13  # SQLite's 'database or disk is full'

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
        # index holds"); filled from what an older index holds by fill_roots
        "CREATE TABLE roots (path TEXT PRIMARY KEY, added_at TEXT NOT NULL)",
    ),
}


def readonly_failure(err: sqlite3.DatabaseError, index_dir: Path) -> bool:
    """A write refused (SQLITE_READONLY) or an open that failed because the folder is
    read-only: a permission problem, never damage."""
    if getattr(err, "sqlite_errorcode", 0) & 0xFF == 8 or "readonly database" in str(err):
        return True  # SQLITE_READONLY and its extended codes
    return "unable to open" in str(err) and not is_writable(index_dir)


def disk_full(err: BaseException) -> bool:
    """SQLITE_FULL, or an OS error saying the disk is full."""
    return getattr(err, "sqlite_errorcode", None) == SQLITE_FULL or is_disk_full(err)


def now() -> str:
    """The local time as stored in the tables (seconds, ISO 8601)."""
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


def bind(value: object) -> object:
    """A str SQLite can store as TEXT, or the bytes of a path that is not UTF-8 (a file name's
    undecodable bytes, held by Python as surrogate escapes) as a BLOB."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(value)
    return value


def _params(params: object) -> object:
    """Every value of a statement's parameters (a sequence or a dict) through :func:`bind`."""
    if isinstance(params, dict):
        return {k: bind(v) for k, v in params.items()}
    return tuple(bind(v) for v in params)  # type: ignore[union-attr]


def db_path(value: object) -> str:
    """A path read from the store: a BLOB path (:func:`bind`) is the same str again."""
    return os.fsdecode(value) if isinstance(value, bytes) else value  # type: ignore[return-value]


class Connection(sqlite3.Connection):
    """Binds every parameter through :func:`bind`: a file whose name is not UTF-8 can be
    indexed (SQLite TEXT must be UTF-8); reads turn such paths back with :func:`db_path`."""

    def execute(self, sql, parameters=(), /):  # type: ignore[override]
        return super().execute(sql, _params(parameters))

    def executemany(self, sql, seq_of_parameters, /):  # type: ignore[override]
        return super().executemany(sql, (_params(p) for p in seq_of_parameters))


def connect_readonly(path: Path) -> sqlite3.Connection:
    """Open a database SQLite may not write. A WAL database needs its -shm file: when the last
    writer closed it cleanly there is none and none can be made, so the file is opened as
    immutable (nothing can change it on a read-only mount)."""
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    mode = "mode=ro" if wal.exists() and shm.exists() else "immutable=1"
    return sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, isolation_level=None,
                           check_same_thread=False, timeout=30, factory=Connection)


def connect(path: Path, readonly: bool) -> sqlite3.Connection:
    """The connection a store uses: read-only (:func:`connect_readonly`), or read-write with a
    WAL journal; foreign keys on either way."""
    if readonly:
        conn = connect_readonly(path)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30,
                               factory=Connection)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def old_roots(conn: sqlite3.Connection) -> list[str]:
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


def fill_roots(conn: sqlite3.Connection) -> None:
    """Migration 3: store the roots of an older index (:func:`old_roots`)."""
    conn.executemany("INSERT OR IGNORE INTO roots(path, added_at) VALUES (?, ?)",
                     [(root, now()) for root in old_roots(conn)])
    conn.execute("DELETE FROM meta WHERE key='roots'")  # the table is the one record now
