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

Any run, Ray or local, merges what a killed run left after it scans (``merge_leftovers``), so
finished units are never encoded again. Shards of another model or tiling are discarded.

Everything in an index folder is untrusted (indexes are shared and downloaded), so a leftover
shard is merged only when all of this holds, and is otherwise skipped with a warning naming it:
the manifest line's key is a unit key (40 hex digits) and its file is ``<key>.npz`` itself, a
regular file directly inside ``shards/`` (the manifest's ``file`` field is never used as a
path; ``shards/`` itself is no link); the file is a plain ``.npz`` of bounded size whose header
and arrays agree with each other, with the key and with the run's tiling and bit length; and its
source is one this run's own scan listed, with the same size and version. Only shard files that
pass these checks, the manifest and ``run.json`` are ever deleted.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from model_runtime.errors import IndexStateError
from model_runtime.fsutil import atomic_write, atomic_write_text
from model_runtime.index.store import SourceMeta, TileRows
from model_runtime.index.units import UnitResult, unit_key

LOG = logging.getLogger(__name__)

SHARDS_DIR = "shards"
MANIFEST = "manifest.jsonl"
RUN_FILE = "run.json"
#: a unit key: SHA-1 hex (``units.unit_key``)
KEY = re.compile(r"[0-9a-f]{40}")
#: the most a shard's arrays may hold once unpacked (a unit of 2,048 tiles is under 2 MB)
MAX_SHARD_BYTES = 256 * 2**20
#: the most of a manifest that is read
MAX_MANIFEST_BYTES = 64 * 2**20


class BadShard(ValueError):
    """A shard file that is not one this program wrote for this run (the reason says why)."""


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
    """The :class:`UnitResult` (with a :class:`ShardUnit`) of a shard's bytes or file. Raises
    :class:`BadShard` for anything that is not a well-formed shard (never a zip or numpy
    error)."""
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        with zipfile.ZipFile(src) as zf:  # unpacked size first: no zip bomb is inflated
            if sum(i.file_size for i in zf.infolist()) > MAX_SHARD_BYTES:
                raise BadShard(f"holds more than {MAX_SHARD_BYTES >> 20} MB unpacked")
        if isinstance(src, io.BytesIO):
            src.seek(0)
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
        meta = SourceMeta(**header["meta"])
    except BadShard:
        raise
    except Exception as err:  # noqa: BLE001 - zip, numpy, JSON or field errors: all "not a shard"
        raise BadShard(f"not a readable shard ({type(err).__name__}: "
                       f"{str(err)[:200]})") from err
    return UnitResult(unit, meta, rows, timing=header.get("timing", {}))


