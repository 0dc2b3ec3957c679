"""Commit work units into an index, and finish it: the one writer every executor uses.

Each :class:`UnitResult` is one SQLite transaction (source row + the unit's tiles + the unit's
key), so a killed run keeps every unit it committed and the next run, local or Ray, skips them.
``finalize`` writes the faiss file of the store's generation and only then marks the index
complete; a search never sees codes and rows that disagree.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from model_runtime.errors import CachError, ConfigError
from model_runtime.fsutil import atomic_write, file_signature
from model_runtime.index.binary import BinaryIndex
from model_runtime.index.store import Store, check_model
from model_runtime.index.units import UnitResult

LOG = logging.getLogger(__name__)

CODES_PREFIX = "codes-g"


def codes_path(index_dir: str | Path, generation: int) -> Path:
    """The faiss file that mirrors the store at ``generation``."""
    return Path(index_dir) / f"{CODES_PREFIX}{generation}.faiss"


class IndexWriter:
    """Writes units of one model into one store."""

    def __init__(self, store: Store, model_info: dict) -> None:
        self.store = store
        self.model = dict(model_info)
        self.bits = int(self.model["bits"])
        if self.bits % 8 or self.bits <= 0:
            raise ConfigError(f"bits must be a positive multiple of 8, got {self.bits}")
        self.committed_units = 0
        self.committed_tiles = 0
        self.commit_s = 0.0

    def begin(self, tiling: dict, roots: list[str] = (), store_floats: bool = True) -> list[str]:
        """Check the model against the index's, mark the index incomplete for this run and
        remember its tiling and the folders (or prefixes) it is built from (docs/indexing.md,
        "What an index holds"). Returns the roots that were new to the index."""
        meta = self.store.meta()
        check_model(meta.get("model"), self.model, self.store.dir)
        identity = {k: self.model[k] for k in ("backbone", "bits", "heads_sha", "method", "heads")
                    if k in self.model}
        with self.store.transaction() as tx:
            self.store.set_meta(tx, model=identity, tiling=tiling, complete=False,
                                created=meta.get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
                                store_floats=store_floats)
            return self.store.add_roots(tx, list(roots))

    def commit(self, result: UnitResult) -> int:
        """Commit one unit's rows; returns the tiles added (0 when it was already in)."""
        if result.rows is None or result.meta is None:
            raise ValueError("only successful unit results are committed")
        codes = result.rows.codes
        if codes.shape[1] * 8 != self.bits:
            raise ConfigError(f"unit codes have {codes.shape[1] * 8} bits, the index {self.bits}")
        t0 = time.perf_counter()
        with self.store.transaction() as tx:
            sid = self.store.begin_source(tx, result.meta, result.unit.total)
            ids = self.store.commit_unit(tx, sid, result.unit.key, result.unit.span, result.rows)
        self.commit_s += time.perf_counter() - t0
        if ids is None:
            return 0
        self.committed_units += 1
        self.committed_tiles += len(ids)
        return len(ids)

    def drop_source(self, uri: str) -> int:
        """Remove a source that failed: its tiles (old content or half a run) go."""
        return self.store.delete_sources([uri])

    def keep_searchable(self, pending_files: int) -> bool:
        """After a run failed on a full disk: mark what it committed searchable (as a cancel
        does, ``partial`` when files are left) without writing the faiss file, which a search
        rebuilds from the store in memory. False when even this small write fails: the index
        then stays "interrupted" until the next run."""
        try:
            self.store.set_meta(complete=True, tiles=self.store.count_tiles(),
                                partial={"pending_files": pending_files} if pending_files
                                else None)
        except (CachError, OSError) as err:
            LOG.warning("the index stays interrupted: %s", err)
            return False
        return True

    def finalize(self, pending_files: int = 0) -> int:
        """Write the faiss file for the store's generation, then mark the index complete.

        ``pending_files`` counts files a cancelled run did not reach: the index says so
        (``partial``) and stays searchable. Returns the tile count."""
        return finalize(self.store, self.bits, pending_files)


def finalize(store: Store, bits: int, pending_files: int = 0) -> int:
    """See :meth:`IndexWriter.finalize` (also used after a re-hash)."""
    meta = store.meta()
    generation = int(meta.get("generation", 0))
    path = codes_path(store.dir, generation)
    ids, codes = store.all_codes(bits // 8)
    atomic_write(path, lambda tmp: BinaryIndex.from_codes(codes, ids, bits).write(tmp))
    for old in store.dir.glob(f"{CODES_PREFIX}*.faiss"):
        if old != path:
            old.unlink(missing_ok=True)
    store.set_meta(complete=True, tiles=len(ids), generation=generation,
                   codes_file={"name": path.name, "signature": file_signature(path)},
                   partial={"pending_files": pending_files} if pending_files else None)
    return len(ids)
