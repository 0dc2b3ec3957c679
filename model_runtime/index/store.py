"""SQLite store of an index: sources, finished work units, tiles (with their codes), meta.

The store is the single source of truth: each tile row carries its packed code, its float16
tanh outputs and (with heads that have one) the float16 projection of its frozen image
features, so the faiss file is a cache that can always be rebuilt from here, and the codes can
be re-hashed (adaptation) without the encoder. The schema is versioned with ``PRAGMA
user_version`` and step-by-step migrations. Every write is one transaction (WAL journal): a
killed process leaves a work unit either committed or absent, never half of it. The ``units``
table is the resume bookkeeping: a unit key there is finished, whichever executor (local
threads, Ray shards merged later) produced it.

The schema, its migrations and how the file is opened live in ``database.py``; the typed rows
and the tile insert in ``rows.py``. This module holds the queries and re-exports both's names.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from model_runtime.errors import DiskFullError, IndexStateError
from model_runtime.index.database import (
    DB_NAME,
    MIGRATIONS,
    READABLE_FROM,
    VERSION,
    connect,
    db_path,
    disk_full,
    fill_roots,
    is_writable,
    now,
    old_roots,
    readonly_error,
    readonly_failure,
)
from model_runtime.index.rows import (
    SourceMeta,
    SourceRow,
    TileRow,
    TileRows,
    bbox_of,
    chunks,
    f16,
    insert_tiles,
)

#: what callers import from here (the store's rows and file live in ``rows`` and ``database``)
__all__ = [
    "DB_NAME", "MIGRATIONS", "MODEL_KEYS", "READABLE_FROM", "VERSION", "SourceMeta", "SourceRow",
    "Store", "TileRow", "TileRows", "bbox_of", "check_model", "db_path", "is_writable",
    "readonly_error",
]

LOG = logging.getLogger(__name__)


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
            self.conn = connect(self.path, self.readonly)
            self._migrate()

    # -- errors ------------------------------------------------------------------------------
    @contextmanager
    def reading(self, what: str = "reading") -> Iterator[None]:
        """Turn SQLite failures into messages: damaged pages, a full disk, not a database."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            if readonly_failure(err, self.dir):
                raise readonly_error(self.dir, "be changed") from err
            if disk_full(err):
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
                    fill_roots(self.conn)
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
                      updated=now())

    # -- roots -------------------------------------------------------------------------------
    def roots(self) -> list[str]:
        """The index's root folders (or prefixes), in the order they were added."""
        if self.version < 3:  # read-only at schema 2: derived as migration 3 would
            with self._lock, self.reading():
                return old_roots(self.conn)
        return [db_path(r[0]) for r in self._rows("SELECT path FROM roots ORDER BY rowid")]

    def add_roots(self, conn: sqlite3.Connection, roots: Sequence[str]) -> list[str]:
        """Inside a transaction: remember these roots; returns those that were new."""
        added = []
        for root in roots:
            cur = conn.execute("INSERT OR IGNORE INTO roots(path, added_at) VALUES (?, ?)",
                               (root, now()))
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
             json.dumps(meta.info), now(), meta.version, units_total),
        )
        return int(cur.lastrowid)

    def commit_unit(self, conn: sqlite3.Connection, source_id: int, key: str, span: tuple[int, int],
                    rows: TileRows) -> list[int] | None:
        """Inside a transaction: insert one unit's tiles and record the unit; mark the source
        'done' when all its units are in. A unit already committed (a shard delivered twice, a
        resumed run racing a merge) is left as it is: returns None, never duplicates tiles."""
        if conn.execute("SELECT 1 FROM units WHERE key=?", (key,)).fetchone():
            return None
        ids = insert_tiles(conn, source_id, rows)
        conn.execute("INSERT INTO units(key, source_id, start, stop, tiles, committed_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (key, source_id, span[0], span[1], len(ids),
                                                   now()))
        conn.execute(
            "UPDATE sources SET tiles = tiles + :n, status = CASE WHEN (SELECT COUNT(*) FROM units "
            "WHERE source_id = :id) >= units_total THEN 'done' ELSE 'partial' END, "
            "indexed_at = :now WHERE id = :id",
            {"id": source_id, "n": len(ids), "now": now()},
        )
        self._bump(conn)
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
        for chunk in chunks([int(i) for i in ids]):
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
        for chunk in chunks([int(i) for i in ids]):
            for tid, code, feats, proj in self._rows(
                f"SELECT id, code, feats, proj FROM tiles WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                out[tid] = (code, f16(feats), f16(proj))
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