def check_shard(result: UnitResult, key: str, tiling: dict, bits: int) -> None:
    """Raise :class:`BadShard` unless the shard's header and arrays agree with each other,
    with its manifest key and with the run's tiling and bit length."""
    unit, meta, rows = result.unit, result.meta, result.rows
    n = len(rows.windows)
    fields = (unit.key, unit.uri, meta.uri, meta.version)
    if not all(isinstance(v, str) for v in fields) or not all(
            isinstance(v, int) for v in (unit.start, unit.stop, unit.total, meta.size)):
        raise BadShard("its header has fields of the wrong type")
    if unit.key != key or meta.uri != unit.uri:
        raise BadShard("its header names another unit or source than its manifest line")
    if not (0 <= unit.start < unit.stop and unit.total >= 1 and n <= unit.stop - unit.start):
        raise BadShard("its window range is impossible")
    options = SimpleNamespace(to_json=lambda: tiling)
    source = SimpleNamespace(uri=meta.uri, size=meta.size, version=meta.version)
    if unit_key(source, options, unit.start, unit.stop) != key:
        raise BadShard("its key does not match its source, window range and the run's tiling")
    codes = rows.codes
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape != (n, bits // 8):
        raise BadShard(f"its codes are not {n} x {bits} bits")
    if not (len(rows.valid) == len(rows.footprints) == len(rows.footprints_src) == n) or any(
            len(w) != 5 for w in rows.windows):
        raise BadShard("its arrays have different lengths")
    for name, width in (("tanh", bits), ("proj", None)):
        arr = getattr(rows, name)
        if arr is not None and (arr.ndim != 2 or len(arr) != n or (width and
                                                                   arr.shape[1] != width)):
            raise BadShard(f"its {name} array has the wrong shape")


class ShardSet:
    """The shards folder of one index, for one run identity (model + tiling)."""

    def __init__(self, index_dir: str | os.PathLike, identity: dict[str, Any]) -> None:
        self.dir = Path(index_dir) / SHARDS_DIR
        self.identity = json.loads(json.dumps(identity, sort_keys=True))
        self.merged: set[str] = set()  # keys whose shard was checked: their files may go

    @property
    def manifest(self) -> Path:
        return self.dir / MANIFEST

    def is_link(self) -> bool:
        """``shards`` is a link (to a folder this program did not make): never read or
        written through."""
        try:
            return stat.S_ISLNK(os.lstat(self.dir).st_mode)
        except OSError:
            return False

    def _read(self, name: str, limit: int) -> str:
        """A file directly in ``shards/``: regular, no link, at most ``limit`` bytes read."""
        fd = os.open(self.dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{name} is not a regular file")
            return fh.read(limit).decode("utf-8", errors="replace")

    def matches(self) -> bool:
        """Whether the shards on disk were written for this identity."""
        if self.is_link():
            return False
        try:
            return json.loads(self._read(RUN_FILE, 1 << 20)) == self.identity
        except (OSError, ValueError):
            return False

    def open(self) -> ShardSet:
        """Make the folder ready for this identity (shards of another one are discarded)."""
        if self.is_link():
            raise IndexStateError(
                f"{self.dir} is a link; an index's shards folder must be a plain folder. "
                "Remove the link (it is not something cach made) and run again.",
                code="index_corrupt")
        if self.dir.exists() and not self.matches():
            if self.entries():
                LOG.warning("discarding %d shard(s) of another model or tiling in %s",
                            len(self.entries()), self.dir)
            self.merged |= {e["key"] for e in self.entries()}
            self.clear()
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / RUN_FILE).exists():
            atomic_write_text(self.dir / RUN_FILE, json.dumps(self.identity, sort_keys=True))
        return self

    def add(self, key: str, uri: str, data: bytes, tiles: int) -> Path:
        """Write one shard atomically, then list it in the manifest (fsynced)."""
        path = self.dir / f"{key}.npz"
        self.merged.add(key)  # written by this run: this run may remove it
        atomic_write(path, lambda tmp: tmp.write_bytes(data))
        line = json.dumps({"key": key, "uri": uri, "file": path.name, "tiles": int(tiles)})
        with open(self.manifest, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return path

    def entries(self) -> list[dict]:
        """Manifest entries whose key is a unit key and whose shard ``<key>.npz`` is a regular
        file directly in the folder (first occurrence of each key); others are named and
        skipped. A torn last line is ignored."""
        out, seen = [], set()
        try:
            lines = self._read(MANIFEST, MAX_MANIFEST_BYTES).splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                entry = json.loads(line)
                key = entry.get("key") if isinstance(entry, dict) else None
            except ValueError:
                continue  # a line torn by a kill
            if not isinstance(key, str) or not KEY.fullmatch(key) or entry.get("file") != \
                    f"{key}.npz":
                LOG.warning("skipped a line of %s that names no shard of this program: %.200s",
                            self.manifest, line)
                continue
            if key in seen or not self._is_shard_file(key):
                continue
            seen.add(key)
            out.append({**entry, "file": f"{key}.npz"})
        return out

    def _is_shard_file(self, key: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self.dir / f"{key}.npz").st_mode)
        except OSError:
            return False

    def keys(self) -> set[str]:
        return {e["key"] for e in self.entries()}

    def load(self, entry: dict, tiling: dict, bits: int) -> UnitResult:
        """A listed shard, checked (:func:`check_shard`); :class:`BadShard` says why not."""
        key = entry["key"]
        fd = os.open(self.dir / f"{key}.npz", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BadShard("is not a regular file")
            if os.fstat(fd).st_size > MAX_SHARD_BYTES:
                raise BadShard(f"is larger than {MAX_SHARD_BYTES >> 20} MB")
            result = decode_shard(fh.read())
        check_shard(result, key, tiling, bits)
        return result

    def remove(self, key: str) -> None:
        """Delete the shard of ``key`` (a unit key; a regular file directly in the folder)."""
        if KEY.fullmatch(key) and self._is_shard_file(key):
            (self.dir / f"{key}.npz").unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove every listed shard (``--rebuild``), the manifest and ``run.json``."""
        self.merged |= self.keys()
        self.clear()

    def clear(self) -> None:
        """Remove what this program wrote here: the shards it checked or wrote (``merged``),
        the manifest, ``run.json``, then the folder if nothing else is left in it. Anything
        else stays and is named (it was not written by a run of this program)."""
        if self.is_link() or not self.dir.is_dir():
            return
        for key in self.merged:
            self.remove(key)
        for name in (MANIFEST, RUN_FILE):
            path = self.dir / name
            if path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
        left = sorted(p.name for p in self.dir.iterdir())
        if left:
            LOG.warning("left in %s (not written by this run, or not a valid shard): %s",
                        self.dir, ", ".join(left[:20]))
            return
        try:
            self.dir.rmdir()
        except OSError:
            pass


def merge_pending(index_dir: str | os.PathLike, writer: Any, identity: dict[str, Any],
                  sources: dict[str, Any]) -> tuple[dict[str, set[str]], int]:
    """Commit the shards a previous run of this identity left, through ``writer`` (begun),
    for the ``sources`` (uri -> ``SourceRef``) this run's scan listed to encode; returns the
    keys merged per source and the tiles added. A shard that fails a check is skipped and
    named; one of another identity, or of a source not listed or changed since, is stale."""
    shards = ShardSet(index_dir, identity)
    if shards.is_link():
        LOG.warning("ignored %s: a link, not a folder this program made", shards.dir)
        return {}, 0
    if not shards.dir.exists():
        return {}, 0
    if not shards.matches():
        shards.merged |= shards.keys()
        shards.clear()
        return {}, 0
    merged: dict[str, set[str]] = {}
    tiles = 0
    bits, tiling = int(identity["model"]["bits"]), identity["tiling"]
    for entry in shards.entries():
        try:
            result = shards.load(entry, tiling, bits)
        except (BadShard, OSError) as err:
            LOG.warning("skipped shard %s: %s", shards.dir / entry["file"], err)
            continue
        shards.merged.add(entry["key"])
        ref = sources.get(result.meta.uri)
        if ref is None or (int(ref.size), str(ref.version)) != (result.meta.size,
                                                                 result.meta.version):
            continue  # not a source of this run, or changed since: stale
        tiles += writer.commit(result)
        merged.setdefault(result.meta.uri, set()).add(entry["key"])
    shards.clear()
    return merged, tiles


def run_identity(model_info: dict[str, Any], tiling: dict[str, Any]) -> dict[str, Any]:
    """What shards must share with a run to be merged into it: the model and the tiling."""
    return {"model": {k: model_info.get(k) for k in ("backbone", "bits", "heads_sha")},
            "tiling": tiling}


def merge_leftovers(writer: Any, model_info: dict[str, Any], tiling: dict[str, Any],
                    scan: Any) -> tuple[int, int]:
    """After a run scanned and began (any executor): merge what a killed distributed run left
    in ``<index>/shards`` for the sources of ``scan.todo``, and mark those units done there,
    so they are not encoded again. Returns (units, tiles)."""
    identity = run_identity(model_info, tiling)
    if not os.path.lexists(ShardSet(writer.store.dir, identity).dir):
        return 0, 0
    merged, tiles = merge_pending(writer.store.dir, writer, identity,
                                  {t.source.uri: t.source for t in scan.todo})
    scan.todo = [dataclasses.replace(t, done=t.done | merged[t.source.uri])
                 if t.source.uri in merged else t for t in scan.todo]
    units = sum(len(k) for k in merged.values())
    if units:
        LOG.info("merged %d unit(s), %d tile(s) left by an earlier run", units, tiles)
    return units, tiles
