"""Shards: the immutable output of one finished work unit, and the manifest that lists them.

A distributed run (``ray_executor.py``) turns every finished unit into a shard before it touches
the store, so work done on a cluster survives a killed driver::

    <index>/shards/
      run.json         model identity + tiling of the run that wrote the shards
      manifest.jsonl   one line per finished unit: {"key", "uri", "file", "tiles"} (appended,
                       fsynced; a torn last line is ignored)
      <key>.npz        codes uint8, tanh float16, proj float16 (optional), windows, valid, and a
                       JSON header: the unit (key, source URI, window range, units of the
                       source), the store's source row and the footprints

``merge_pending`` commits listed shards through the index writer (one transaction per unit, the
store's resume bookkeeping makes a shard delivered twice harmless) and removes them. Any run,
Ray or local, merges what a killed run left before it scans, so finished units are never
encoded again. Shards of another model or tiling are discarded, never merged.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.fsutil import atomic_write, atomic_write_text
from model_runtime.index.store import SourceMeta, TileRows
from model_runtime.index.units import UnitResult

LOG = logging.getLogger(__name__)

SHARDS_DIR = "shards"
MANIFEST = "manifest.jsonl"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class ShardUnit:
    """What the writer needs of a unit that came back as a shard."""

    key: str
    uri: str
    start: int
    stop: int
    total: int

    @property
    def span(self) -> tuple[int, int]:
        return self.start, self.stop


def encode_shard(result: UnitResult) -> bytes:
    """A successful unit's rows as the bytes of one ``.npz`` (no pickle: arrays + JSON)."""
    rows, unit = result.rows, result.unit
    header = {
        "unit": {"key": unit.key, "uri": unit.source.uri, "start": int(unit.start),
                 "stop": int(unit.stop), "total": int(unit.total)},
        "meta": dataclasses.asdict(result.meta),
        "footprints": rows.footprints,
        "footprints_src": rows.footprints_src,
        "timing": result.timing,
    }
    arrays = {
        "header": np.array(json.dumps(header)),
        "codes": np.ascontiguousarray(rows.codes, np.uint8),
        "windows": np.asarray(rows.windows, np.int64).reshape(len(rows), 5),
        "valid": np.asarray(rows.valid, np.float64),
    }
    if rows.tanh is not None:
        arrays["tanh"] = np.asarray(rows.tanh, np.float16)
    if rows.proj is not None:
        arrays["proj"] = np.asarray(rows.proj, np.float16)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_shard(data: bytes | Path) -> UnitResult:
    """The :class:`UnitResult` (with a :class:`ShardUnit`) of a shard's bytes or file."""
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with np.load(src, allow_pickle=False) as npz:
        header = json.loads(str(npz["header"]))
        rows = TileRows(
            windows=[tuple(int(v) for v in w) for w in npz["windows"].tolist()],
            valid=[float(v) for v in npz["valid"]],
            footprints=header["footprints"],
            footprints_src=header["footprints_src"],
            codes=npz["codes"],
            tanh=npz["tanh"] if "tanh" in npz.files else None,
            proj=npz["proj"] if "proj" in npz.files else None,
        )
    unit = ShardUnit(**header["unit"])
    return UnitResult(unit, SourceMeta(**header["meta"]), rows, timing=header.get("timing", {}))


class ShardSet:
    """The shards folder of one index, for one run identity (model + tiling)."""

    def __init__(self, index_dir: str | os.PathLike, identity: dict[str, Any]) -> None:
        self.dir = Path(index_dir) / SHARDS_DIR
        self.identity = json.loads(json.dumps(identity, sort_keys=True))

    @property
    def manifest(self) -> Path:
        return self.dir / MANIFEST

    def matches(self) -> bool:
        """Whether the shards on disk were written for this identity."""
        try:
            return json.loads((self.dir / RUN_FILE).read_text()) == self.identity
        except (OSError, ValueError):
            return False

    def open(self) -> ShardSet:
        """Make the folder ready for this identity (shards of another one are discarded)."""
        if self.dir.exists() and not self.matches():
            if self.entries():
                LOG.warning("discarding %d shard(s) of another model or tiling in %s",
                            len(self.entries()), self.dir)
            self.clear()
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / RUN_FILE).exists():
            atomic_write_text(self.dir / RUN_FILE, json.dumps(self.identity, sort_keys=True))
        return self

    def add(self, key: str, uri: str, data: bytes, tiles: int) -> Path:
        """Write one shard atomically, then list it in the manifest (fsynced)."""
        path = self.dir / f"{key}.npz"
        atomic_write(path, lambda tmp: tmp.write_bytes(data))
        line = json.dumps({"key": key, "uri": uri, "file": path.name, "tiles": int(tiles)})
        with open(self.manifest, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return path

    def entries(self) -> list[dict]:
        """Manifest entries whose shard file exists (first occurrence of each key)."""
        out, seen = [], set()
        try:
            lines = self.manifest.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill
            if entry.get("key") in seen or not (self.dir / str(entry.get("file"))).is_file():
                continue
            seen.add(entry["key"])
            out.append(entry)
        return out

    def keys(self) -> set[str]:
        return {e["key"] for e in self.entries()}

    def load(self, entry: dict) -> UnitResult:
        return decode_shard(self.dir / entry["file"])

    def remove(self, entry: dict) -> None:
        (self.dir / entry["file"]).unlink(missing_ok=True)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def merge_pending(index_dir: str | os.PathLike, writer: Any, identity: dict[str, Any]
                  ) -> tuple[int, int]:
    """Commit the shards a previous run of this identity left, through ``writer`` (begun);
    returns (units, tiles added). Shards of another identity, or of a source whose stored
    identity changed since (re-indexed by another run), are discarded."""
    shards = ShardSet(index_dir, identity)
    if not shards.dir.exists():
        return 0, 0
    if not shards.matches():
        shards.clear()
        return 0, 0
    units = tiles = 0
    rows = writer.store.sources()
    for entry in shards.entries():
        result = shards.load(entry)
        row, meta = rows.get(result.meta.uri), result.meta
        if row is None or (row.size, row.version) == (meta.size, meta.version):
            tiles += writer.commit(result)  # else the source changed since: the shard is stale
            units += 1
        shards.remove(entry)
    shards.clear()
    return units, tiles


def run_identity(model_info: dict[str, Any], tiling: dict[str, Any]) -> dict[str, Any]:
    """What shards must share with a run to be merged into it: the model and the tiling."""
    return {"model": {k: model_info.get(k) for k in ("backbone", "bits", "heads_sha")},
            "tiling": tiling}


def merge_leftovers(writer: Any, model_info: dict[str, Any], tiling: dict[str, Any]
                    ) -> tuple[int, int]:
    """Before a run scans (any executor): merge what a killed distributed run left in
    ``<index>/shards``, so those units are not encoded again. Returns (units, tiles)."""
    identity = run_identity(model_info, tiling)
    if not ShardSet(writer.store.dir, identity).dir.exists():
        return 0, 0
    writer.begin(tiling)
    units, tiles = merge_pending(writer.store.dir, writer, identity)
    if units:
        LOG.info("merged %d unit(s), %d tile(s) left by an earlier run", units, tiles)
    return units, tiles
