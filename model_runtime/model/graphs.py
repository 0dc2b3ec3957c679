"""The exported-graph cache, keyed by content: one folder per graph (``image`` or ``text``).

A folder is ``<cache>/graphs/<backbone>-<graph>-<bits>b-<engine>-<precision>-<key16>/`` with the
graph's files and a ``manifest.json`` that records the key and every file's SHA-256 and size.
The key (:func:`key_parts`) holds what the graph is computed from, by content only: the SHA-256
of its weight files, of the backbone config and of its part of the heads (the image graph reads
the image head and projection, the text graph the text head), the engine's version, the
precision and the int8 recipe; never a path or a modification time, so a graph made in any
environment (with torch or without, in another folder) is found by any other. The two graphs
have separate keys: heads adapted to an archive change only the image head, so they add one
image graph (~20 MB) and share the 91 MB text graph of the heads they were adapted from.

Hashing the weights (110 MB) at every start would cost ~0.3 s: a sidecar ``hashes.json`` keeps
each file's SHA-256 with its path, size and mtime, only to skip re-reading an unchanged file;
the key itself is the content hash.

A folder is used only when its manifest names the expected key and every file still has its
recorded hash; anything else (a half-copied file, a bit flip, a manifest from another export
format) is moved aside and rebuilt. A build writes into a hidden sibling folder (each file and
the manifest through :mod:`model_runtime.fsutil`) that is renamed into place in one step, so a
reader never sees half a folder and two processes exporting at once both end with a valid one.

Bounded: each use touches the folder's ``.last_used``; after every build the least recently
used folders (folders of an older format first) are deleted until the cache holds at most
``$CACH_GRAPH_CACHE_MB`` (default :data:`DEFAULT_CAP_MB`) MB; the folder just built or used is
never evicted. ``$CACH_GRAPH_CACHE`` moves the graph cache apart from the other caches (it holds
nothing but content-keyed graphs, so it may be shared). ``cach cache`` lists the folders with their sizes and prunes them.

No torch here: a cached folder is found and checked with the standard library, and the heads'
parts are hashed through ``safetensors.numpy``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from model_runtime.config import BackboneConfig, open_clip_model_cfg, resolve_path
from model_runtime.errors import ConfigError
from model_runtime.fsutil import atomic_write_text
from model_runtime.model.heads import HeadsRef
from model_runtime.paths import cache_dir, sha256_file
from model_runtime.settings import current

LOG = logging.getLogger(__name__)

#: bump when the exported graphs change meaning (inputs, outputs, wrapper code) or the key does
GRAPH_FORMAT = 2
MANIFEST = "manifest.json"
GRAPHS = ("image", "text")
#: the cache's size cap in MB unless ``$CACH_GRAPH_CACHE_MB`` says otherwise
DEFAULT_CAP_MB = 1024
LAST_USED = ".last_used"
HASHES = "hashes.json"
#: hidden build or discard folders older than this are leftovers of a crashed process
STALE_TMP_S = 3600.0


def graphs_root() -> Path:
    """The graph cache: ``$CACH_GRAPH_CACHE``, else ``<cache>/graphs``. Keyed by content only,
    it may be shared between environments and machines (CI keeps one through this variable)."""
    env = current().graph_cache
    return Path(env).expanduser() if env else cache_dir() / "graphs"


class GraphCacheError(Exception):
    """A cached folder is missing, stale or corrupt (internal: it triggers a rebuild)."""


def engine_version(distribution: str) -> str:
    """``name==version`` of an installed engine, read from package metadata (no import)."""
    try:
        return f"{distribution}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return f"{distribution}==?"


def _weight_files(config: BackboneConfig, graph: str) -> list[Path]:
    """The weight files graph ``graph`` is built from (their content joins its key)."""
    if config.open_clip is None:  # one checkpoint holds both towers
        return [resolve_path(config.checkpoint)] if config.checkpoint else []
    if graph == "image":
        return [resolve_path(config.image_weights.path)] if config.image_weights else []
    text_dir = open_clip_model_cfg(config)["text_cfg"].get("hf_model_name")
    if not text_dir or not Path(text_dir).is_dir():
        return []
    folder = Path(text_dir)
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    return files + [folder / "config.json"]


_HASH_LOCK = threading.Lock()


def content_sha256(path: Path, root: Path | None = None) -> str:
    """SHA-256 of ``path``'s content. The sidecar ``<root>/hashes.json`` remembers it by path,
    size and mtime only to skip re-reading an unchanged file (an accelerator, never the key)."""
    try:
        st = path.stat()
    except OSError:
        return f"missing:{path.name}"
    sidecar = (root or graphs_root()) / HASHES
    stamp = [st.st_size, st.st_mtime_ns]
    with _HASH_LOCK:
        known = _read_json(sidecar)
        entry = known.get(str(path))
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            return str(entry["sha256"])
        digest = sha256_file(path)
        known = {k: v for k, v in known.items() if Path(k).exists()}
        known[str(path)] = {"stamp": stamp, "sha256": digest}
        try:
            sidecar.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(sidecar, json.dumps(known, indent=1, sort_keys=True))
        except OSError:  # a read-only cache: hash again next time
            pass
        return digest


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


_PART_SHA: dict[tuple[str, str], str] = {}


def heads_part_sha256(heads: HeadsRef, graph: str) -> str:
    """SHA-256 of the heads' tensors graph ``graph`` reads (``image_*`` or ``text_*``: names,
    dtypes, shapes and bytes) and of the metadata that shapes it. Heads adapted on an archive
    change the image part only, so they share the text graph of the heads they came from."""
    cached = _PART_SHA.get((heads.sha, graph))
    if cached:
        return cached
    from safetensors import safe_open

    digest = hashlib.sha256()
    meta = {k: heads.meta.get(k) for k in ("backbone", "bits", "hidden", "proj_dim",
                                           f"{graph}_dim")}
    if graph == "image" and heads.meta.get("image_input") == "features":
        meta["image_input"] = "features"  # added only then: other heads keep their cached graphs
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    try:
        with safe_open(str(heads.path), framework="numpy") as f:
            for key in sorted(k for k in f.keys() if k.startswith(f"{graph}_")):
                arr = f.get_tensor(key)
                digest.update(f"{key}|{arr.dtype.str}|{arr.shape}".encode())
                digest.update(arr.tobytes())
    except Exception as err:  # safetensors raises several types for corrupt files
        raise ConfigError(f"Cannot read the heads file {heads.path}: {err}",
                          code="heads_unreadable") from err
    _PART_SHA[(heads.sha, graph)] = digest.hexdigest()
    return _PART_SHA[(heads.sha, graph)]


def config_sha256(config: BackboneConfig) -> str:
    """SHA-256 of the backbone config without where its files lie (weight paths, the text
    tower's folder) or its description: the files join the key by their content."""
    cfg = dataclasses.asdict(config)
    cfg.pop("description", None)
    cfg.pop("checkpoint", None)
    if cfg.get("image_weights"):
        cfg["image_weights"].pop("path", None)
    text = (cfg.get("open_clip") or {}).get("text_cfg")
    if isinstance(text, dict):
        cfg["open_clip"] = {**cfg["open_clip"], "text_cfg": {
            k: v for k, v in text.items() if k not in ("hf_model_name", "hf_tokenizer_name")}}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def graph_precision(graph: str, precision: str) -> str:
    """The precision of graph ``graph``'s files: int8 quantises only the image graph, so the
    int8 models share the fp32 text graph."""
    return "fp32" if graph == "text" and precision == "int8" else precision


def key_parts(config: BackboneConfig, heads: HeadsRef, engine: str, precision: str,
              recipe: str = "", graph: str = "image", root: Path | None = None) -> dict:
    """Everything graph ``graph`` depends on, by content; any change gives another folder.
    ``recipe`` names how reduced-precision graphs are made (calibration set and method)."""
    if graph not in GRAPHS:
        raise ValueError(f"unknown graph {graph!r}")
    precision = graph_precision(graph, precision)
    return {
        "format": GRAPH_FORMAT,
        "graph": graph,
        "backbone": config.name,
        "backbone_config_sha256": config_sha256(config),
        "weights_sha256": [content_sha256(p, root) for p in _weight_files(config, graph)],
        "heads_sha256": heads_part_sha256(heads, graph),
        "bits": heads.bits,
        "proj_dim": heads.proj_dim if graph == "image" else 0,
        "engine": engine,
        "precision": precision,
        "recipe": recipe if precision == "int8" else "",
    }


@dataclass(frozen=True)
class GraphSet:
    """A verified cache folder: ``path(name)`` gives a graph file in it."""

    folder: Path
    manifest: dict[str, Any]
    #: seconds the export took when this process built it, else None (found in the cache)
    built_s: float | None = None

    def path(self, name: str) -> Path:
        return self.folder / name

    @property
    def export_s(self) -> float | None:
        """Seconds the first export of this folder took (recorded in its manifest)."""
        value = self.manifest.get("export_s")
        return None if value is None else float(value)


def graph_folder(parts: dict, root: Path | None = None) -> Path:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    engine = parts["engine"].split("==")[0]
    name = (f"{parts['backbone']}-{parts['graph']}-{parts['bits']}b-{engine}-"
            f"{parts['precision']}-{digest}")
    return (root or graphs_root()) / name


def verify(folder: Path, parts: dict) -> dict:
    """The folder's manifest when it names ``parts`` and every file matches its hash."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise GraphCacheError(f"no readable manifest ({err})") from err
    if manifest.get("key") != parts:
        raise GraphCacheError("manifest is for another model, engine or export format")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise GraphCacheError("manifest lists no files")
    for name, entry in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != entry.get("size"):
            raise GraphCacheError(f"{name} is missing or has another size")
    # hashlib releases the GIL on large buffers: the files hash in parallel (start-up time)
    with ThreadPoolExecutor(max_workers=min(4, len(files))) as pool:
        digests = dict(zip(files, pool.map(lambda n: sha256_file(folder / n), files),
                           strict=True))
    for name, entry in files.items():
        if digests[name] != entry.get("sha256"):
            raise GraphCacheError(f"{name} does not match its checksum")
    return manifest


def _write_manifest(folder: Path, parts: dict, extra: dict) -> dict:
    files = {
        p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    }
    manifest = {"key": parts, "files": files, "created": time.time(), **extra}
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def _discard(folder: Path) -> None:
    """Move a bad folder aside (one rename) and delete it."""
    if not folder.exists():
        return
    trash = folder.with_name(f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.bad")
    try:
        os.replace(folder, trash)
    except OSError:
        trash = folder
    shutil.rmtree(trash, ignore_errors=True)


def _publish(tmp: Path, folder: Path, parts: dict) -> Path:
    """Rename the built folder into place; another process's valid folder wins a race."""
    try:
        os.replace(tmp, folder)
        return folder
    except OSError:
        try:
            verify(folder, parts)
        except GraphCacheError:
            _discard(folder)
            os.replace(tmp, folder)
            return folder
        shutil.rmtree(tmp, ignore_errors=True)
        return folder


def cached_graphs(
    parts: dict, build: Callable[[Path], dict], root: Path | None = None
) -> GraphSet:
    """The verified folder for ``parts``, built by ``build(tmp_folder) -> manifest extras`` when
    it is missing, stale or corrupt. ``build`` writes the graph files into ``tmp_folder``.
    After a build the cache is trimmed to its cap (:func:`evict`)."""
    folder = graph_folder(parts, root)
    try:
        found = GraphSet(folder, verify(folder, parts))
        touch(folder)
        return found
    except GraphCacheError as err:
        if folder.exists():
            LOG.warning("exported graphs in %s are unusable (%s): rebuilding", folder, err)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        start = time.perf_counter()
        extra = build(tmp)
        seconds = time.perf_counter() - start
        _write_manifest(tmp, parts, {**extra, "export_s": round(seconds, 2)})
        folder = _publish(tmp, folder, parts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    LOG.info("exported graphs to %s in %.1f s", folder, seconds)
    touch(folder)
    evict(folder.parent, keep={folder})
    return GraphSet(folder, verify(folder, parts), built_s=seconds)


# --- bounds: last use, sizes, eviction ------------------------------------------------------------
def touch(folder: Path) -> None:
    """Record a use (the mtime of ``.last_used``); a read-only cache is used as it is."""
    try:
        (folder / LAST_USED).touch()
    except OSError:
        pass


def cap_bytes() -> int:
    """The cache's size cap: ``$CACH_GRAPH_CACHE_MB`` MB, else :data:`DEFAULT_CAP_MB`."""
    value = current().graph_cache_mb
    if not value:
        return DEFAULT_CAP_MB << 20
    if not value.isdigit():
        raise ConfigError(f"CACH_GRAPH_CACHE_MB must be a whole number of MB, not '{value}'.",
                          code="bad_value")
    return int(value) << 20


@dataclass(frozen=True)
class CacheEntry:
    """One folder of the graph cache as ``cach cache`` lists it."""

    folder: Path
    size: int
    last_used: float
    #: the manifest's key; None when the folder is unreadable or of an older format
    key: dict | None

    @property
    def current(self) -> bool:
        return self.key is not None


def _size(folder: Path) -> int:
    total = 0
    for base, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                pass
    return total


def _entry(folder: Path) -> CacheEntry:
    manifest = _read_json(folder / MANIFEST)
    key = manifest.get("key")
    current = isinstance(key, dict) and key.get("format") == GRAPH_FORMAT
    stamps = [p.stat().st_mtime for p in (folder / LAST_USED, folder / MANIFEST, folder)
              if p.exists()]
    return CacheEntry(folder, _size(folder), max(stamps or [0.0]), key if current else None)


def cache_entries(root: Path | None = None) -> list[CacheEntry]:
    """The cache's folders, least recently used first (folders of an older format before)."""
    root = root or graphs_root()
    if not root.is_dir():
        return []
    entries = [_entry(p) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(entries, key=lambda e: (e.current, e.last_used))


def _old_leftovers(root: Path) -> list[Path]:
    """Hidden build or discard folders of processes that died over an hour ago."""
    now = time.time()
    return [p for p in root.iterdir() if p.is_dir() and p.name.startswith(".")
            and p.name.endswith((".tmp", ".bad")) and now - p.stat().st_mtime > STALE_TMP_S]


def evict(root: Path | None = None, cap: int | None = None, keep: set[Path] | None = None,
          everything: bool = False) -> list[CacheEntry]:
    """Delete folders, least recently used first, until the cache holds at most ``cap`` bytes
    (default :func:`cap_bytes`); folders of an older format or unreadable always go;
    ``everything`` empties it. ``keep`` (the folder just built) is never deleted. Returns what was deleted."""
    root = root or graphs_root()
    if not root.is_dir():
        return []
    for leftover in _old_leftovers(root):
        shutil.rmtree(leftover, ignore_errors=True)
    cap = 0 if everything else (cap_bytes() if cap is None else cap)
    entries = cache_entries(root)
    total = sum(e.size for e in entries)
    removed = []
    for entry in entries:  # older formats first (never used again), then least recently used
        if entry.current and total <= cap:
            break
        if keep and entry.folder in keep:
            continue
        _discard(entry.folder)
        total -= entry.size
        removed.append(entry)
    return removed
